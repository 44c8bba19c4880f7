"""The command line's value types: argparse `type=` functions for vocabularies, ports,
counts and seeds.

Why a module of their own: each refuses a bad value with a message that says what was
expected (argparse prints it as `rasp-compiler COMMAND: error: argument ...` and exits
with status 2), and the same rules serve every command, so they live apart from the
commands that use them. None of them imports anything heavy: `rasp-compiler --help`
stays fast.
"""

from __future__ import annotations

import argparse


def parse_vocab(text: str) -> tuple:
    """'a,b,c' -> ('a', 'b', 'c'); '1,2,3' -> (1, 2, 3): numbers become numbers.

    An empty vocab, an empty token ('a,,b') or a repeated one is refused, not defaulted.
    """
    if not text:
        raise argparse.ArgumentTypeError(
            "the vocab is empty; write the tokens separated by commas, e.g. --vocab a,b,c")
    tokens = []
    for word in text.split(","):
        if not word:
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty token; write the tokens separated by single commas, "
                f"e.g. --vocab a,b,c")
        for kind in (int, float):
            try:
                tokens.append(kind(word))
                break
            except ValueError:
                continue
        else:
            tokens.append(word)
        if tokens.count(tokens[-1]) > 1:
            raise argparse.ArgumentTypeError(f"the token {word!r} appears twice in {text!r}")
    return tuple(tokens)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 would silently mean 'nothing')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


JAX_SEEDS = 2**32  # compress's seed makes a JAX key, which keeps 32 bits (verify.check_seed)


def seed_number(text: str) -> int:
    """An argparse type: a seed, a whole number >= 0 (random.Random(-5) is seed 5)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def jax_seed(text: str) -> int:
    """An argparse type: a seed for a JAX key, 0 to 2**32 - 1 (a larger one would repeat a
    smaller one's stream, and past 2**63 JAX raised OverflowError)."""
    value = seed_number(text)
    if value >= JAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"must be 0 to {JAX_SEEDS - 1:,} (JAX's random keys keep 32 bits of a seed), "
            f"got {value:,}")
    return value

"""The inputs verification runs on, made as token-id arrays: every input of a vocab up to a
length (an input's ids computed from its index by arithmetic), or random ones (Python's
`random.Random` draws, made on arrays so a million inputs cost milliseconds), and the
chunks of same-length blocks that `verify` runs through the model and the evaluator."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from rasp_compiler.errors import InvalidInputError, InvalidProgramError

DEFAULT_CHUNK = 65536  # inputs generated, run and compared at a time
MAX_EXHAUSTIVE_INPUTS = 1 << 62


def all_inputs(vocab: Sequence, max_length: int, min_length: int = 1) -> Iterator[tuple]:
    """Every token sequence of min_length..max_length tokens, shortest first."""
    for n in range(min_length, max_length + 1):
        yield from itertools.product(vocab, repeat=n)


def input_ids(vocab_size: int, length: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Inputs start..stop-1 of `all_inputs` at one length, as token ids [stop - start, length]:
    input i is i written in base vocab_size, most significant digit first (so the
    order is itertools.product's)."""
    count = vocab_size ** length
    stop = count if stop is None else min(stop, count)
    if count > MAX_EXHAUSTIVE_INPUTS:
        raise InvalidProgramError(
            f"{vocab_size}^{length} inputs of {length} tokens is too many to list; "
            f"lower exhaustive_up_to or check random samples instead"
        )
    index = np.arange(start, stop, dtype=np.int64)
    powers = vocab_size ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return (index[:, None] // powers[None, :]) % vocab_size


JAX_SEEDS = 2**32  # jax.random.PRNGKey keeps a seed's low 32 bits (without jax_enable_x64)


def check_seed(seed: Any, *, jax_key: bool = False) -> int:
    """`seed` if it is a whole number a random stream can take without repeating another
    seed's stream, else InvalidInputError: not a bool, float (NaN) or string, and not
    negative (random.Random(-5) is random.Random(5)); for a JAX key (`jax_key`) also below
    2**32, since PRNGKey keeps 32 bits (2**32 would be seed 0, and past 2**63 it raised
    OverflowError)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidInputError(f"seed must be a whole number >= 0, got {seed!r} "
                                f"({type(seed).__name__})")
    seed = int(seed)
    if seed < 0:
        raise InvalidInputError(f"seed must be a whole number >= 0, got {seed} (a negative "
                                f"seed would repeat the stream of {-seed})")
    if jax_key and seed >= JAX_SEEDS:
        raise InvalidInputError(
            f"seed must be a whole number from 0 to {JAX_SEEDS - 1:,}, got {seed:,}: JAX's "
            f"random keys keep 32 bits of a seed, so a larger one would repeat a smaller one's "
            f"model")
    return seed


def random_input_ids(vocab_size: int, max_seq_len: int, count: int,
                     seed: int = 0) -> Iterator[list[int]]:
    """The token ids of `random_inputs`: the draws `rng.randint(1, max_seq_len)` and
    `rng.choice(vocab)` make, so the same inputs for a seed (tests/verify/test_verify.py)."""
    draws = _RandomIds(vocab_size, max_seq_len, check_seed(seed))
    done = 0
    while done < count:
        lengths, tokens = draws.take(min(DEFAULT_CHUNK, count - done))
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        tokens = tokens.tolist()
        for start, stop in zip(bounds, bounds[1:]):
            yield tokens[start:stop]
        done += len(lengths)


class _RandomIds:
    """The draws of `random.Random(seed)`'s randint(1, max_seq_len) and choice(vocab), made
    on arrays: the same Mersenne Twister stream (numpy's MT19937, started from Python's
    state), each 32-bit word read as random's `_randbelow` reads it (getrandbits(k) is the
    word's top k bits; a draw >= n is rejected and the next word drawn)."""

    def __init__(self, vocab_size: int, max_seq_len: int, seed: int):
        state = random.Random(seed).getstate()[1]
        self.generator = np.random.MT19937()
        self.generator.state = {"bit_generator": "MT19937", "state": {
            "key": np.array(state[:624], dtype=np.uint32), "pos": state[624]}}
        self.vocab_size, self.max_seq_len = vocab_size, max_seq_len
        self.words = np.zeros(0, dtype=np.uint64)  # drawn, not yet used

    def _more(self, count: int) -> None:
        self.words = np.concatenate([self.words, self.generator.random_raw(count)])

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `count` inputs: their lengths, and their token ids concatenated."""
        length_shift = 32 - self.max_seq_len.bit_length()
        token_shift = 32 - self.vocab_size.bit_length()
        # words per input, on average: length draws, then (mean length) token draws
        per_input = (2 ** (32 - length_shift) / self.max_seq_len
                     + (self.max_seq_len + 1) / 2 * 2 ** (32 - token_shift) / self.vocab_size)
        all_lengths: list[np.ndarray] = []
        all_tokens: list[np.ndarray] = []
        found = 0
        while found < count:
            wanted = int((count - found) * per_input * 1.1) + 64
            if len(self.words) < wanted:
                self._more(wanted - len(self.words))
            words = self.words
            size = len(words)
            length_value = (words >> length_shift).astype(np.int64)
            token_value = (words >> token_shift).astype(np.int64)
            token_at = np.flatnonzero(token_value < self.vocab_size)  # accepted token words
            tokens_before = np.concatenate([[0], np.cumsum(token_value < self.vocab_size)])
            # next_length[i]: the first accepted length word at or after i (size: none)
            next_length = np.where(length_value < self.max_seq_len, np.arange(size), size)
            next_length = np.append(np.minimum.accumulate(next_length[::-1])[::-1], size)
            # An input whose length word is i: its first token is accepted token word
            # tokens_before[i + 1], its last ends the input; the next input's length word
            # follows. Each input's successor, on arrays; then the chain of inputs.
            first = tokens_before[1:]
            last = first + length_value  # index in token_at of the last token (n = value + 1)
            complete = last < len(token_at)  # its last token is among the words drawn
            ends = np.append(token_at, size - 1)  # (an incomplete input reads the filler)
            after = np.where(complete, ends[np.minimum(last, len(token_at))] + 1, size)
            chain = _chain(int(next_length[0]), next_length[after], complete, count - found)
            if len(chain):
                chain_at = chain
                n = length_value[chain_at] + 1
                offsets = np.repeat(first[chain_at] - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
                all_lengths.append(n)
                all_tokens.append(token_value[token_at[offsets + np.arange(int(n.sum()))]])
                found += len(chain)
                self.words = words[int(token_at[last[chain[-1]]]) + 1:]
            if found < count:  # the words ran out mid-input: draw more, from that input on
                self._more(max(len(self.words), 1024))
        return np.concatenate(all_lengths), np.concatenate(all_tokens)


def _chain(start: int, successor: np.ndarray, complete: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` nodes of the path start, successor[start], ..., cut before the
    first node that is incomplete or past the end (index len(successor)).

    By pointer doubling: after k rounds the path holds 2^k nodes and `jump` is the
    successor applied 2^k times (every successor lies after its node, so the path never
    loops), so the path takes log2(limit) passes over the arrays instead of a Python step
    per input."""
    sink = len(successor)
    jump = np.append(np.where(complete, successor, sink), sink)  # no way on from a bad node
    good = np.append(complete, False)
    path = np.array([start], dtype=np.int64)
    while len(path) < limit:
        path = np.concatenate([path, jump[path]])
        if len(path) < limit:
            jump = jump[jump]
    path = path[:limit]
    bad = ~good[path]
    return path[: int(np.argmax(bad))] if bad.any() else path


def random_inputs(vocab: Sequence, max_seq_len: int, count: int, seed: int = 0) -> Iterator[tuple]:
    """`count` random sequences with lengths uniform in 1..max_seq_len."""
    vocab = list(vocab)
    for row in random_input_ids(len(vocab), max_seq_len, count, seed):
        yield tuple(vocab[i] for i in row)


@dataclass(frozen=True, eq=False)
class Block:
    """Inputs of one length: ids [B, n] and each one's place in the input stream."""

    ids: np.ndarray
    order: np.ndarray


def exhaustive_chunks(vocab_size: int, max_length: int, chunk: int,
                       first: int) -> Iterator[list[Block]]:
    """`all_inputs` as blocks, at most `chunk` inputs per chunk."""
    pending: list[Block] = []
    room = chunk
    order = first
    for n in range(1, max_length + 1):
        total = vocab_size ** n
        start = 0
        while start < total:
            take = min(room, total - start)
            pending.append(Block(input_ids(vocab_size, n, start, start + take),
                                  np.arange(order, order + take)))
            order += take
            start += take
            room -= take
            if room == 0:
                yield pending
                pending, room = [], chunk
    if pending:
        yield pending


def random_chunks(vocab_size: int, max_seq_len: int, count: int, seed: int, chunk: int,
                   first: int) -> Iterator[list[Block]]:
    """`random_input_ids` as blocks, `chunk` inputs at a time, grouped by length."""
    draws = _RandomIds(vocab_size, max_seq_len, seed)
    done = 0
    while done < count:
        lengths, tokens = draws.take(min(chunk, count - done))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        blocks = []
        for n in np.unique(lengths).tolist():
            members = np.flatnonzero(lengths == n)
            ids = tokens[starts[members, None] + np.arange(n)]
            blocks.append(Block(ids, first + done + members))
        done += len(lengths)
        yield blocks


def row_chunks(rows: Iterable[Sequence[int]], chunk: int, first: int) -> Iterator[list[Block]]:
    """Rows of token ids of any length, `chunk` at a time, grouped by length."""
    iterator = iter(rows)
    order = first
    while True:
        batch = [list(row) for row in itertools.islice(iterator, chunk)]
        if not batch:
            return
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(batch):
            by_length.setdefault(len(row), []).append(i)
        blocks = []
        for n, members in sorted(by_length.items()):
            ids = np.array([batch[i] for i in members], dtype=np.int64).reshape(len(members), n)
            blocks.append(Block(ids, order + np.array(members, dtype=np.int64)))
        order += len(batch)
        yield blocks

"""Tokens in, values out: the model's token encoder and its readout decoder.

Encoding turns token sequences (no BOS) into checked rows of token ids: a token
must be a vocab token itself, not an equal value of another type (True or 1.0
for the token 1: identity.py; a vocab holding both 1 and True has both tokens, and
is looked up by identity), and a sequence must hold 1..max_seq_len tokens.
Every refusal is an InvalidInputError naming the input and position.

Decoding reads one SOp from its readout's residual columns: a categorical value
is a clean one-hot (within DECODE_TOLERANCE), anything else an `Unclean` marker
listing the blended values; a numerical value is the readout's linear form.
`decode_indices` decides every position of a batch at once (verify compares its
column indices directly); Python values are made only for the lists returned.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import jax
import numpy as np

from rasp_compiler.errors import InvalidInputError
from rasp_compiler.lang.identity import identity_key, value_dict
from rasp_compiler.model.constants import DECODE_TOLERANCE

if TYPE_CHECKING:
    from rasp_compiler.model.residual import Readout



# ---------------------------------------------------------------------------- encoding


def lookup_ids(ids: Mapping[Any, int], tokens: Sequence, where: str, known: str) -> list[int]:
    """Each token's id; an unknown token is an InvalidInputError naming its position.

    A token must be the key itself, not an equal value of another type (True or 1.0
    for the token 1; identity.py). `where` prefixes the position ("input 3, "),
    `known` names the map for the message. `TokenEncoder.encode` has a faster path
    for the same rule.
    """
    keys = {i: key for key, i in ids.items()}
    out = []
    for position, token in enumerate(tokens):
        try:
            token_id = ids[token]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"{where}position {position}: token {token!r} is not in {known} {list(ids)}"
            ) from None
        if identity_key(token) != identity_key(keys[token_id]):
            raise InvalidInputError(
                f"{where}position {position}: token {token!r} ({type(token).__name__}) is not in "
                f"{known} {list(ids)}; it equals {keys[token_id]!r} "
                f"({type(keys[token_id]).__name__}) but is a different value"
            )
        out.append(token_id)
    return out


class TokenEncoder:
    """A model's vocab and length limit: token (or token id) sequences to checked id rows."""

    def __init__(self, vocab: Sequence, max_seq_len: int):
        self.vocab = tuple(vocab)
        self.max_seq_len = max_seq_len
        # token -> id; a ValueMap when the vocab holds equal tokens that are different
        # values (1 and True), which it then tells apart (identity.py)
        self.token_ids = value_dict((token, i) for i, token in enumerate(self.vocab))
        # A token of one of these types that equals a vocab token is that token; any
        # other (True or 1.0 given for the token 1: identity.py) takes the checked path.
        self._exact_token_types = _exact_token_types(self.vocab)
        # Vocab tokens an equal value of the same type may still differ from (0.0 and
        # -0.0, (1,) and (True,)): their matches are compared by identity key too.
        self._keyed_tokens = {i: identity_key(t) for i, t in enumerate(self.vocab)
                              if isinstance(t, (tuple, frozenset))
                              or (isinstance(t, (float, complex)) and 0 in (t.real, t.imag))}

    def encode(self, batch) -> list[list[int]]:
        """Token sequences to lists of token ids, checked.

        A numpy (or JAX) array is a batch of token sequences like a list of lists:
        its items are looked up as tokens (numpy scalars as the Python values they
        hold), never read as token ids, so an int vocab gives the same model output
        for `[[3, 1]]` and `np.array([[3, 1]])`. Token ids go through `encode_ids`
        (or `run(..., ids=True)`).
        """
        if isinstance(batch, (np.ndarray, jax.Array)):
            batch = np.asarray(batch).tolist()
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Iterable):
            raise InvalidInputError(
                f"expected a batch: a list of token sequences, got {type(batch).__name__} {batch!r}"
            )
        encoded = []
        token_ids, exact_types, keyed = self.token_ids, self._exact_token_types, self._keyed_tokens
        for b, sequence in enumerate(batch):
            if isinstance(sequence, (str, bytes)) or not isinstance(sequence, (list, tuple)):
                raise InvalidInputError(
                    f"input {b} must be a list of tokens, got {type(sequence).__name__} "
                    f"{sequence!r}; to run one sequence write model.run([sequence])"
                )
            try:
                row = [token_ids[token] for token in sequence]
                checked = exact_types is None or exact_types.issuperset(map(type, sequence))
            except (KeyError, TypeError):
                checked = False
            if not checked:
                row = [self._token_id(token, b, position) for position, token in enumerate(sequence)]
            if keyed and not keyed.keys().isdisjoint(row):
                for position in compress(range(len(row)), map(keyed.__contains__, row)):
                    if identity_key(sequence[position]) != keyed[row[position]]:
                        raise self._not_the_token(sequence[position], row[position], b, position)
            encoded.append(row)
        self.check_lengths(encoded)
        return encoded

    def _token_id(self, token: Any, b: int, position: int) -> int:
        """The id of `token`, which must be the vocab token itself, not an equal value of
        another type (True or 1.0 for the token 1: identity.py); a numpy scalar counts as
        the Python value it holds."""
        try:
            token_id = self.token_ids[token]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"input {b}, position {position}: token {token!r} is not in the vocab "
                f"{list(self.vocab)}"
            ) from None
        if identity_key(token) != identity_key(self.vocab[token_id]):
            raise self._not_the_token(token, token_id, b, position)
        return token_id

    def _not_the_token(self, token: Any, token_id: int, b: int, position: int) -> InvalidInputError:
        vocab_token = self.vocab[token_id]
        return InvalidInputError(
            f"input {b}, position {position}: token {token!r} ({type(token).__name__}) is not "
            f"in the vocab {list(self.vocab)}; it equals the token {vocab_token!r} "
            f"({type(vocab_token).__name__}) but is a different value; pass {vocab_token!r}"
        )

    def encode_ids(self, ids) -> list[list[int]]:
        """Token ids (indices into `model.vocab`, BOS excluded) to checked rows: a 2-D
        integer array [batch, length], or a list of lists of ints (lengths may differ)."""
        if isinstance(ids, (np.ndarray, jax.Array)):
            array = np.asarray(ids)
            if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
                raise InvalidInputError(
                    f"an id array must be 2-D integers [batch, length], got shape "
                    f"{array.shape} and dtype {array.dtype}"
                )
            ids = array.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidInputError(
                f"expected token ids: a 2-D integer array or a list of lists of ints, got "
                f"{type(ids).__name__} {ids!r}"
            )
        rows = []
        for b, row in enumerate(ids):
            if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
                raise InvalidInputError(
                    f"input {b} must be a list of token ids, got {type(row).__name__} {row!r}"
                )
            row = list(row)
            for position, token_id in enumerate(row):
                if (isinstance(token_id, (bool, np.bool_))
                        or not isinstance(token_id, (int, np.integer))
                        or not 0 <= token_id < len(self.vocab)):
                    raise InvalidInputError(
                        f"input {b}, position {position}: token ids must be ints in "
                        f"0..{len(self.vocab) - 1} (indices into model.vocab), got {token_id!r}"
                    )
            rows.append([int(token_id) for token_id in row])
        self.check_lengths(rows)
        return rows

    def check_lengths(self, sequences: list[list[int]]) -> None:
        """Every sequence holds 1..max_seq_len tokens."""
        for b, row in enumerate(sequences):
            if not row:
                raise InvalidInputError(f"input {b} is empty; the model needs at least one token")
            if len(row) > self.max_seq_len:
                raise InvalidInputError(
                    f"input {b} has {len(row)} tokens; this model was compiled for at most "
                    f"max_seq_len={self.max_seq_len}"
                )


def _exact_token_types(vocab: Sequence) -> frozenset | None:
    """Vocab token types whose values can equal no vocab token of another type: str
    alone, int unless the vocab also holds bools or floats, and so on. None for an
    all-str vocab: a token equal to a str is that str, so nothing needs checking."""
    types = {type(token) for token in vocab}
    if types == {str}:
        return None

    def numeric(kind: type) -> bool:
        return issubclass(kind, (numbers.Number, np.generic))

    def may_equal(a: type, b: type) -> bool:
        return issubclass(a, b) or issubclass(b, a) or (numeric(a) and numeric(b))

    return frozenset(kind for kind in types
                     if not any(other is not kind and may_equal(kind, other) for other in types))


# ---------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Unclean:
    """A position where the residual holds no single clean value (e.g. a mixed aggregate)."""

    label: str
    weights: tuple[tuple[Any, float], ...]  # the values with non-negligible weight

    def __repr__(self) -> str:
        shown = ", ".join(f"{v!r}={w:.2f}" for v, w in self.weights)
        return f"<unclean {self.label}: {shown}>"


def readout_numbers(readout: Readout, columns: np.ndarray) -> np.ndarray:
    """A numerical readout's values from its columns [..., k] (float64, shape [...]).

    A sum over the k columns, not a BLAS product: BLAS threads would fight the
    verification forward's threads for the cores."""
    columns = np.asarray(columns)
    total = np.zeros(columns.shape[:-1], dtype=np.float64)
    for i, coefficient in enumerate(readout.coefficients):
        total += columns[..., i].astype(np.float64) * float(coefficient)
    return total


EMPTY = -1  # decode_indices: the position holds no value (None)
UNCLEAN = -2  # decode_indices: the position holds a blend, not one clean value


def decode_indices(readout: Readout, columns: np.ndarray) -> np.ndarray:
    """A categorical readout's decoding of columns [..., k] as ints [...]: the index of
    the clean value's column, EMPTY (None) or UNCLEAN; all positions at once.

    Clean: one column within DECODE_TOLERANCE of 1 and every other within it of 0.
    Empty: every column within DECODE_TOLERANCE of 0.
    """
    shape = columns.shape[:-1]
    k = columns.shape[-1]
    if k == 0:
        return np.full(shape, EMPTY, dtype=np.int64)
    top = columns.argmax(axis=-1)
    big = np.take_along_axis(columns, top[..., None], axis=-1)[..., 0]
    second = (np.partition(columns, k - 2, axis=-1)[..., k - 2] if k > 1
              else np.zeros(shape, columns.dtype))
    clean = (big >= 1 - DECODE_TOLERANCE) & (second <= DECODE_TOLERANCE)
    empty = big <= DECODE_TOLERANCE
    return np.where(clean, top, np.where(empty, EMPTY, UNCLEAN)).astype(np.int64)


def unclean_at(readout: Readout, row: np.ndarray) -> Unclean:
    """The Unclean marker of one position's columns [k]: the values with weight."""
    weights = tuple((readout.values[i], float(row[i]))
                    for i in np.argsort(-row) if row[i] > DECODE_TOLERANCE)
    return Unclean(readout.label, weights)


def decode_readout(readout: Readout, values: np.ndarray) -> list:
    """Decode [n, k] readout columns to n values (None where a categorical SOp holds none)."""
    if readout.numerical:
        return readout_numbers(readout, values).tolist()
    indices = decode_indices(readout, values)
    table = np.empty(len(readout.values) + 2, dtype=object)  # the values, then UNCLEAN, EMPTY
    for i, value in enumerate(readout.values):
        table[i] = value
    out = table[indices].tolist()
    for position in np.flatnonzero(indices == UNCLEAN).tolist():
        out[position] = unclean_at(readout, values[position])
    return out

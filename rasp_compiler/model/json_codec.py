"""The saved model's JSON codec: frozen dataclasses (ModelInfo, Readout, ModelShape, ...)
to JSON and back, driven by their type hints, so a new field is saved and checked with no
new code here. Values keep their identity (0, 0.0 and False stay three values: lang's
identity.py), and every problem on the way back names its path
(`info.layers[0].heads[1].coldness: missing`)."""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import operator
import types
import typing
from typing import Any

import numpy as np

from rasp_compiler.errors import (
    InternalError,
    SavedFileProblem,
    SaveError,
)


def to_json(value: Any, hint: Any = None) -> Any:
    """A dataclass (or a value of type `hint`) as JSON-ready lists, dicts and scalars."""
    hint = type(value) if hint is None else hint
    if hint is Any:
        return _encode_value(value)
    if dataclasses.is_dataclass(hint):
        hints = _field_hints(hint)
        return {f.name: to_json(getattr(value, f.name), hints[f.name])
                for f in dataclasses.fields(hint)}
    optional = _optional(hint)
    if optional is not None:
        return None if value is None else to_json(value, optional)
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        items = _item_hints(hint, len(value))
        if items is None:
            raise SaveError(f"cannot save {value!r}: expected a tuple shaped like {hint}")
        return [to_json(item, item_hint) for item, item_hint in zip(value, items)]
    if origin in (collections.abc.Mapping, dict):
        _, value_hint = typing.get_args(hint)
        if not all(isinstance(key, str) for key in value):
            raise SaveError(f"cannot save {value!r}: JSON object keys must be strings")
        return {key: to_json(item, value_hint) for key, item in value.items()}
    if hint is bool:
        return bool(value)
    if hint is int:
        return operator.index(value)
    if hint is float:
        return float(value)
    if hint is str:
        return str(value)
    raise InternalError(f"no JSON encoding for the type {hint!r} (a field of the info records); "
                        f"extend json_codec.to_json")


def from_json(data: Any, hint: Any, path: str = "") -> Any:
    """Inverse of `to_json`: check `data` against `hint`; name the field path of any problem."""
    if hint is Any:
        return _decode_value(data, path)
    if dataclasses.is_dataclass(hint):
        fields = dataclasses.fields(hint)
        names = [f.name for f in fields]
        if not isinstance(data, dict):
            raise SavedFileProblem(f"{path or 'the file'}: expected an object with keys "
                           f"{', '.join(names)}, got {kind_of(data)}")
        for field in fields:  # a field with a default was added later: older files lack it
            if field.name not in data and field.default is dataclasses.MISSING \
                    and field.default_factory is dataclasses.MISSING:
                raise SavedFileProblem(f"{_join(path, field.name)}: missing")
        for key in data:
            if key not in names:
                raise SavedFileProblem(f"{_join(path, key)}: unknown key (a {hint.__name__} has "
                               f"{', '.join(names)})")
        hints = _field_hints(hint)
        return hint(**{name: from_json(data[name], hints[name], _join(path, name))
                       for name in names if name in data})
    optional = _optional(hint)
    if optional is not None:
        return None if data is None else from_json(data, optional, path)
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        if not isinstance(data, list):
            raise SavedFileProblem(f"{path}: expected a list, got {kind_of(data)}")
        items = _item_hints(hint, len(data))
        if items is None:
            raise SavedFileProblem(f"{path}: expected {len(typing.get_args(hint))} items, got {len(data)}")
        return tuple(from_json(item, item_hint, f"{path}[{i}]")
                     for i, (item, item_hint) in enumerate(zip(data, items)))
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(data, dict):
            raise SavedFileProblem(f"{path}: expected an object, got {kind_of(data)}")
        _, value_hint = typing.get_args(hint)
        return {key: from_json(item, value_hint, f"{path}[{key!r}]") for key, item in data.items()}
    if hint is bool:
        if not isinstance(data, bool):
            raise SavedFileProblem(f"{path}: expected true or false, got {kind_of(data)}")
        return data
    if hint is int:
        if type(data) is not int:
            raise SavedFileProblem(f"{path}: expected a whole number, got {kind_of(data)}")
        return data
    if hint is float:
        if type(data) not in (int, float):
            raise SavedFileProblem(f"{path}: expected a number, got {kind_of(data)}")
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise SavedFileProblem(f"{path}: expected a string, got {kind_of(data)}")
        return data
    raise InternalError(f"no JSON decoding for the type {hint!r} (a field of the info records); "
                        f"extend json_codec.from_json")


def _optional(hint: Any) -> Any:
    """X for a hint `X | None` (or Optional[X]); None for any other hint."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return None


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _item_hints(hint: Any, n: int) -> list | None:
    """The hint of each of a tuple's n items; None when a fixed-length tuple has another n."""
    args = typing.get_args(hint)
    if not args:
        return [Any] * n  # a bare `tuple` holds values of any kind
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * n
    return list(args) if len(args) == n else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def kind_of(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return f"{str(data).lower()}"
    if isinstance(data, (list, dict)):
        return f"a {'list' if isinstance(data, list) else 'object'} ({len(data)} items)"
    if isinstance(data, str):
        return f"the string {data[:40]!r}"
    return f"the number {data!r}"


def _encode_value(value: Any) -> Any:
    """A token or SOp value as JSON: None, bools, numbers and strings as themselves,
    tuples tagged {"tuple": [...]} so that they come back as tuples."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    raise SaveError(
        f"cannot save the value {value!r} ({type(value).__name__}): saved models hold None, "
        f"bools, numbers, strings and tuples of them"
    )


def _decode_value(data: Any, path: str) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, dict) and set(data) == {"tuple"} and isinstance(data["tuple"], list):
        return tuple(_decode_value(v, f"{path}[{i}]") for i, v in enumerate(data["tuple"]))
    raise SavedFileProblem(f"{path}: expected a value (null, a bool, number or string, or "
                   f'{{"tuple": [...]}}), got {kind_of(data)}')

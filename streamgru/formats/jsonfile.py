"""Bounded reading of JSON weight files (RTNeural, AIDA-X, GuitarML, NAM).

``read`` charges the file and an upper bound of what parsing it can allocate
to the load's ``Budget`` before parsing; NaN/Infinity literals, invalid
UTF-8, absurd nesting (Python's parser stops at its recursion limit) and
integers too long to convert are refused as ``WeightsError``. ``array``
turns nested lists into a float64 array only after checking that they are
rectangular lists of plain numbers of the expected depth (no bools, nulls
or strings), charging the array to the budget first.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import WeightsError
from .guard import Budget, read_regular

__all__ = ["read", "array", "field", "positive_int", "kind"]

# upper bounds of what one JSON token costs once parsed (CPython, 64-bit): a
# float object and its list slot per number (each number but the last is
# followed by a comma), an empty list, an empty dict with its keys, a string
_PER_COMMA, _PER_LIST, _PER_DICT, _PER_QUOTE = 32, 64, 240, 40


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} (JSON has no NaN or Infinity)")


def read(path: str, budget: Budget, what: str = "JSON") -> Any:
    """The parsed content of the JSON file ``path``, within ``budget``."""
    raw = read_regular(path, budget)
    cost = (len(raw) + _PER_COMMA * raw.count(b",") + _PER_LIST * raw.count(b"[")
            + _PER_DICT * raw.count(b"{") + _PER_QUOTE * raw.count(b'"'))
    budget.take(cost, f"parsing the {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WeightsError(f"{path}: not a {what} file (not UTF-8 text: {exc.reason} at "
                           f"byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise WeightsError(f"{path}: not a {what} file (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise WeightsError(f"{path}: not a valid {what} file ({exc})") from None


def kind(value: Any) -> str:
    """A JSON value's type, as a message names it."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def field(obj: Any, key: str, where: str, types: tuple = (), default: Any = ...) -> Any:
    """``obj[key]`` checked to be one of ``types`` (bool never counts as a
    number); missing: ``default`` if given, else WeightsError naming
    ``where`` and the key."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{where}: expected a JSON object, got {kind(obj)}")
    if key not in obj:
        if default is not ...:
            return default
        raise WeightsError(f"{where}: key {key!r} is missing")
    value = obj[key]
    if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        names = " or ".join(t.__name__ for t in types)
        raise WeightsError(f"{where}: {key!r} must be {names}, got {kind(value)} {_short(value)}")
    return value


def positive_int(obj: Any, key: str, where: str, limit: int = 1 << 20) -> int:
    """``obj[key]`` as a whole number in [1, limit]."""
    value = field(obj, key, where, (int,))
    if not 1 <= value <= limit:
        raise WeightsError(f"{where}: {key!r} must be a whole number from 1 to {limit}, got {value}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def array(value: Any, what: str, ndim: int, budget: Budget) -> np.ndarray:
    """``value`` (nested lists, ``ndim`` deep) as a float64 array, or a
    WeightsError naming ``what``: ragged, not numbers, or not finite."""
    shape = []
    level = [value]
    for depth in range(ndim):
        width = None
        nxt: list = []
        for v in level:
            if type(v) is not list:
                raise WeightsError(
                    f"{what}: expected {ndim}-D nested lists of numbers, found {kind(v)} "
                    f"{_short(v)} at depth {depth}")
            if width is None:
                width = len(v)
            elif len(v) != width:
                raise WeightsError(f"{what}: ragged lists (lengths {width} and {len(v)} at depth "
                                   f"{depth}); expected a {ndim}-D array")
            budget.count(len(v), what)
            nxt.extend(v)
        shape.append(width or 0)
        level = nxt
    for v in level:
        if type(v) is not float and type(v) is not int:
            raise WeightsError(f"{what}: expected numbers, found {kind(v)} {_short(v)}")
    budget.take(8 * len(level), what)
    try:
        arr = np.array(level, dtype=np.float64).reshape(shape)
    except OverflowError:
        raise WeightsError(f"{what}: a number too large for a float") from None
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise WeightsError(f"{what}: {bad} non-finite value(s) (a number beyond float range)")
    return arr

"""Argument validators, the one place that says what a valid value is (plain Python).

Every constructor of the library and every config check calls these; each raises
:class:`~snn_lightning.errors.InvalidValue` with one line naming the bad value and what is allowed.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from .errors import InvalidValue


def int_at_least(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools, floats and strings are rejected)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise InvalidValue(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise InvalidValue(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def positive_int(name: str, value: Any) -> int:
    return int_at_least(name, value, 1)


def check_T(T: Any) -> int:
    """The number of timesteps: a positive int (the one rule for ``T`` everywhere)."""
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise InvalidValue(f"T must be a positive integer number of timesteps, got {T!r}")
    return T


def float_above(name: str, value: Any, low: float, what: str | None = None) -> float:
    """A finite float strictly greater than ``low``; ``what`` words the rule (default ``greater than low``)."""
    rule = what or f"greater than {low:g}"
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidValue(f"{name} must be a number {rule}, got {value!r}") from None
    if not (math.isfinite(v) and v > low):
        raise InvalidValue(f"{name} must be {rule}, got {v!r}")
    return v


def positive_float(name: str, value: Any) -> float:
    return float_above(name, value, 0.0)


def fraction(name: str, value: Any, *, low_inclusive: bool = True, high: float = 1.0,
             high_inclusive: bool = False) -> float:
    """A number in ``[0, high)`` (or ``(0, …`` / ``…, high]`` as asked)."""
    lo, hi = ("[0" if low_inclusive else "(0"), (f"{high}]" if high_inclusive else f"{high})")
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidValue(f"{name} must be a number in {lo}, {hi}, got {value!r}") from None
    ok_low = v >= 0.0 if low_inclusive else v > 0.0
    ok_high = v <= high if high_inclusive else v < high
    if not (math.isfinite(v) and ok_low and ok_high):
        raise InvalidValue(f"{name} must be in {lo}, {hi}, got {value!r}")
    return v


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise InvalidValue(f"unknown {name} {value!r}; allowed: {list(allowed)}")
    return value

"""Value checks a schema key can declare: ranges, choices, list lengths and order.

A leaf of the schema is ``(default, meaning)`` or ``(default, meaning, check)`` where ``check`` is
one of the objects below or a tuple of them. Element checks (:func:`at_least`, :func:`above`,
:func:`between`, :func:`one_of`) apply to a scalar, or to each element of a list; list checks
(:func:`length`, :data:`ASCENDING`) to the list as a whole. Every float must also be finite, whether
a range is declared or not (the loader checks that).
"""
from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """``ok(value)`` says whether a value passes; ``text`` says what is expected, for messages."""

    text: str
    on_list: bool = False  # True: applies to the whole list, not to each element

    def ok(self, value: Any) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class _Range(Check):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def ok(self, value: Any) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


@dataclass(frozen=True)
class _OneOf(Check):
    choices: tuple = ()

    def ok(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class _Length(Check):
    lengths: tuple[int, ...] | None = None  # None: any length but 0

    def ok(self, value: Any) -> bool:
        return len(value) in self.lengths if self.lengths is not None else len(value) > 0


@dataclass(frozen=True)
class _Ascending(Check):
    def ok(self, value: Any) -> bool:
        return all(a <= b for a, b in zip(value, value[1:]))


def at_least(low: float) -> Check:
    return _Range(f">= {low:g}", low=low)


def above(low: float) -> Check:
    return _Range(f"> {low:g}", low=low, low_open=True)


def between(low: float, high: float, *, high_open: bool = False) -> Check:
    return _Range(f"in [{low:g}, {high:g}{')' if high_open else ']'}", low=low, high=high, high_open=high_open)


def one_of(*choices) -> Check:
    return _OneOf("one of " + ", ".join(repr(c) for c in choices), choices=choices)


def length(*lengths: int) -> Check:
    text = " or ".join(str(n) for n in lengths)
    return _Length(f"a list of {text} element{'s' if lengths != (1,) else ''}", on_list=True, lengths=lengths)


POSITIVE = above(0)
NON_NEGATIVE = at_least(0)
FRACTION = between(0, 1)  # also IoU and NMS thresholds, scores
NON_EMPTY = _Length("a non-empty list", on_list=True)
ASCENDING = _Ascending("a list in increasing order", on_list=True)


def problem(value: Any, checks: Check | tuple[Check, ...]) -> str | None:
    """What ``value`` fails (``"expected > 0"``, ``"element 2 expected in [0, 1]"``), or None."""
    for check in checks if isinstance(checks, tuple) else (checks,):
        if check.on_list or not isinstance(value, list):
            if not check.ok(value):
                return f"expected {check.text}"
            continue
        for i, v in enumerate(value):
            if not check.ok(v):
                return f"element {i} ({reprlib.repr(v)}) expected {check.text}"
    return None

"""Allowed values of numeric settings, declared once per config class and checked when the
config is built, before any input is read.

A config dataclass (a filter, a stage's settings) lists its numeric fields in ``bounds``
(field -> :class:`Range`) and the pairs that must be ordered in ``ordered``; :func:`check_bounds`
turns a value outside its range into a one-line :class:`~curate.core.errors.ConfigError` naming
the config, the field, the value and what is allowed. NaN is never inside a range, and
:func:`curate.core.config.from_dict` refuses non-finite floats everywhere.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any

from curate.core.errors import ConfigError

OFF = -1  # the value that turns a threshold rule off


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take: ``low``..``high`` (either end may be open or
    absent), plus the sentinel values in ``off`` that disable its rule."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    off: tuple[float, ...] = ()
    high_open: bool = False  # a fraction that must stay below 1, such as a held-out share

    def or_off(self, *values: float) -> Range:
        """The same range also accepting ``values`` (default: -1) as "rule off"."""
        return dataclasses.replace(self, off=values or (OFF,))

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real
            return False
        if value in self.off:
            return True
        # Written as "inside" tests so that NaN (TOML's nan) is never inside.
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return not (self.high is not None and not (value < self.high if self.high_open else value <= self.high))

    def describe(self, integer: bool = False) -> str:
        kind = "an integer" if integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = kind
        if self.off:
            text += f", or {' or '.join(_num(v) for v in self.off)} to turn the rule off"
        return text

    def short(self) -> str:
        """Compact form for ``curate filter --list``: ``[0, 1]; -1 = off``."""
        if self.low is not None and self.high is not None:
            text = f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}" if self.high is not None else "any"
        if self.off:
            text += "; " + ", ".join(_num(v) for v in self.off) + " = off"
        return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


RATIO = Range(0.0, 1.0)  # a fraction of documents, lines, words or characters; a probability
SHARE = Range(0.0, 1.0, high_open=True)  # a fraction that must leave something: a held-out share
SEED = Range(0, 2**32 - 1)  # a random seed: what every generator (numpy's included) accepts
COUNT = Range(0)  # how many words, lines, sentences ...: 0 or more
SIZE = Range(1)  # a length or an n-gram size that must be at least 1
NON_NEGATIVE = Range(0.0)  # a per-word rate or a length that may exceed 1 but not go below 0


def check_value(who: str, key: str, value: Any, allowed: Range, integer: bool = False) -> None:
    """ConfigError (one line) unless ``value`` is in ``allowed``."""
    if not allowed.allows(value):
        raise ConfigError(f"{who}: {key} = {value!r} is out of range; allowed: {allowed.describe(integer)}")


POSITIVE = Range(0.0, low_open=True)  # a rate, a scale or a size that must be above 0
SEED = Range(0, 2**32 - 1)  # a random seed: numpy's generators take 32-bit ones (no negative seed)


def check_bounds(obj: Any, who: str) -> None:
    """Every field ``obj`` declares in ``bounds`` within its range (``None`` passes where the
    field's type allows it) and every ``ordered`` pair in order, else a one-line ConfigError."""
    bounds: dict[str, Range] = getattr(obj, "bounds", {})
    hints = typing.get_type_hints(type(obj))
    for key, allowed in bounds.items():
        value = getattr(obj, key)
        if value is None and accepts_none(hints.get(key)):
            continue
        check_value(who, key, value, allowed, integer=is_integer(hints.get(key)))
    for low_key, high_key in getattr(obj, "ordered", ()):
        low, high = getattr(obj, low_key), getattr(obj, high_key)
        if low is None or high is None or low in bounds[low_key].off or high in bounds[high_key].off:
            continue
        if high < low:
            raise ConfigError(
                f"{who}: {high_key} = {high!r} is below {low_key} = {low!r}; "
                f"allowed: {high_key} >= {low_key} (or -1 on either to turn that rule off)"
            )


def accepts_none(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(hint)


def is_integer(hint: Any) -> bool:
    """``int`` or ``int | None``: the parameter takes whole numbers."""
    if hint is int:
        return True
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return accepts_none(hint) and args == [int]

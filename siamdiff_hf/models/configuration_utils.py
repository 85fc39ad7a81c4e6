"""Field checks for the encoder configurations: a wrong value fails in the config's `__init__` with one line naming
the config class, the field and the value, never later inside torch."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from transformers.activations import ACT2FN


class ConfigFieldError(ValueError):
    """A configuration field holds a value of the wrong type or outside its range."""


def _fail(owner: str, name: str, expected: str, value: Any) -> ConfigFieldError:
    return ConfigFieldError(f"{owner}: {name} must be {expected}, got {value!r}")


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return `value` if it is a bool (JSON true/false), else raise naming the field."""
    if not isinstance(value, bool):
        raise _fail(owner, name, "true or false", value)
    return value


def check_int(owner: str, name: str, value: Any, minimum: int | None = None) -> int:
    """Return `value` if it is an integer (not a bool) of at least `minimum`, else raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise _fail(owner, name, "an integer" if minimum is None else f"an integer >= {minimum}", value)
    return value


def check_float(
    owner: str, name: str, value: Any, minimum: float | None = None, below: float | None = None, positive: bool = False
) -> float:
    """Return `value` as float if it is a finite number in range (``minimum <= value < below``, ``> 0``)."""
    limits = [f">= {minimum}"] * (minimum is not None) + [f"< {below}"] * (below is not None) + ["> 0"] * positive
    expected = "a finite number" + (" " + " and ".join(limits) if limits else "")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(owner, name, expected, value)
    if (minimum is not None and value < minimum) or (below is not None and value >= below) or (positive and value <= 0):
        raise _fail(owner, name, expected, value)
    return float(value)


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return `value` if it is one of `choices`, else raise naming the field."""
    choices = tuple(choices)
    if value not in choices:
        raise _fail(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_int_list(owner: str, name: str, value: Any, minimum: int = 0, length: int | None = None) -> list[int]:
    """Return `value` as a list of integers >= `minimum` (of `length` entries if given, else at least one)."""
    size = f"{length}" if length is not None else "one or more"
    expected = f"a list of {size} integers >= {minimum}"
    if not isinstance(value, list | tuple) or (len(value) != length if length is not None else not value):
        raise _fail(owner, name, expected, value)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise _fail(owner, name, expected, value)
    return [int(item) for item in value]


def check_activation(owner: str, name: str, value: Any, optional: bool = True) -> str | None:
    """Return `value` if it names an activation of transformers' `ACT2FN` (or is None/"" when `optional`)."""
    if optional and value in (None, ""):
        return value
    if not isinstance(value, str) or value not in ACT2FN:
        expected = "an activation name of transformers' ACT2FN (e.g. 'relu')" + (" or None" if optional else "")
        raise _fail(owner, name, expected, value)
    return value

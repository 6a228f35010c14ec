"""Argument checks shared by the modules: each raises a ValueError naming the argument and the fix."""

from __future__ import annotations

from collections.abc import Sequence


def require_positive_int(name: str, value: object) -> None:
    """Raise unless ``value`` is an int >= 1 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def require_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise unless ``value`` is one of ``choices``, listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")

"""Argument checks shared by the modules: each raises a :class:`FieldError` naming the argument
and the fix."""

from __future__ import annotations

import numbers
from collections.abc import Sequence


class FieldError(ValueError):
    """A bad value of a named argument or config field.

    ``field`` is the name the message uses for it (``"train.max_steps"``, ``"length"``), so that a
    front end can say it in its own words (the CLI writes the flag ``--train.max-steps``) without
    parsing the message.
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def require_int(name: str, value: object, *, minimum: int = 0, maximum: int | None = None,
                meaning: str = "") -> int:
    """``value`` as an int, or a :class:`FieldError` unless it is an integer (a Python or numpy
    int, not a bool) in ``[minimum, maximum]``; ``meaning`` is a parenthesis the message adds
    (``"tokens to generate"``)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < minimum or (maximum is not None and value > maximum)):
        if maximum is not None:
            kind = f"an int in [{minimum}, {maximum}]"
        else:
            kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise FieldError(name, f"{name} must be {kind}{f' ({meaning})' if meaning else ''}, "
                         f"got {value!r}")
    return int(value)


def require_positive_int(name: str, value: object) -> int:
    """``value`` as an int, or a :class:`FieldError` unless it is an int >= 1 (bools rejected)."""
    return require_int(name, value, minimum=1)


def require_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise a :class:`FieldError` unless ``value`` is one of ``choices``, listing them."""
    if value not in choices:
        raise FieldError(name, f"{name} must be one of {tuple(choices)}, got {value!r}")

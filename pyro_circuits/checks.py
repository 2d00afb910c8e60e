"""Argument checks shared by the package; each raises a ValueError that names the argument."""

from __future__ import annotations

import numpy as np

__all__ = ["positive_int", "require_positive_ints"]


def positive_int(name: str, value) -> int:
    """``value`` as an int, or a ValueError when it is not an integer ≥ 1.

    Example:
        >>> positive_int("n_steps", 3)
        3
    """
    if not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def require_positive_ints(**values) -> None:
    """:func:`positive_int` on every keyword argument, in order."""
    for name, value in values.items():
        positive_int(name, value)

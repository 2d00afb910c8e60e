"""Argument checks shared by the package; each raises a ValueError that names the argument."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_counts", "positive_int", "require_positive_ints"]


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


def check_counts(counts: torch.Tensor, name: str = "counts", *, integer: bool = True) -> None:
    """Raise a clear error unless ``counts`` is a finite rank-3 [trials, time, neurons] tensor.

    With ``integer=True`` (Poisson data) the entries must also be non-negative integers.
    """
    if not torch.is_tensor(counts):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(counts).__name__}")
    if counts.dim() != 3:
        raise ValueError(
            f"{name} must have shape [trials, time, neurons], got {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"{name} contains NaN or inf")
    if integer and ((counts < 0).any() or (counts != counts.round()).any()):
        raise ValueError(f"{name} must hold non-negative integer spike counts")

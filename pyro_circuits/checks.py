"""Argument checks shared by the package.

Every public entry point validates its arguments with these before doing any work. Each check
returns the value in the type the package works with (an ``int``, a ``float``, a tensor), so
array-likes are accepted where that is sensible (a NumPy count array, a 0-d array read from an
``.npz``, ``int64`` counts), and raises a ``TypeError`` (wrong kind of value) or a
``ValueError`` (right kind, wrong value) whose message names the argument and what it accepts.

This module is the ground floor: it imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import numbers
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_counts",
    "index_tensor",
    "int_in_range",
    "name_in",
    "names_in",
    "nonnegative_int",
    "on_device",
    "positive_float",
    "positive_int",
    "probability",
    "real",
    "require_positive_ints",
    "seed_int",
    "to_device",
    "torch_device",
    "writable_dir",
]


def _scalar(value):
    """``value`` unwrapped from a 0-d NumPy array or tensor (a 1-element array is not a scalar)."""
    if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0:
        return value.item()
    if torch.is_tensor(value) and value.dim() == 0:
        return value.item()
    return value


def int_in_range(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in [``low``, ``high``] (either bound optional).

    Accepts Python and NumPy integers and 0-d integer arrays; rejects bools, floats and strings
    with a TypeError, and integers out of range with a ValueError.

    Example:
        >>> int_in_range("patience", np.int64(3), 1)
        3
        >>> int_in_range("patience", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: patience must be an integer >= 1, got 0
    """
    value = _scalar(value)
    bounds = _range_text(low, high)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer {bounds}, got {value!r}".rstrip())
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def positive_int(name: str, value) -> int:
    """``value`` as an int, or an error when it is not an integer ≥ 1.

    Example:
        >>> positive_int("n_steps", 3)
        3
    """
    return int_in_range(name, value, 1)


def nonnegative_int(name: str, value) -> int:
    """``value`` as an int ≥ 0.

    Example:
        >>> nonnegative_int("kl_warmup", 0)
        0
    """
    return int_in_range(name, value, 0)


def seed_int(name: str, value) -> int:
    """A random seed: an integer in [0, 2**63 − 1].

    Example:
        >>> seed_int("seed", np.int32(7))
        7
    """
    return int_in_range(name, value, 0, 2**63 - 1)


def require_positive_ints(**values) -> None:
    """:func:`positive_int` on every keyword argument, in order."""
    for name, value in values.items():
        positive_int(name, value)


def real(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (open or closed at each end).

    Accepts Python and NumPy numbers and 0-d arrays or tensors; NaN and ±inf are rejected.

    Example:
        >>> real("dt", np.array(0.01), low=0, low_open=True)
        0.01
        >>> real("lr", float("inf"), low=0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite number > 0, got inf
    """
    value = _scalar(value)
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    accepted = f"a finite number {' and '.join(parts)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return value


def positive_float(name: str, value) -> float:
    """A finite float > 0.

    Example:
        >>> positive_float("max_time", 2)
        2.0
    """
    return real(name, value, low=0.0, low_open=True)


def probability(name: str, value, *, low_open: bool = False, high_open: bool = False) -> float:
    """A float in [0, 1] (either end open on request).

    Example:
        >>> probability("cd_rate", 0.3, high_open=True)
        0.3
    """
    return real(name, value, low=0.0, high=1.0, low_open=low_open, high_open=high_open)


def as_tensor(
    name: str,
    value,
    *,
    dtype: torch.dtype | None = None,
    dim: int | None = None,
    finite: bool = True,
    nonnegative: bool = False,
    integer: bool = False,
) -> torch.Tensor:
    """``value`` (a tensor, NumPy array or nested list of numbers) as a tensor of ``dtype``
    (default: the default float dtype for non-tensor floats, unchanged for float tensors) with
    ``dim`` dimensions; with ``finite`` no NaN or inf, with ``nonnegative`` no negative entry,
    with ``integer`` only whole numbers.

    Example:
        >>> as_tensor("rates", np.ones((2, 3)), dim=2).dtype
        torch.float32
        >>> as_tensor("rates", [[1.0, float("nan")]])
        Traceback (most recent call last):
        ...
        ValueError: rates contains NaN or inf
    """
    if isinstance(value, str | bytes | bool | dict) or value is None:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(value).__name__}")
    converted = not torch.is_tensor(value)
    if converted:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a tensor or array of numbers: {error}") from None
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
        value = torch.as_tensor(array.astype(np.float64) if array.dtype.kind == "b" else array)
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if dtype is None and (converted or not value.is_floating_point()):
        dtype = torch.get_default_dtype()
    if dtype is not None and value.dtype != dtype:
        value = value.to(dtype)
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(value.shape)}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or inf")
    if nonnegative and bool((value < 0).any()):
        raise ValueError(f"{name} must be non-negative")
    if integer and value.is_floating_point() and bool((value != value.round()).any()):
        raise ValueError(f"{name} must hold whole numbers")
    return value


def check_counts(
    counts,
    name: str = "counts",
    *,
    integer: bool = True,
    nonnegative: bool = False,
    missing: bool = False,
    convert: bool = False,
) -> torch.Tensor:
    """``counts`` as a finite rank-3 [trials, time, neurons] float tensor with at least one trial,
    time bin and neuron; an error otherwise. An integer tensor is returned in the default float
    dtype, a float tensor as it is; with ``convert=True`` (the entry points that take data from
    users) NumPy arrays and nested lists are accepted too, else they are a TypeError.

    With ``integer=True`` (Poisson data) the entries must also be non-negative integers; with
    ``nonnegative=True`` (spikes of any size) non-negative. With ``missing=True`` (fluorescence
    with dropped frames) NaN marks a missing entry, but not every entry may be missing.

    Example:
        >>> check_counts(np.ones((2, 3, 4), dtype=np.int64), convert=True).dtype
        torch.float32
    """
    if not torch.is_tensor(counts):
        if not convert:
            raise TypeError(f"{name} must be a torch.Tensor, got {type(counts).__name__}")
        if not isinstance(counts, np.ndarray | list | tuple):
            raise TypeError(f"{name} must be a tensor or array, got {type(counts).__name__}")
    counts = as_tensor(name, counts, finite=False)
    if not counts.is_floating_point():
        counts = counts.to(torch.get_default_dtype())
    if counts.dim() != 3:
        raise ValueError(
            f"{name} must have shape [trials, time, neurons], got {tuple(counts.shape)}"
        )
    if 0 in counts.shape:
        raise ValueError(
            f"{name} must have at least one trial, time bin and neuron, got {tuple(counts.shape)}"
        )
    if missing:
        if counts.isinf().any():
            raise ValueError(f"{name} contains inf")
        if counts.isnan().all():
            raise ValueError(f"{name} is all NaN (every entry missing): there is nothing to fit")
    elif not torch.isfinite(counts).all():
        raise ValueError(f"{name} contains NaN or inf")
    present = counts[~counts.isnan()] if missing else counts
    if integer and ((present < 0).any() or (present != present.round()).any()):
        raise ValueError(f"{name} must hold non-negative integer spike counts")
    if nonnegative and (present < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return counts


def index_tensor(name: str, value, size: int, *, unique: bool = True) -> torch.Tensor:
    """Indices into ``size`` items as a long tensor: a list or array of integers in [0, size),
    or a boolean mask of length ``size`` (its True positions).

    Example:
        >>> index_tensor("train_idx", torch.tensor([True, False, True]), 3).tolist()
        [0, 2]
        >>> index_tensor("valid_idx", [5], 3)
        Traceback (most recent call last):
        ...
        ValueError: valid_idx must index 3 items (0 to 2), got [5]
    """
    if isinstance(value, str | bytes | dict | float) or value is None:
        raise TypeError(f"{name} must be integer indices or a boolean mask, got {value!r}")
    if not torch.is_tensor(value):
        array = np.asarray(value)
        if array.dtype.kind not in "biu" and array.size:
            raise TypeError(f"{name} must be integer indices or a boolean mask, got {value!r}")
        value = torch.as_tensor(array if array.size else np.zeros(0, dtype=np.int64))
    if value.dtype == torch.bool:
        if value.shape != (size,):
            raise ValueError(
                f"{name} as a boolean mask must have length {size}, got shape {tuple(value.shape)}"
            )
        return value.nonzero().squeeze(-1)
    if value.is_floating_point() or value.is_complex():
        raise TypeError(
            f"{name} must be integer indices or a boolean mask, got dtype {value.dtype}"
        )
    value = value.reshape(-1).long()
    if value.numel() and (value.min() < 0 or value.max() >= size):
        raise ValueError(f"{name} must index {size} items (0 to {size - 1}), got {value.tolist()}")
    if unique and value.unique().numel() != value.numel():
        raise ValueError(f"{name} repeats indices: {value.tolist()}")
    return value


def name_in(name: str, value, allowed: Iterable[str]) -> str:
    """``value`` when it is one of ``allowed``; a ValueError listing them (with the nearest
    match) otherwise.

    Example:
        >>> name_in("method", "npee", ["epi", "npe", "smcabc"])
        Traceback (most recent call last):
        ...
        ValueError: method must be one of ['epi', 'npe', 'smcabc'], got 'npee' (did you mean 'npe'?)
    """
    allowed = list(allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {allowed}, got {value!r}")
    if value not in allowed:
        near = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}{hint}")
    return value


def names_in(name: str, values, allowed: Iterable[str]) -> list[str]:
    """A non-empty list of names, each one of ``allowed`` (see :func:`name_in`).

    Example:
        >>> names_in("valid_sites", ("obs",), ["obs", "ic"])
        ['obs']
    """
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of names, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must name at least one of {sorted(allowed)}")
    allowed = list(allowed)
    return [name_in(f"{name} entry", v, allowed) for v in values]


def writable_dir(name: str, path) -> Path:
    """``path`` as a folder that exists (created if need be) and can be written to, checked by
    writing and removing a temporary file in it: an output folder is checked before a run.

    Example:
        >>> import tempfile
        >>> writable_dir("out", tempfile.mkdtemp()).is_dir()
        True
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a path, got {type(path).__name__}")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"{name} {str(path)!r} is not a writable folder: {error}") from None
    return path


def torch_device(name: str, value) -> torch.device:
    """``value`` (a name such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``, or a ``torch.device``)
    as a ``torch.device`` that can hold tensors on this machine, checked before any work: a
    name torch does not know is a ValueError naming the argument, and so is ``cuda`` where CUDA
    is not available (or a CUDA index past the last device), ``meta`` (which holds no values)
    and any other device type that cannot allocate a tensor here.

    Example:
        >>> torch_device("device", "cpu")
        device(type='cpu')
        >>> torch_device("device", "gpu0")
        Traceback (most recent call last):
        ...
        ValueError: device must name a torch device such as 'cpu' or 'cuda:0', got 'gpu0'
    """
    if not isinstance(value, str | torch.device):
        raise TypeError(f"{name} must be a device name or a torch.device, got {value!r}")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name} must name a torch device such as 'cpu' or 'cuda:0', got {value!r}"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} is {value!r} but CUDA is not available on this machine "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); use 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} is {value!r} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s)"
            )
        return device
    if device.type == "meta":
        raise ValueError(f"{name} is {value!r}: meta tensors hold no values to compute with")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise ValueError(f"{name} is {value!r} but it is not available here: {error}") from None
    return device


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """``with on_device(device):`` makes ``device`` the default of torch's factory functions
    (``torch.zeros``, ``torch.tensor``, ``torch.as_tensor``, …) inside, so a Pyro program that
    builds its priors and constants at call time builds them there; on the CPU it does nothing
    (the context costs Python time on every torch operation).

    Example:
        >>> with on_device(torch.device("cpu")):
        ...     torch.zeros(2).device
        device(type='cpu')
    """
    return contextlib.nullcontext() if device.type == "cpu" else device


def to_device(value, device: torch.device):
    """``value`` with every tensor in it on ``device``: a tensor moved, a ``torch.nn.Module``
    copied and the copy moved (the caller's module is left where it is), tuples, lists and
    dicts rebuilt around their moved items, anything else returned as it is.

    Example:
        >>> moved = to_device((torch.ones(2), {"k": [torch.zeros(1)]}, "name"), torch.device("cpu"))
        >>> [type(part).__name__ for part in moved]
        ['Tensor', 'dict', 'str']
    """
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to(device)
    if isinstance(value, tuple | list):
        items = [to_device(item, device) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    return value

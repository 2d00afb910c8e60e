"""OASIS spike deconvolution (Friedrich et al. 2017) as an optional baseline for calcium data.

``oasis-deconv`` is GPL-3.0, so it is an optional extra that this module imports only when it is
called, never at import time; install it yourself with ``pip install oasis-deconv``.
:func:`available` says whether it can be used, and :func:`oasis_deconvolve` raises an
``ImportError`` that says how to get it when it cannot.

Example:
    >>> isinstance(available(), bool)
    True
"""

from __future__ import annotations

import numpy as np
import torch

from pyro_circuits.datasets.spike_data import check_counts

__all__ = ["available", "oasis_deconvolve"]

MISSING = (
    "OASIS needs the optional package oasis-deconv (GPL-3.0), which is not installed; "
    "install it with `pip install oasis-deconv` to run the OASIS baseline"
)


def _deconvolve_function():
    """``oasis.functions.deconvolve``, imported on demand."""
    try:
        from oasis.functions import deconvolve
    except ImportError as error:
        raise ImportError(MISSING) from error
    return deconvolve


def available() -> bool:
    """Whether ``oasis-deconv`` is installed and importable."""
    try:
        _deconvolve_function()
    except ImportError:
        return False
    return True


def oasis_deconvolve(
    fluorescence: torch.Tensor, *, dt: float = 0.01, tau: float = 0.4, penalty: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoised calcium and inferred spikes, each [trials, time, neurons], trace by trace.

    AR(1) OASIS with the decay fixed by ``tau`` (seconds) and ``dt`` (g = exp(-dt/τ));
    ``penalty`` is OASIS's sparsity penalty (1: L1). NaN frames are not supported.
    Raises ``ImportError`` when ``oasis-deconv`` is not installed (see :func:`available`).
    """
    check_counts(fluorescence, "fluorescence", integer=False)
    if dt <= 0 or tau <= 0:
        raise ValueError(f"dt and tau must be positive, got {dt} and {tau}")
    deconvolve = _deconvolve_function()
    traces = fluorescence.detach().cpu().double().numpy().transpose(0, 2, 1)
    calcium, spikes = np.empty_like(traces), np.empty_like(traces)
    for index in np.ndindex(traces.shape[:2]):
        result = deconvolve(traces[index], tau_d=tau, framerate=1 / dt, penalty=penalty)
        calcium[index], spikes[index] = result[0], result[1]

    def back(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x.transpose(0, 2, 1), dtype=fluorescence.dtype)

    return back(calcium), back(spikes)

"""Spike deconvolution baselines for calcium data: OASIS (Friedrich et al. 2017), optional, and a
thresholded AR(1) innovation, built in.

``oasis-deconv`` is GPL-3.0, so it is an optional extra that this module imports only when it is
called, never at import time; install it yourself with ``pip install oasis-deconv``.
:func:`available` says whether it can be used, and OASIS raises an ``ImportError`` that says how
to get it when it cannot.

:func:`threshold_deconvolve` needs nothing beyond the package: a frame's AR(1) innovation
F_t − (1 − dt/τ) F_{t−1} is α s_t plus noise, and the spikes are read off where it exceeds α/2.

Each method is a :class:`Deconvolution`, a :class:`~pyro_circuits.results.TrialPosterior` whose
posterior is a point (:class:`ThresholdDeconvolution`, :class:`OasisDeconvolution`);
:func:`threshold_deconvolve` and :func:`oasis_deconvolve` return its ``(calcium, spikes)``.

Example:
    >>> isinstance(available(), bool)
    True
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from pyro_circuits.baselines._point import PointPosterior
from pyro_circuits.checks import check_counts, positive_float, real
from pyro_circuits.models.calcium import CalciumFluorescence, ar1_calcium

__all__ = [
    "Deconvolution",
    "OasisDeconvolution",
    "ThresholdDeconvolution",
    "available",
    "oasis_deconvolve",
    "threshold_deconvolve",
]

MISSING = (
    "OASIS needs the optional package oasis-deconv (GPL-3.0), which is not installed; "
    "install it with `pip install oasis-deconv` to run the OASIS baseline"
)

_TRIAL_TIME_NEURON = ["trial", "time", "neuron"]


def _deconvolve_function():
    """``oasis.functions.deconvolve``, imported on demand."""
    try:
        from oasis.functions import deconvolve
    except ImportError as error:
        raise ImportError(MISSING) from error
    return deconvolve


def available() -> bool:
    """Whether ``oasis-deconv`` is installed and importable.

    Example:
        >>> available() in (True, False)
        True
    """
    try:
        _deconvolve_function()
    except ImportError:
        return False
    return True


class Deconvolution(PointPosterior):
    """A spike deconvolution of fluorescence [trials, time, neurons] as a trial posterior.

    ``posterior_mean(fluorescence)`` is ``{"calcium", "spikes"}`` (and ``"baseline"`` where the
    method estimates one), each [trials, time, neurons]; the measured ``inputs`` of the protocol
    are accepted and unused. The observed site ``fluorescence`` is Gaussian around the calcium
    (plus baseline) with one σ per neuron: ``sigma`` when given, otherwise the root mean square
    of the fluorescence's residual from that mean over the trials and frames it is given
    (floored at the dtype's machine epsilon). NaN frames are not supported.

    Arguments:
        dt: frame interval in seconds. tau: calcium decay time constant in seconds.
        sigma: the fluorescence noise, or None to estimate it from the residual.

    Example:
        >>> fit = ThresholdDeconvolution(dt=0.01, tau=0.4, sigma=0.2)
        >>> draws = fit.sample(torch.zeros(2, 30, 3), num_samples=4)
        >>> {site: tuple(value.shape) for site, value in draws.items()}
        {'calcium': (4, 2, 30, 3), 'spikes': (4, 2, 30, 3), 'fluorescence': (4, 2, 30, 3)}
    """

    observed = "fluorescence"
    dims = {
        "calcium": _TRIAL_TIME_NEURON,
        "spikes": _TRIAL_TIME_NEURON,
        "fluorescence": _TRIAL_TIME_NEURON,
        "baseline": ["trial", "baseline_time", "neuron"],
    }

    def __init__(self, *, dt: float = 0.01, tau: float = 0.4, sigma: float | None = None) -> None:
        dt, tau = real("dt", dt), real("tau", tau)  # numbers, finite
        if dt <= 0 or tau <= 0:
            raise ValueError(f"dt and tau must be positive, got {dt} and {tau}")
        if sigma is not None:
            sigma = positive_float("sigma", sigma)
        self.dt, self.tau, self.sigma = dt, tau, sigma

    @abstractmethod
    def _deconvolve(self, fluorescence: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"calcium", "spikes"[, "baseline"]}`` of checked, detached fluorescence."""

    def _estimate(self, fluorescence, inputs=None) -> dict[str, torch.Tensor]:
        check_counts(fluorescence, "fluorescence", integer=False)
        return self._deconvolve(fluorescence.detach())

    def _likelihood(self, fluorescence, estimate) -> torch.distributions.Normal:
        mean = estimate["calcium"] + estimate.get("baseline", 0.0)
        if self.sigma is None:
            residual = fluorescence.detach() - mean
            scale = residual.pow(2).mean((0, 1)).sqrt().clamp(min=torch.finfo(mean.dtype).eps)
        else:
            scale = torch.full(mean.shape[-1:], self.sigma, dtype=mean.dtype, device=mean.device)
        return torch.distributions.Normal(mean, scale)

    def _observed(self, fluorescence) -> torch.Tensor:
        check_counts(fluorescence, "fluorescence", integer=False)
        return fluorescence.detach()


class OasisDeconvolution(Deconvolution):
    """OASIS, trace by trace: AR(1) with the decay fixed by ``tau`` and ``dt``
    (g = exp(-dt/τ)).

    By default it is noise-constrained, with the noise and baseline estimated from each trace and
    ``penalty`` its sparsity penalty (1: L1); ``posterior_mean`` then also gives the estimated
    ``"baseline"`` [trials, 1, neurons], which the fluorescence mean adds to the calcium. With
    ``s_min`` it is the ladder papers' "known parameters" mode instead: no penalty, zero
    baseline, and no spike smaller than ``s_min`` (their recipe: 0.5, half a spike's
    amplitude). ``oasis-deconv`` is imported when the fit is used, not when it is built: its
    methods raise ``ImportError`` when it is not installed (see :func:`available`).

    Example:
        >>> fit = OasisDeconvolution(dt=0.01, tau=0.4, s_min=0.5)
        >>> fit.s_min, fit.penalty
        (0.5, 1)
    """

    def __init__(
        self,
        *,
        dt: float = 0.01,
        tau: float = 0.4,
        penalty: int = 1,
        s_min: float | None = None,
        sigma: float | None = None,
    ) -> None:
        super().__init__(dt=dt, tau=tau, sigma=sigma)
        self.penalty, self.s_min = penalty, s_min

    def _deconvolve(self, fluorescence):
        deconvolve = _deconvolve_function()
        if self.s_min is None:
            mode = dict(penalty=self.penalty)
        else:
            mode = dict(penalty=None, s_min=self.s_min)
        traces = fluorescence.cpu().double().numpy().transpose(0, 2, 1)
        calcium, spikes = np.empty_like(traces), np.empty_like(traces)
        baseline = np.empty_like(traces[..., :1])
        for index in np.ndindex(traces.shape[:2]):
            result = deconvolve(traces[index], tau_d=self.tau, framerate=1 / self.dt, **mode)
            calcium[index], spikes[index], baseline[index] = result[0], result[1], result[2]

        def back(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x.transpose(0, 2, 1), dtype=fluorescence.dtype)

        return {"calcium": back(calcium), "spikes": back(spikes), "baseline": back(baseline)}


def oasis_deconvolve(
    fluorescence: torch.Tensor,
    *,
    dt: float = 0.01,
    tau: float = 0.4,
    penalty: int = 1,
    s_min: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoised calcium and inferred spikes, each [trials, time, neurons], trace by trace: the
    ``calcium`` and ``spikes`` of :class:`OasisDeconvolution` with these settings (the default
    mode's estimated baselines are not returned). NaN frames are not supported. Raises
    ``ImportError`` when ``oasis-deconv`` is not installed (see :func:`available`).

    Example:
        >>> if available():
        ...     calcium, spikes = oasis_deconvolve(torch.zeros(1, 20, 2), s_min=0.5)
        ...     assert spikes.shape == (1, 20, 2)
    """
    fit = OasisDeconvolution(dt=dt, tau=tau, penalty=penalty, s_min=s_min)
    estimate = fit.posterior_mean(fluorescence)
    return estimate["calcium"], estimate["spikes"]


class ThresholdDeconvolution(Deconvolution):
    """Spikes from the fluorescence's AR(1) innovation, with no training: innovation / α on
    frames where the innovation exceeds α/2 (halfway to one spike) and 0 elsewhere; the calcium
    is their AR(1) calcium (τ = ``tau``, α = ``alpha``, no baseline). A floor for spike
    inference.

    Example:
        >>> from pyro_circuits.models.calcium import fluorescence_from_spikes
        >>> generator = torch.Generator().manual_seed(0)
        >>> spikes = torch.poisson(torch.full((2, 40, 3), 0.2), generator=generator)
        >>> _, fluor = fluorescence_from_spikes(spikes, sigma=0.05)
        >>> fit = ThresholdDeconvolution(dt=0.01, tau=0.4, alpha=1.0)
        >>> bool((fit.posterior_mean(fluor)["spikes"].round() == spikes).all())
        True
        >>> sorted(fit.to_inference_data(fluor, num_samples=5).groups())
        ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive']
    """

    def __init__(
        self,
        *,
        dt: float = 0.01,
        tau: float = 0.4,
        alpha: float = 1.0,
        sigma: float | None = None,
    ) -> None:
        super().__init__(dt=dt, tau=tau, sigma=sigma)
        CalciumFluorescence(1, dt=dt, tau=tau, alpha=alpha, learn=())  # checks the settings
        self.alpha = alpha

    def _deconvolve(self, fluorescence):
        dt, tau, alpha = self.dt, self.tau, self.alpha
        observation = CalciumFluorescence(
            fluorescence.shape[-1], dt=dt, tau=tau, alpha=alpha, learn=()
        ).to(fluorescence)
        innovation = observation.innovation(fluorescence)
        spikes = torch.where(innovation > alpha / 2, innovation / alpha, 0.0)
        return {"calcium": ar1_calcium(spikes, dt=dt, tau=tau, alpha=alpha), "spikes": spikes}


def threshold_deconvolve(
    fluorescence: torch.Tensor, *, dt: float = 0.01, tau: float = 0.4, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Calcium and spikes [trials, time, neurons] from the fluorescence's AR(1) innovation: the
    ``calcium`` and ``spikes`` of :class:`ThresholdDeconvolution` with these settings. NaN frames
    are not supported.

    Example:
        >>> spikes = torch.zeros(1, 50, 2)
        >>> spikes[0, [5, 30], [0, 1]] = 1.0
        >>> calcium = ar1_calcium(spikes, dt=0.01, tau=0.4)
        >>> bool((threshold_deconvolve(calcium)[1] == spikes).all())
        True
    """
    estimate = ThresholdDeconvolution(dt=dt, tau=tau, alpha=alpha).posterior_mean(fluorescence)
    return estimate["calcium"], estimate["spikes"]

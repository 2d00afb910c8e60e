"""Evaluation metrics: R² against ground truth and the Neural Latents Benchmark's bits per spike.

Arrays are [trials, time, neurons] (torch tensors or numpy arrays); rates are in Hz and ``dt`` is
the bin width in seconds, so the expected count of a bin is rate·dt.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln

from pyro_circuits.checks import (
    index_tensor,
    positive_float,
    positive_int,
    require_positive_ints,
    seed_int,
)

__all__ = [
    "bits_per_spike",
    "calibrated_r2",
    "co_bps",
    "exp_readout_fit",
    "fp_bps",
    "latent_r2",
    "r2_by_segment",
    "r2_score",
    "time_windows",
]


def _array(name: str, x) -> np.ndarray:
    """``x`` as a float64 array of at least 2 dimensions, with no NaN or inf (a metric that
    skipped them would score what it did not see)."""
    if isinstance(x, str | bytes | dict) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    try:
        x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions [..., features], got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty, shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~np.isfinite(x)).sum())} entries)")
    return x


def r2_score(truth, estimate) -> float:
    """Coefficient of determination per feature (last axis), averaged uniformly over features.

    Leading axes (trials, time) are flattened, as ``sklearn.metrics.r2_score`` does with
    ``multioutput="uniform_average"``.

    Example:
        >>> r2_score([[1.0], [2.0], [3.0]], [[1.0], [2.0], [4.0]])
        0.5
    """
    truth, estimate = _array("truth", truth), _array("estimate", estimate)
    if truth.shape != estimate.shape:
        raise ValueError(f"truth {truth.shape} and estimate {estimate.shape} differ in shape")
    truth, estimate = truth.reshape(-1, truth.shape[-1]), estimate.reshape(-1, estimate.shape[-1])
    residual = ((truth - estimate) ** 2).sum(0)
    total = ((truth - truth.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - residual / total))


def r2_by_segment(truth, estimate, n_segments: int = 10) -> list[float]:
    """:func:`r2_score` on each of ``n_segments`` consecutive, near-equal time windows of
    [trials, time, features] arrays: where in the trial an estimate falls short.

    Example:
        >>> truth = np.arange(8.0).reshape(1, 4, 2)
        >>> estimate = truth.copy()
        >>> estimate[:, 2:] = truth[:, 2:].mean(1, keepdims=True)  # the second half's mean
        >>> r2_by_segment(truth, estimate, 2)
        [1.0, 0.0]
    """
    n_segments = positive_int("n_segments", n_segments)
    truth, estimate = _array("truth", truth), _array("estimate", estimate)
    if truth.ndim != 3:
        raise ValueError(f"truth must be [trials, time, features], got {truth.shape}")
    if n_segments > truth.shape[1]:
        raise ValueError(f"{n_segments} segments of {truth.shape[1]} time bins")
    return [r2_score(truth[:, w], estimate[:, w]) for w in time_windows(truth.shape[1], n_segments)]


def time_windows(n_bins: int, n_segments: int) -> list[np.ndarray]:
    """The bin indices of ``n_segments`` consecutive, near-equal windows of ``n_bins`` bins (the
    first ones a bin longer where they do not divide evenly), as :func:`r2_by_segment` uses.

    Example:
        >>> [w.tolist() for w in time_windows(5, 2)]
        [[0, 1, 2], [3, 4]]
    """
    return np.array_split(np.arange(n_bins), n_segments)


def affine_map(estimate_train, truth_train, estimate) -> np.ndarray:
    """``estimate`` [..., k] mapped onto the truth's axes by the least-squares affine map from
    ``estimate_train`` to ``truth_train`` (leading axes flattened).

    Example:
        >>> z = np.random.default_rng(0).normal(size=(4, 10, 2))
        >>> np.allclose(affine_map(2 * z + 1, z, 2 * z[:1] + 1), z[:1])
        True
    """

    def design(x):
        x = _array("estimate", x)
        return np.concatenate([x.reshape(-1, x.shape[-1]), np.ones((x[..., 0].size, 1))], 1)

    truth_train = _array("truth_train", truth_train)
    weights = np.linalg.lstsq(
        design(estimate_train), truth_train.reshape(-1, truth_train.shape[-1]), rcond=None
    )[0]
    estimate = _array("estimate", estimate)
    return (design(estimate) @ weights).reshape(*estimate.shape[:-1], truth_train.shape[-1])


def latent_r2(estimate_train, truth_train, estimate_valid, truth_valid) -> float:
    """R² of true latents predicted by an affine map of the estimated ones.

    The map is fitted by least squares on the training trials and scored on the validation trials.

    Example:
        >>> z = np.random.default_rng(0).normal(size=(4, 10, 2))
        >>> round(latent_r2(2 * z + 1, z, 2 * z[:2] + 1, z[:2]), 6)
        1.0
    """
    predicted = affine_map(estimate_train, truth_train, estimate_valid)
    return r2_score(_array("truth_valid", truth_valid), predicted)


def calibrated_r2(estimate_train, truth_train, estimate_valid, truth_valid) -> float:
    """:func:`r2_score` after each feature's own least-squares map a·x + b, fitted on the
    training trials and scored on the validation trials.

    Unlike :func:`latent_r2` no feature borrows from another: the figure says how much of
    ``r2_score``'s loss a per-feature scale and offset (a calibration) would recover, and the
    rest is the estimate's shape. A constant feature keeps the training truth's mean.

    Example:
        >>> z = np.random.default_rng(0).normal(size=(4, 10, 2))
        >>> r2_score(z, 2 * z + 1) < 0, round(calibrated_r2(2 * z + 1, z, 2 * z + 1, z), 6)
        (True, 1.0)
    """
    x, y = _array("estimate_train", estimate_train), _array("truth_train", truth_train)
    if x.shape != y.shape:
        raise ValueError(f"estimate_train {x.shape} and truth_train {y.shape} differ in shape")
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    centred = x - x.mean(0)
    spread = (centred**2).sum(0)
    covariance = (centred * (y - y.mean(0))).sum(0)
    slope = np.divide(covariance, spread, out=np.zeros_like(spread), where=spread > 0)
    offset = y.mean(0) - slope * x.mean(0)
    return r2_score(truth_valid, slope * _array("estimate_valid", estimate_valid) + offset)


def _poisson_nll(expected: np.ndarray, counts: np.ndarray) -> float:
    expected = np.where(expected == 0, 1e-9, expected)
    return float(np.nansum(expected - counts * np.log(expected) + gammaln(counts + 1)))


def bits_per_spike(rates, counts, dt: float) -> float:
    """Log-likelihood improvement over a per-neuron constant rate, in bits per spike (NLB).

    (NLL_null − NLL_model) / (Σ counts · ln 2), where the null model predicts each neuron's mean
    count over trials and time. NaN or inf in ``rates`` or ``counts`` is a ValueError (not
    skipped), as are negative rates and a ``dt`` that is not a finite positive number.

    Example:
        >>> counts = np.array([[[0.0], [2.0]]])
        >>> bits_per_spike(counts.mean() / 0.1 * np.ones_like(counts), counts, dt=0.1)
        0.0
    """
    rates, counts = _array("rates", rates), _array("counts", counts)
    if rates.shape != counts.shape:
        raise ValueError(f"rates {rates.shape} and counts {counts.shape} differ in shape")
    if (rates < 0).any():
        raise ValueError("rates must be non-negative")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    dt = positive_float("dt", dt)
    flat = counts.reshape(-1, counts.shape[-1])
    null = np.broadcast_to(np.nanmean(flat, 0), flat.shape)
    gain = _poisson_nll(null, flat) - _poisson_nll(rates.reshape(flat.shape) * dt, flat)
    return float(gain / (np.nansum(flat) * math.log(2)))


def co_bps(rates, counts, heldout, dt: float) -> float:
    """Co-smoothing bits per spike: :func:`bits_per_spike` on the held-out neurons only."""
    n_neurons = _array("counts", counts).shape[-1]
    heldout = index_tensor("heldout", heldout, n_neurons).numpy()
    if heldout.size == 0:
        raise ValueError("heldout must name at least one neuron")
    return bits_per_spike(
        _array("rates", rates)[..., heldout], _array("counts", counts)[..., heldout], dt
    )


def fp_bps(rates, counts, n_forward: int, dt: float) -> float:
    """Forward-prediction bits per spike: :func:`bits_per_spike` on the last ``n_forward`` bins."""
    n_forward = positive_int("n_forward", n_forward)
    if n_forward > _array("counts", counts).shape[1]:
        raise ValueError(f"n_forward ({n_forward}) exceeds the {np.shape(counts)[1]} time bins")
    return bits_per_spike(
        _array("rates", rates)[:, -n_forward:], _array("counts", counts)[:, -n_forward:], dt
    )


def exp_readout_fit(
    rates, n_factors: int, steps: int = 3000, lr: float = 0.03, seed: int = 0
) -> np.ndarray:
    """The rates nearest ``rates`` of the form exp(F W + b), F with ``n_factors`` columns.

    F is free for every trial and time step, so no dynamics or encoder limits the fit: its R²
    against ``rates`` bounds the rates R² of any model whose rates are an exponential readout of
    ``n_factors`` factors (LFADS's ``fac_dim``). Fitted by Adam on the Poisson negative
    log-likelihood with ``rates`` as the expected counts (scaled to mean 1).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> rates = np.exp(rng.normal(size=(8, 20, 2)) @ rng.normal(size=(2, 6)))
        >>> r2_score(rates, exp_readout_fit(rates, 2, steps=1500)) > 0.99
        True
    """
    require_positive_ints(n_factors=n_factors, steps=steps)
    lr = positive_float("lr", lr)
    seed = seed_int("seed", seed)
    rates = _array("rates", rates)
    if (rates < 0).any():
        raise ValueError("rates must be non-negative")
    scale = rates.mean()
    target = torch.as_tensor(rates.reshape(-1, rates.shape[-1]) / scale, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    factors = (0.1 * torch.randn(len(target), n_factors, generator=generator)).requires_grad_()
    weights = (0.1 * torch.randn(n_factors, target.shape[1], generator=generator)).requires_grad_()
    bias = torch.zeros(target.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([factors, weights, bias], lr=lr)
    for _ in range(steps):
        log_rates = factors @ weights + bias
        loss = (log_rates.exp() - target * log_rates).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        fitted = (factors @ weights + bias).exp().numpy()
    return fitted.reshape(rates.shape) * scale

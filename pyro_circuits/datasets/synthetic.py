"""Synthetic spiking datasets with ground truth, following published recipes.

* :func:`chaotic_rnn` -- the original LFADS chaotic-RNN data (Sussillo et al. 2016;
  ``tensorflow/models/research/lfads/synth_data/generate_chaotic_rnn_data.py``).
* :func:`lorenz` -- a Lorenz attractor embedded in spiking neurons with an exponential link
  (LFADS run-manager / hierarchical_lfads recipe; Pandarinath et al. 2018).
* :func:`linear_dynamical` -- the Neuromatch seq-to-seq notebook's diagonal linear dynamical
  system with rectified-linear rates.
* :func:`lorenz_sessions` -- one Lorenz system recorded in several sessions through different,
  partly overlapping sets of neurons (the setting of dynamic neural stitching).

All generators are seeded (``numpy.random.RandomState(seed)``) and return a
:class:`~pyro_circuits.datasets.SpikeData` with true rates (Hz) and latents.
"""

from __future__ import annotations

import numpy as np
import torch

from pyro_circuits.checks import int_in_range, nonnegative_int, positive_float, positive_int, real
from pyro_circuits.datasets.sessions import Sessions
from pyro_circuits.datasets.spike_data import SpikeData

__all__ = ["chaotic_rnn", "linear_dynamical", "lorenz", "lorenz_sessions"]


def _check_common(*, dt, train_fraction, n_heldout, seed, **rates) -> None:
    """The checks every generator makes before simulating: ``dt`` and the ``rates`` keywords
    finite positive, ``train_fraction`` in (0, 1], ``n_heldout`` ≥ 0, a seed in NumPy's range."""
    positive_float("dt", dt)
    for name, value in rates.items():
        positive_float(name, value)
    real("train_fraction", train_fraction, low=0.0, high=1.0, low_open=True)
    nonnegative_int("n_heldout", n_heldout)
    int_in_range("seed", seed, 0, 2**32 - 1)


def _split_by_repeat(n_conditions: int, n_trials: int, train_fraction: float):
    """Per condition, the first ``train_fraction`` of the repeats train and the rest validate."""
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    n_train = max(1, round(train_fraction * n_trials))
    repeat = torch.arange(n_conditions * n_trials) % n_trials
    return (repeat < n_train).nonzero().squeeze(-1), (repeat >= n_train).nonzero().squeeze(-1)


def _heldout(n_neurons: int, n_heldout: int) -> list[int]:
    if not 0 <= n_heldout < n_neurons:
        raise ValueError(f"n_heldout must be in [0, {n_neurons}), got {n_heldout}")
    return list(range(n_neurons - n_heldout, n_neurons))


def _package(
    rng, rates_hz, latents, dt, n_conditions, n_trials, train_fraction, n_heldout, **extra
):
    counts = rng.poisson(rates_hz * dt)
    train_idx, valid_idx = _split_by_repeat(n_conditions, n_trials, train_fraction)
    as_tensor = lambda x: None if x is None else torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    return SpikeData(
        counts=as_tensor(counts),
        dt=dt,
        rates=as_tensor(rates_hz),
        latents=as_tensor(latents),
        conditions=torch.arange(n_conditions).repeat_interleave(n_trials),
        train_idx=train_idx,
        valid_idx=valid_idx,
        heldout=_heldout(rates_hz.shape[-1], n_heldout),
        **{k: as_tensor(v) for k, v in extra.items()},
    )


def chaotic_rnn(
    n_conditions: int = 400,
    n_trials: int = 10,
    n_neurons: int = 50,
    n_bins: int = 100,
    *,
    g: float = 1.5,
    tau: float = 0.025,
    dt: float = 0.01,
    x0_std: float = 1.0,
    input_magnitude: float = 0.0,
    max_rate: float = 30.0,
    normalise_per_trial: bool = True,
    train_fraction: float = 0.8,
    n_heldout: int = 0,
    seed: int = 5,
) -> SpikeData:
    """Spikes from a chaotic vanilla RNN, the original LFADS synthetic benchmark.

    x_t = (1 - dt/τ) x_{t-1} + (dt/τ) g W tanh(x_{t-1}), W ~ N(0, 1/N); one initial state
    x0 ~ x0_std·N(0, I) per condition, shared by its ``n_trials`` repeats. With
    ``input_magnitude > 0`` each trial gets one pulse x_t += (dt/τ) B·input_magnitude
    (B ~ N(0, I)) at a uniform step in the middle half of the trial; ``inputs`` holds the pulse
    (magnitude at its bin, 0 elsewhere). Rates are tanh(x) min-max normalised per trial and
    neuron, times ``max_rate`` Hz (LFADS's recipe), or with ``normalise_per_trial=False``
    ½·``max_rate``·(tanh(x) + 1) (the ladder papers' recipe); ``latents`` is tanh(x).
    Defaults are the paper's datasets (g = 2.5 and input_magnitude = 20 for
    ``chaotic_rnn_inputs_g2p5``).

    Example:
        >>> data = chaotic_rnn(n_conditions=4, n_trials=5, n_neurons=8, n_bins=20)
        >>> data.counts.shape, len(data.train_idx)
        (torch.Size([20, 20, 8]), 16)
    """
    n_conditions, n_trials = (
        positive_int("n_conditions", n_conditions),
        positive_int("n_trials", n_trials),
    )
    n_neurons, n_bins = positive_int("n_neurons", n_neurons), positive_int("n_bins", n_bins)
    if tau <= 0 or dt <= 0:
        raise ValueError(f"tau and dt must be positive, got tau={tau}, dt={dt}")
    _check_common(dt=dt, train_fraction=train_fraction, n_heldout=n_heldout, seed=seed)
    rng = np.random.RandomState(seed)
    weights = g * rng.randn(n_neurons, n_neurons) / np.sqrt(n_neurons)
    input_weights = rng.randn(n_neurons)
    x0 = x0_std * rng.randn(n_conditions, n_neurons)
    x = np.repeat(x0, n_trials, axis=0)
    n_total = n_conditions * n_trials
    pulse_bin = rng.randint(0, n_bins // 2, size=n_total) + n_bins // 4
    alpha = dt / tau
    states = np.empty((n_total, n_bins, n_neurons))
    for t in range(n_bins):
        x = (1 - alpha) * x + alpha * np.tanh(x) @ weights.T
        if input_magnitude > 0:
            x = x + alpha * input_magnitude * np.outer(pulse_bin == t, input_weights)
        states[:, t] = x
    latents = np.tanh(states)
    if normalise_per_trial:
        low, high = latents.min(1, keepdims=True), latents.max(1, keepdims=True)
        rates = max_rate * (latents - low) / np.maximum(high - low, 1e-12)
    else:
        rates = 0.5 * max_rate * (latents + 1)
    inputs = None
    if input_magnitude > 0:
        inputs = np.zeros((n_total, n_bins, 1))
        inputs[np.arange(n_total), pulse_bin, 0] = input_magnitude
    return _package(
        rng, rates, latents, dt, n_conditions, n_trials, train_fraction, n_heldout, inputs=inputs
    )


def lorenz(
    n_conditions: int = 65,
    n_trials: int = 20,
    n_neurons: int = 30,
    n_bins: int = 100,
    *,
    dt: float = 0.01,
    base_rate: float = 5.0,
    integration_dt: float = 0.006,
    steps_per_bin: int = 10,
    burn_in: int = 1000,
    train_fraction: float = 0.8,
    n_heldout: int = 0,
    seed: int = 0,
) -> SpikeData:
    """Spikes from a Lorenz attractor (σ = 10, ρ = 28, β = 8/3) embedded in ``n_neurons``.

    Forward Euler with step ``integration_dt`` (``steps_per_bin`` steps per bin of ``dt``
    seconds) from x0 ~ N(0, I) per condition after ``burn_in`` steps; the latent is
    mean-subtracted and divided by its maximum absolute value per dimension; rates are
    exp(x W + log base_rate) Hz with W = (U[0, 1) + 1)·sign(N(0, 1)), averaged within each bin.
    Trials of a condition share the latent trajectory and differ in their Poisson spikes.

    Example:
        >>> data = lorenz(n_conditions=3, n_trials=2, n_bins=10)
        >>> data.counts.shape, data.latents.shape
        (torch.Size([6, 10, 30]), torch.Size([6, 10, 3]))
    """
    n_conditions, n_trials = (
        positive_int("n_conditions", n_conditions),
        positive_int("n_trials", n_trials),
    )
    n_neurons, n_bins = positive_int("n_neurons", n_neurons), positive_int("n_bins", n_bins)
    steps_per_bin = positive_int("steps_per_bin", steps_per_bin)
    _check_common(dt=dt, train_fraction=train_fraction, n_heldout=n_heldout, seed=seed)
    rng = np.random.RandomState(seed)
    state = rng.randn(n_conditions, 3)
    path = np.empty((n_conditions, n_bins * steps_per_bin, 3))
    for step in range(burn_in + n_bins * steps_per_bin):
        x, y, z = state.T
        state = state + integration_dt * np.stack(
            [10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z], -1
        )
        if step >= burn_in:
            path[:, step - burn_in] = state
    path = path - path.mean((0, 1))
    path = path / np.abs(path).max((0, 1))
    loadings = (rng.rand(3, n_neurons) + 1) * np.sign(rng.randn(3, n_neurons))
    fine_rates = np.exp(path @ loadings + np.log(base_rate))
    bin_mean = lambda a: a.reshape(n_conditions, n_bins, steps_per_bin, -1).mean(2)  # noqa: E731
    rates = np.repeat(bin_mean(fine_rates), n_trials, axis=0)
    latents = np.repeat(bin_mean(path), n_trials, axis=0)
    return _package(rng, rates, latents, dt, n_conditions, n_trials, train_fraction, n_heldout)


def linear_dynamical(
    n_trials: int = 100,
    n_neurons: int = 400,
    n_bins: int = 250,
    n_latents: int = 10,
    *,
    dt: float = 0.01,
    train_fraction: float = 0.8,
    n_heldout: int = 0,
    seed: int = 42,
) -> SpikeData:
    """The Neuromatch seq-to-seq notebook's simulation: y_t = y_{t-1} A + ε_t, rates = max(0, y C).

    A = diag(0.8 + 0.2 U), C = 0.025·N(0, 1) (latents × neurons), y_0 = 2·N(0, I) shared by all
    trials, ε_t ~ N(0, I); the rates are counts per bin (converted to Hz here).

    Example:
        >>> data = linear_dynamical(n_trials=5, n_neurons=12, n_bins=30, n_latents=2)
        >>> data.latents.shape
        torch.Size([5, 30, 2])
    """
    n_trials, n_neurons = positive_int("n_trials", n_trials), positive_int("n_neurons", n_neurons)
    n_bins, n_latents = positive_int("n_bins", n_bins), positive_int("n_latents", n_latents)
    _check_common(dt=dt, train_fraction=train_fraction, n_heldout=n_heldout, seed=seed)
    rng = np.random.RandomState(seed)
    dynamics = np.diag(0.8 + 0.2 * rng.rand(n_latents))
    loadings = 0.025 * rng.randn(n_latents, n_neurons)
    y = 2 * rng.randn(n_latents)
    latents = np.empty((n_trials, n_bins, n_latents))
    for t in range(n_bins):
        y = y @ dynamics + rng.randn(n_trials, n_latents)
        latents[:, t] = y
    rates = np.maximum(0, latents @ loadings) / dt
    data = _package(rng, rates, latents, dt, n_trials, 1, 1.0, n_heldout)
    n_train = max(1, round(train_fraction * n_trials))
    data.train_idx, data.valid_idx = torch.arange(n_train), torch.arange(n_train, n_trials)
    return data


def lorenz_sessions(
    n_sessions: int = 5,
    n_conditions: int = 20,
    n_trials: int = 10,
    n_neurons: int = 24,
    n_units: int = 60,
    n_bins: int = 50,
    *,
    dt: float = 0.01,
    base_rate: float = 5.0,
    train_fraction: float = 0.8,
    seed: int = 0,
) -> Sessions:
    """One :func:`lorenz` population of ``n_units`` neurons recorded in ``n_sessions`` sessions,
    each through its own ``n_neurons`` of them (drawn without replacement per session, so the
    sets partly overlap) with its own ``n_trials`` trials of every condition.

    Every session sees the same ``n_conditions`` latent trajectories (their conditions share
    labels across sessions) and independent Poisson spikes; ``Sessions.units`` holds each
    session's neurons in the population, and each session's split trains on the first
    ``train_fraction`` of the repeats of every condition.

    Example:
        >>> sessions = lorenz_sessions(n_sessions=2, n_conditions=3, n_trials=2, n_bins=10)
        >>> sessions.n_neurons, sessions[1].latents.shape
        ([24, 24], torch.Size([6, 10, 3]))
    """
    n_sessions, n_units = positive_int("n_sessions", n_sessions), positive_int("n_units", n_units)
    n_trials = positive_int("n_trials", n_trials)
    n_neurons = int_in_range("n_neurons", n_neurons, 1, n_units)
    population = lorenz(
        n_conditions, n_trials * n_sessions, n_units, n_bins,
        dt=dt, base_rate=base_rate, train_fraction=train_fraction, seed=seed,
    )  # fmt: skip
    rng = np.random.RandomState(seed)
    repeats = n_trials * n_sessions
    sessions, units = [], []
    for s in range(n_sessions):
        chosen = torch.as_tensor(np.sort(rng.choice(n_units, n_neurons, replace=False)))
        first = torch.arange(n_conditions)[:, None] * repeats + s * n_trials
        part = population.subset((first + torch.arange(n_trials)).reshape(-1))
        train_idx, valid_idx = _split_by_repeat(n_conditions, n_trials, train_fraction)
        sessions.append(
            SpikeData(
                counts=part.counts[..., chosen],
                dt=dt,
                rates=part.rates[..., chosen],
                latents=part.latents,
                conditions=part.conditions,
                train_idx=train_idx,
                valid_idx=valid_idx,
            )  # fmt: skip
        )
        units.append(chosen)
    return Sessions(sessions, units=units)

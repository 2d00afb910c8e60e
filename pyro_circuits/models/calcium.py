"""Spikes → calcium → fluorescence: the observation model of two-photon calcium imaging.

Calcium follows the AR(1) recursion of the Ladder-LFADS papers (Prince et al.; ``AR1_Calcium``
in ``lyprince/hierarchical_lfads``), starting from c_{-1} = 0:

    c_t = c_{t-1} (1 - dt/τ) + α s_t + β,

and fluorescence is calcium plus Gaussian noise, F_t ~ N(c_t, σ²). τ and dt are in seconds.
:func:`fluorescence_from_spikes` generates synthetic data (defaults of the papers' recipe:
τ = 0.4 s, α = 1, β = 0, σ = 0.2, dt = 10 ms); :class:`CalciumFluorescence` is the likelihood as
a Pyro program, with τ, α, β, σ fixed or learned, that ignores NaN (missing) frames.
"""

from __future__ import annotations

import torch
from pyro import deterministic, plate, sample
from pyro import distributions as dist
from pyro.nn import PyroParam
from torch.distributions import constraints

from pyro_circuits.checks import check_counts, positive_int
from pyro_circuits.sites import LocalPyroModule

__all__ = ["CalciumFluorescence", "ar1_calcium", "fluorescence_from_spikes"]


def _check_decay(dt: float, tau) -> None:
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if (torch.as_tensor(tau) <= dt).any():
        raise ValueError(f"tau must exceed dt = {dt} s (so 0 < 1 - dt/tau < 1), got {tau}")


def _check_spikes(spikes) -> None:
    """A tensor of spikes, none negative (NaN is left to the callers that allow it)."""
    if not torch.is_tensor(spikes):
        raise TypeError(f"spikes must be a torch.Tensor, got {type(spikes).__name__}")
    if spikes.numel() and (spikes < 0).any():
        raise ValueError(
            "spikes must be non-negative (negative spikes give negative calcium), got a "
            f"minimum of {spikes.min().item()}"
        )


def ar1_calcium(spikes: torch.Tensor, *, dt: float, tau, alpha=1.0, beta=0.0) -> torch.Tensor:
    """Calcium c [..., time, neurons] driven by ``spikes`` [..., time, neurons] through AR(1).

    ``tau``, ``alpha`` and ``beta`` are floats or tensors broadcasting against [..., neurons];
    gradients flow to all of them and to ``spikes``. Negative spikes (which would give
    negative calcium) are a ValueError.

    Example:
        >>> ar1_calcium(torch.tensor([[1.0], [0.0], [0.0]]), dt=0.1, tau=0.2)
        tensor([[1.0000],
                [0.5000],
                [0.2500]])
        >>> ar1_calcium(torch.tensor([[-1.0]]), dt=0.1, tau=0.2)
        Traceback (most recent call last):
        ...
        ValueError: spikes must be non-negative (negative spikes give negative calcium), got a minimum of -1.0
    """
    _check_spikes(spikes)
    _check_decay(dt, tau)
    decay = 1 - dt / torch.as_tensor(tau, dtype=spikes.dtype, device=spikes.device)
    drive = alpha * spikes + beta
    c = torch.zeros_like(drive[..., 0, :])
    steps = []
    for t in range(spikes.shape[-2]):
        c = c * decay + drive[..., t, :]
        steps.append(c)
    return torch.stack(steps, -2)


def fluorescence_from_spikes(
    spikes: torch.Tensor,
    dt: float = 0.01,
    tau: float = 0.4,
    alpha: float = 1.0,
    beta: float = 0.0,
    sigma: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic (calcium, fluorescence) for ``spikes`` [trials, time, neurons]; F = c + σ ε.

    The same ``seed`` gives the same noise. ``spikes`` must be finite and non-negative.

    Example:
        >>> spikes = torch.zeros(2, 50, 3)
        >>> spikes[:, 10] = 1.0
        >>> calcium, fluor = fluorescence_from_spikes(spikes, seed=1)
        >>> fluor.shape, round(calcium[0, 11, 0].item(), 3)
        (torch.Size([2, 50, 3]), 0.975)
    """
    check_counts(spikes, "spikes", integer=False, nonnegative=True)
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma}")
    calcium = ar1_calcium(spikes, dt=dt, tau=tau, alpha=alpha, beta=beta)
    generator = torch.Generator(device=spikes.device).manual_seed(seed)
    noise = torch.randn(calcium.shape, generator=generator, device=spikes.device)
    return calcium, calcium + sigma * noise.to(calcium.dtype)


class CalciumFluorescence(LocalPyroModule):
    """Gaussian fluorescence likelihood F ~ N(AR(1) calcium of ``spikes``, σ²), per neuron.

    Arguments:
        n_neurons: observed neurons.
        dt: frame interval in seconds. tau, alpha, beta, sigma: initial values (scalars,
            broadcast to one per neuron).
        learn: which of ``"tau"``, ``"alpha"``, ``"beta"``, ``"sigma"`` are learned
            (constrained ``PyroParam``\\ s: τ > dt, α > 0, σ > 0); the rest are fixed buffers.
            Default: σ only. Fix σ (``learn=()``) when the noise level is known: a learned σ
            can grow until the likelihood no longer asks the spikes to explain the calcium.

    Call ``model(spikes, fluorescence=None, *, n_trials=None)`` with spikes (finite, non-negative)
    [..., trials, time, neurons] (leading dimensions: particles) and fluorescence
    [trials, time, neurons]. Sites (in the ``trials`` plate): deterministic ``calcium`` (the
    fluorescence mean) and ``fluorescence``, observed when given. NaN entries of
    ``fluorescence`` are missing frames: they add nothing to the log-likelihood or its gradients.

    Example:
        >>> import pyro
        >>> model = CalciumFluorescence(n_neurons=3, learn=("tau",))
        >>> fluor = torch.zeros(2, 20, 3)
        >>> fluor[0, 5] = float("nan")
        >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(2, 20, 3), fluor)
        >>> bool(torch.isfinite(trace.log_prob_sum()))
        True
    """

    dims = {
        "calcium": ["trial", "time", "neuron"],
        "fluorescence": ["trial", "time", "neuron"],
    }
    learnable = ("tau", "alpha", "beta", "sigma")

    def __init__(
        self,
        n_neurons: int,
        *,
        dt: float = 0.01,
        tau: float = 0.4,
        alpha: float = 1.0,
        beta: float = 0.0,
        sigma: float = 0.2,
        learn: tuple[str, ...] = ("sigma",),
    ) -> None:
        super().__init__()
        positive_int("n_neurons", n_neurons)
        _check_decay(dt, tau)
        if alpha <= 0 or sigma <= 0:
            raise ValueError(f"alpha and sigma must be positive, got {alpha} and {sigma}")
        unknown = set(learn) - set(self.learnable)
        if unknown:
            raise ValueError(f"learn must be a subset of {self.learnable}, got {sorted(unknown)}")
        self.n_neurons, self.dt = n_neurons, dt
        support = {
            "tau": constraints.greater_than(dt),
            "alpha": constraints.positive,
            "beta": constraints.real,
            "sigma": constraints.positive,
        }
        for name, value in dict(tau=tau, alpha=alpha, beta=beta, sigma=sigma).items():
            initial = torch.full((n_neurons,), float(value))
            if name in learn:
                setattr(self, name, PyroParam(initial, support[name]))
            else:
                self.register_buffer(name, initial)

    def calcium(self, spikes: torch.Tensor) -> torch.Tensor:
        """The fluorescence mean: AR(1) calcium [..., time, neurons] of ``spikes``."""
        return ar1_calcium(spikes, dt=self.dt, tau=self.tau, alpha=self.alpha, beta=self.beta)

    def innovation(self, fluorescence: torch.Tensor) -> torch.Tensor:
        """F_t − (1 − dt/τ) F_{t−1} (F_{−1} = 0), shape of ``fluorescence`` [..., time, neurons]:
        α s_t + β plus noise under the AR(1) model, the spike evidence a spike encoder reads.

        Example:
            >>> model = CalciumFluorescence(1, dt=0.1, tau=0.2, learn=())
            >>> model.innovation(torch.tensor([[1.0], [0.5], [2.25]])).squeeze(-1)
            tensor([1., 0., 2.])
        """
        decay = 1 - self.dt / self.tau.detach()
        previous = torch.nn.functional.pad(fluorescence[..., :-1, :], (0, 0, 1, 0))
        return fluorescence - decay * previous

    def moments(self, expected_spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the calcium when spikes are Poisson with these means.

        With independent s_t, c_t = Σ_k α d^k s_{t−k} + β Σ_k d^k (d = 1 − dt/τ) has mean
        ``calcium(E s)`` and variance Σ_k α² d^{2k} E s_{t−k}: the same AR(1) with decay d².
        """
        decay = 1 - self.dt / self.tau
        variance = ar1_calcium(
            expected_spikes, dt=self.dt, tau=self.dt / (1 - decay**2), alpha=self.alpha**2
        )
        return self.calcium(expected_spikes), variance

    def forward(self, spikes, fluorescence=None, *, n_trials=None):
        if not torch.is_tensor(spikes) or spikes.dim() < 3:
            raise ValueError("spikes must be a [..., trials, time, neurons] tensor")
        check_counts(spikes.flatten(0, -3), "spikes", integer=False, nonnegative=True)
        if spikes.shape[-1] != self.n_neurons:
            raise ValueError(f"spikes has {spikes.shape[-1]} neurons, the model {self.n_neurons}")
        return self.observe(self.calcium(spikes), fluorescence, n_trials=n_trials)

    def observe(self, calcium, fluorescence=None, *, variance=None, n_trials=None):
        """The ``calcium`` and ``fluorescence`` sites for a given calcium mean [..., trials,
        time, neurons]: F ~ N(calcium, σ² + ``variance``), NaN frames masked."""
        observed = None
        if fluorescence is not None:
            if fluorescence.shape != calcium.shape[-3:]:
                raise ValueError(
                    f"fluorescence must have shape {tuple(calcium.shape[-3:])} "
                    f"[trials, time, neurons], got {tuple(fluorescence.shape)}"
                )
            if torch.isinf(fluorescence).any():
                raise ValueError("fluorescence contains inf (mark missing frames with NaN)")
            observed = ~torch.isnan(fluorescence)
            # A finite stand-in keeps NaN out of the masked-off log-probabilities' gradients.
            fluorescence = torch.where(observed, fluorescence, torch.zeros_like(fluorescence))
        n_batch = calcium.shape[-3]
        subsample = torch.arange(n_batch, device=calcium.device)
        scale = self.sigma if variance is None else torch.sqrt(self.sigma**2 + variance)
        with plate("trials", n_trials or n_batch, subsample=subsample, dim=-1):
            calcium = deterministic("calcium", calcium, event_dim=2)
            likelihood = dist.Normal(calcium, scale)
            if observed is not None:
                likelihood = likelihood.mask(observed)
            return sample("fluorescence", likelihood.to_event(2), obs=fluorescence)

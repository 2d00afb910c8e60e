"""LFADS models of calcium fluorescence (Prince et al.; VaLPACa): the hierarchical (ladder)
model and the Gaussian-LFADS baseline.

Per trial, the LFADS deep model (``ic``, optional inferred inputs ``co``, generator, factors f_t,
rates λ_t) drives a spike-level latent ``z`` [time, z_dim] ~ N(0, I); spikes are
s_t = relu(exp(W [f_t, z_t] + b) - 1), tied to the rates by a relaxed Poisson term
``spikes_given_rates`` = w · Σ (s log(λ dt) - λ dt - log Γ(s + 1)); calcium and fluorescence
follow :class:`~pyro_circuits.models.calcium.CalciumFluorescence`. The ELBO of this program
with :class:`~pyro_circuits.guides.ladder.LadderEncoder` is the papers' loss; by default the
spike level reads the factors without passing gradient back into the deep model.
:class:`GaussianCalciumLFADS` skips the spike level: the fluorescence is Gaussian with the mean
and variance that Poisson spikes at the LFADS rates give through the AR(1) calcium.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyro_circuits.checks import positive_int
from pyro_circuits.models.calcium import CalciumFluorescence
from pyro_circuits.models.lfads import LFADS

__all__ = ["CalciumLFADS", "GaussianCalciumLFADS"]


class _FluorescenceLFADS(LFADS):
    """LFADS whose observations are fluorescence [trials, time, neurons] (NaN: missing frames)."""

    dims = {
        **LFADS.dims,
        "calcium": ["trial", "time", "neuron"],
        "fluorescence": ["trial", "time", "neuron"],
    }

    def __init__(self, n_neurons: int, *, dt: float = 0.01, calcium: dict | None = None, **lfads):
        super().__init__(n_neurons, dt=dt, **lfads)
        # Real-valued observations: LFADS.check_data then accepts non-integer data.
        self.likelihood = "fluorescence"
        self.observation = CalciumFluorescence(n_neurons, dt=dt, **(calcium or {}))

    def init_readout(self, spikes: torch.Tensor) -> _FluorescenceLFADS:
        """Set the readout bias to each neuron's mean log rate in (estimated) ``spikes``."""
        return self.set_readout_rate(spikes.mean((0, 1)))

    def encoder_input(self, fluorescence: torch.Tensor) -> torch.Tensor:
        """The AR(1) innovation of the fluorescence, where a spike is a step: an encoder reading
        it reads the rates better than one reading the raw fluorescence (``docs/calcium.md``).
        It reads 0 at a missing frame and at the frame after it (whose step is unknown; reading
        the gap as F = 0 made a step of the whole fluorescence there, and the ladder's example
        diverged)."""
        return torch.nan_to_num(self.observation.innovation(fluorescence), nan=0.0)

    def check_data(self, fluorescence, inputs=None) -> None:
        """As :meth:`LFADS.check_data` for real-valued data whose NaN entries are missing."""
        if torch.is_tensor(fluorescence):
            fluorescence = torch.where(fluorescence.isnan(), 0.0, fluorescence)
        super().check_data(fluorescence, inputs)

    def _deep(self, fluorescence, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample the deep model (inside the ``trials`` plate): factors and rates (Hz)."""
        self.check_data(fluorescence, inputs)
        n_batch, n_steps, _ = fluorescence.shape
        factors = self.sample_factors(n_batch, n_steps, inputs)
        return factors, pyro.deterministic("rates", torch.exp(self.readout(factors)), event_dim=2)

    @staticmethod
    def _trials(fluorescence, n_trials):
        n_batch = len(fluorescence)
        subsample = torch.arange(n_batch, device=fluorescence.device)
        return pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1)


class GaussianCalciumLFADS(_FluorescenceLFADS):
    """Gaussian-LFADS: fluorescence through its first two moments given the LFADS rates.

    F_t ~ N(m_t, v_t + σ²) per frame and neuron, where m and v are the mean and variance of the
    AR(1) calcium of Poisson spikes at rate λ_t (:meth:`CalciumFluorescence.moments`): a 1-D
    convolution of the rates, the Ladder papers' order-2 baseline. The guide is
    :class:`~pyro_circuits.guides.LFADSEncoder` (it reads :meth:`encoder_input`).

    Example:
        >>> model = GaussianCalciumLFADS(4, ic_dim=3, gen_dim=6, fac_dim=2)
        >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(2, 7, 4))
        >>> trace.nodes["calcium"]["value"].shape
        torch.Size([2, 7, 4])
    """

    def forward(self, fluorescence, inputs=None, *, n_trials=None, cd_mask=None):
        if cd_mask is not None:
            raise ValueError(f"{type(self).__name__} does not support coordinated dropout")
        with self._trials(fluorescence, n_trials):
            _, rates = self._deep(fluorescence, inputs)
        mean, variance = self.observation.moments(rates * self.dt)
        with poutine.block(hide=["trials"]):  # the trials plate's subsample site is recorded
            return self.observation.observe(
                mean, fluorescence, variance=variance, n_trials=n_trials
            )


class CalciumLFADS(_FluorescenceLFADS):
    """LFADS rates → spikes → calcium → fluorescence [trials, time, neurons] (NaN: missing).

    Arguments:
        n_neurons: imaged neurons. z_dim: spike-level latent size. spike_weight: weight w of
            the relaxed Poisson term. dt: frame interval in seconds (rates are in Hz).
        train_deep_through_spikes: let the spike level's reads of the factors (the spike map
            here, the z controller of :class:`~pyro_circuits.guides.ladder.LadderEncoder`)
            pass gradient into the deep model. Off by default: then only the Poisson tie and
            the deep KL train the deep model. On, the fluorescence term's gradient on the
            generator dwarfs the tie's and the deep level learns nothing (``docs/calcium.md``).
        straight_through: in the backward pass, treat the relu of the spike map as the
            identity (a straight-through estimator), so that a cell whose W[f, z] + b fell
            below zero still learns when the fluorescence asks for spikes. The forward value
            is unchanged. On by default: with the exact relu gradient, most cells of the
            chaotic RNN stopped spiking for good early in training (``docs/calcium.md``).
        calcium: options of :class:`CalciumFluorescence` (``tau``, ``alpha``, ``beta``,
            ``sigma``, ``learn``). Other keyword arguments size the LFADS deep model.

    Coordinated dropout (``cd_mask``, as :class:`~pyro_circuits.svi.CoordinatedDropout` passes
    it): the dynamics-level encoder reads the innovation with the dropped entries zeroed, and
    only the dropped entries' Poisson tie passes gradient into the deep model; the kept
    entries' tie still pulls the spikes towards the rates, so the loss is the full ELBO.

    Sites: those of LFADS (``ic``, ``co``, ``factors``, ``rates``) and ``z`` in the ``trials``
    plate, deterministic ``spikes``, the factor ``spikes_given_rates``, then ``calcium`` and the
    observed ``fluorescence``. Call signature ``model(fluorescence, inputs=None, *,
    n_trials=None, cd_mask=None)``, as :func:`pyro_circuits.svi.train` expects.

    Example:
        >>> model = CalciumLFADS(4, z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2)
        >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(2, 7, 4))
        >>> trace.nodes["z"]["value"].shape, trace.nodes["spikes"]["value"].shape
        (torch.Size([2, 7, 2]), torch.Size([2, 7, 4]))
    """

    dims = {
        **_FluorescenceLFADS.dims,
        "z": ["trial", "time", "z_dim"],
        "spikes": ["trial", "time", "neuron"],
    }

    def __init__(
        self,
        n_neurons: int,
        *,
        z_dim: int = 64,
        spike_weight: float = 1.0,
        train_deep_through_spikes: bool = False,
        straight_through: bool = True,
        dt: float = 0.01,
        calcium: dict | None = None,
        **lfads,
    ) -> None:
        super().__init__(n_neurons, dt=dt, calcium=calcium, **lfads)
        positive_int("z_dim", z_dim)
        if spike_weight < 0:
            raise ValueError(f"spike_weight must be non-negative, got {spike_weight}")
        self.z_dim, self.spike_weight = z_dim, spike_weight
        self.train_deep_through_spikes = train_deep_through_spikes
        self.straight_through = straight_through
        self.spike_map = nn.Linear(self.fac_dim + z_dim, n_neurons)

    def deep_parameters(self) -> list[nn.Parameter]:
        """The LFADS deep model's parameters: all but the spike map and the calcium model (held
        in stage 1 of :class:`~pyro_circuits.svi.Staged`)."""
        observation = {id(p) for m in (self.spike_map, self.observation) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in observation]

    def init_readout(self, spikes: torch.Tensor) -> CalciumLFADS:
        """Start the rates and the spike map at each neuron's mean count in (estimated) ``spikes``.

        The readout bias is the mean log rate (as in LFADS); the spike map's weights are zeroed
        and its bias set to log(1 + mean), so that s_t starts at the mean count for every z_t and
        learns from there, with the initial calcium at the data's level. It does not keep the
        map out of relu's zero-gradient region (``straight_through`` is what lets cells leave
        it; ``docs/calcium.md``).
        """
        super().init_readout(spikes)
        with torch.no_grad():
            self.spike_map.weight.zero_()
            self.spike_map.bias.copy_(torch.log1p(spikes.mean((0, 1))))
        return self

    def spike_level_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """The factors as the spike level reads them: detached unless train_deep_through_spikes."""
        return factors if self.train_deep_through_spikes else factors.detach()

    def spikes(self, factors: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s_t = relu(exp(W [f_t, z_t] + b) - 1), non-negative and zero for W[f, z] + b ≤ 0.

        With ``straight_through`` the value is the same but its gradient is that of exp(·) - 1.
        """
        value = torch.expm1(self.spike_map(torch.cat([factors, z], -1)))
        if not self.straight_through:
            return torch.relu(value)
        return value + (torch.relu(value) - value).detach()

    def forward(self, fluorescence, inputs=None, *, n_trials=None, cd_mask=None):
        n_batch, n_steps, _ = fluorescence.shape
        with self._trials(fluorescence, n_trials):
            factors, rates = self._deep(fluorescence, inputs)
            z_prior = dist.Normal(factors.new_zeros(()), 1.0).expand([n_batch, n_steps, self.z_dim])
            z = pyro.sample("z", z_prior.to_event(2))
            spikes = self.spikes(self.spike_level_factors(factors), z)
            spikes = pyro.deterministic("spikes", spikes, event_dim=2)
            mean = rates * self.dt
            if cd_mask is not None:  # the kept entries' tie trains the spike level only
                mean = torch.where(cd_mask == 0, mean, mean.detach())
            log_poisson = spikes * torch.log(mean) - mean - torch.lgamma(spikes + 1)
            pyro.factor("spikes_given_rates", self.spike_weight * log_poisson.sum((-1, -2)))
        with poutine.block(hide=["trials"]):  # the trials plate's subsample site is recorded
            return self.observation(spikes, fluorescence, n_trials=n_trials)

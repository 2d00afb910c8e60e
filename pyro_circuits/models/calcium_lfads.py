"""The hierarchical (ladder) LFADS model of calcium fluorescence (Prince et al.; VaLPACa).

Per trial, the LFADS deep model (``ic``, optional inferred inputs ``co``, generator, factors f_t,
rates λ_t) drives a spike-level latent ``z`` [time, z_dim] ~ N(0, I); spikes are
s_t = relu(exp(W [f_t, z_t] + b) - 1), tied to the rates by a relaxed Poisson term
``spikes_given_rates`` = w · Σ (s log(λ dt) - λ dt - log Γ(s + 1)); calcium and fluorescence
follow :class:`~pyro_circuits.models.calcium.CalciumFluorescence`. The ELBO of this program
with :class:`~pyro_circuits.guides.ladder.LadderEncoder` is the papers' loss.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyro_circuits.models.calcium import CalciumFluorescence
from pyro_circuits.models.lfads import LFADS

__all__ = ["CalciumLFADS"]


class CalciumLFADS(LFADS):
    """LFADS rates → spikes → calcium → fluorescence [trials, time, neurons] (NaN: missing).

    Arguments:
        n_neurons: imaged neurons. z_dim: spike-level latent size. spike_weight: weight w of
            the relaxed Poisson term. dt: frame interval in seconds (rates are in Hz).
        calcium: options of :class:`CalciumFluorescence` (``tau``, ``alpha``, ``beta``,
            ``sigma``, ``learn``). Other keyword arguments size the LFADS deep model.

    Sites: those of LFADS (``ic``, ``co``, ``factors``, ``rates``) and ``z`` in the ``trials``
    plate, deterministic ``spikes``, the factor ``spikes_given_rates``, then ``calcium`` and the
    observed ``fluorescence``. Call signature ``model(fluorescence, inputs=None, *,
    n_trials=None)``, as :func:`pyro_circuits.train.train` expects.

    Example:
        >>> model = CalciumLFADS(4, z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2)
        >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(2, 7, 4))
        >>> trace.nodes["z"]["value"].shape, trace.nodes["spikes"]["value"].shape
        (torch.Size([2, 7, 2]), torch.Size([2, 7, 4]))
    """

    dims = {
        **LFADS.dims,
        "z": ["trial", "time", "z_dim"],
        "spikes": ["trial", "time", "neuron"],
        "calcium": ["trial", "time", "neuron"],
        "fluorescence": ["trial", "time", "neuron"],
    }

    def __init__(
        self,
        n_neurons: int,
        *,
        z_dim: int = 64,
        spike_weight: float = 1.0,
        dt: float = 0.01,
        calcium: dict | None = None,
        **lfads,
    ) -> None:
        super().__init__(n_neurons, dt=dt, **lfads)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"z_dim must be a positive integer, got {z_dim!r}")
        if spike_weight < 0:
            raise ValueError(f"spike_weight must be non-negative, got {spike_weight}")
        # Real-valued observations: LFADS.check_data then accepts non-integer data.
        self.likelihood = "fluorescence"
        self.z_dim, self.spike_weight = z_dim, spike_weight
        self.spike_map = nn.Linear(self.fac_dim + z_dim, n_neurons)
        self.observation = CalciumFluorescence(n_neurons, dt=dt, **(calcium or {}))

    def init_readout(self, spikes: torch.Tensor) -> CalciumLFADS:
        """Set the readout bias to each neuron's mean log rate in (estimated) ``spikes``."""
        return self.set_readout_rate(spikes.mean((0, 1)))

    def deep_parameters(self) -> list[nn.Parameter]:
        """The LFADS deep model's parameters: all but the spike map and the calcium model."""
        observation = {id(p) for m in (self.spike_map, self.observation) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in observation]

    def check_data(self, fluorescence, inputs=None) -> None:
        """As :meth:`LFADS.check_data` for real-valued data whose NaN entries are missing."""
        if torch.is_tensor(fluorescence):
            fluorescence = torch.where(fluorescence.isnan(), 0.0, fluorescence)
        super().check_data(fluorescence, inputs)

    def spikes(self, factors: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s_t = relu(exp(W [f_t, z_t] + b) - 1), non-negative and zero for W[f, z] + b ≤ 0."""
        return torch.relu(torch.expm1(self.spike_map(torch.cat([factors, z], -1))))

    def forward(self, fluorescence, inputs=None, *, n_trials=None, cd_mask=None):
        if cd_mask is not None:
            raise ValueError("CalciumLFADS does not support coordinated dropout (cd_mask)")
        self.check_data(fluorescence, inputs)
        n_batch, n_steps, _ = fluorescence.shape
        subsample = torch.arange(n_batch, device=fluorescence.device)
        with pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1):
            factors = self.sample_factors(n_batch, n_steps, inputs)
            rates = pyro.deterministic("rates", torch.exp(self.readout(factors)), event_dim=2)
            z_prior = dist.Normal(factors.new_zeros(()), 1.0).expand([n_batch, n_steps, self.z_dim])
            z = pyro.sample("z", z_prior.to_event(2))
            spikes = pyro.deterministic("spikes", self.spikes(factors, z), event_dim=2)
            mean = rates * self.dt
            log_poisson = spikes * torch.log(mean) - mean - torch.lgamma(spikes + 1)
            pyro.factor("spikes_given_rates", self.spike_weight * log_poisson.sum((-1, -2)))
        with poutine.block(hide=["trials"]):  # the trials plate's subsample site is recorded
            return self.observation(spikes, fluorescence, n_trials=n_trials)

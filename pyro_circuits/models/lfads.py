"""LFADS (Sussillo et al. 2016; Pandarinath et al. 2018) as a Pyro program.

Per trial: an initial condition ``ic`` ~ N(μ, 0.1 I) sets the generator state g_0; optional
inferred inputs ``co`` (one vector per time step, AR(1) prior) and measured inputs drive a
generator GRU whose state is clipped to ±``cell_clip``; factors f_t = W g_t with unit-norm rows
of W; rates exp(readout(f_t)) Hz; spike counts ~ Poisson(rate·dt) (or Normal observations for
continuous data). The matching guide is :class:`pyro_circuits.guides.LFADSEncoder`.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn
from torch.distributions import constraints

from pyro_circuits.checks import check_counts, require_positive_ints
from pyro_circuits.sites import LocalPyroModule

__all__ = ["LFADS", "AR1Normal", "AR1StudentT"]


class AR1Normal(TorchDistribution):
    """Independent AR(1) processes x_t = α x_{t-1} + σ ε_t over ``n_steps``, stationary at t = 0.

    α = exp(-1/τ) (τ in steps); x_0 ~ N(0, σ²/(1 - α²)), the stationary variance. The event
    shape is (n_steps, dim) for ``alpha`` and ``scale`` of shape (..., dim).

    Example:
        >>> d = AR1Normal(torch.tensor([0.9]), torch.tensor([0.1]), n_steps=5)
        >>> d.sample().shape
        torch.Size([5, 1])
    """

    arg_constraints = {"alpha": constraints.interval(0.0, 1.0), "scale": constraints.positive}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, alpha, scale, n_steps: int, validate_args=None):
        self.alpha, self.scale = torch.broadcast_tensors(alpha, scale)
        self.n_steps = n_steps
        batch_shape, dim = self.alpha.shape[:-1], self.alpha.shape[-1:]
        super().__init__(batch_shape, torch.Size((n_steps, *dim)), validate_args=validate_args)

    @property
    def stationary_scale(self) -> torch.Tensor:
        return self.scale / torch.sqrt(1 - self.alpha**2)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.alpha.shape[-1:]
        return AR1Normal(self.alpha.expand(shape), self.scale.expand(shape), self.n_steps)

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        """Standardised innovations ε of the given shape."""
        return torch.randn(shape, device=self.alpha.device)

    def _density(self, loc, scale) -> dist.TorchDistribution:
        """The law of one step given its conditional mean and scale."""
        return dist.Normal(loc, scale)

    def rsample(self, sample_shape=()):
        noise = self._noise(self._extended_shape(sample_shape))
        x = noise[..., 0, :] * self.stationary_scale
        steps = [x]
        for t in range(1, self.n_steps):
            x = self.alpha * x + self.scale * noise[..., t, :]
            steps.append(x)
        return torch.stack(steps, -2)

    def log_prob(self, value):
        first = self._density(0.0, self.stationary_scale).log_prob(value[..., 0, :])
        alpha, scale = self.alpha.unsqueeze(-2), self.scale.unsqueeze(-2)
        rest = self._density(alpha * value[..., :-1, :], scale).log_prob(value[..., 1:, :])
        return first.sum(-1) + rest.sum((-1, -2))


class AR1StudentT(AR1Normal):
    """AR(1) processes as :class:`AR1Normal` with Student-t innovations of ``df`` degrees of freedom.

    Heavy tails make one large innovation cheaper than the same change spread over several
    steps, so inferred inputs under this prior come as sparse pulses (the Gaussian prior's
    quadratic cost favours spreading them). x_0 is Student-t with the stationary scale
    σ/√(1 - α²), which gives it the stationary variance when ``df`` > 2.

    Example:
        >>> d = AR1StudentT(torch.tensor([0.9]), torch.tensor([0.1]), n_steps=5, df=2.0)
        >>> d.log_prob(d.sample()).shape
        torch.Size([])
    """

    def __init__(self, alpha, scale, n_steps: int, df: float, validate_args=None):
        if df <= 0:
            raise ValueError(f"df must be positive, got {df}")
        self.df = float(df)
        super().__init__(alpha, scale, n_steps, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.alpha.shape[-1:]
        return AR1StudentT(
            self.alpha.expand(shape), self.scale.expand(shape), self.n_steps, self.df
        )

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        return dist.StudentT(self.alpha.new_tensor(self.df)).expand(shape).rsample()

    def _density(self, loc, scale) -> dist.TorchDistribution:
        return dist.StudentT(self.df, loc, scale)


def init_gru(module: nn.GRU | nn.GRUCell) -> nn.GRU | nn.GRUCell:
    """N(0, 1/fan_in) weights, zero biases except an update-gate input bias of 1 (remember)."""
    hidden = module.hidden_size
    for name, value in module.named_parameters():
        if name.startswith("weight"):
            nn.init.normal_(value, std=1 / math.sqrt(value.shape[1]))
        else:
            nn.init.zeros_(value)
            if name.startswith("bias_ih"):
                with torch.no_grad():
                    value[hidden : 2 * hidden] = 1.0
    return module


class LFADS(LocalPyroModule):
    """The LFADS generative model for spike counts [trials, time, neurons].

    Arguments:
        n_neurons: observed neurons.
        ic_dim, gen_dim, fac_dim: initial-condition, generator and factor sizes.
        co_dim: inferred-input size (0: none). ext_dim: measured-input size (0: none).
        dt: bin width in seconds (rates are in Hz). likelihood: ``"poisson"`` or ``"gaussian"``.
        ic_prior_var: variance of the ic prior (its mean is learnt).
        ic_prior_components: K. With K > 1 the ic prior is an equal-weight mixture of K
            Gaussians whose means (drawn from N(0, ic_prior_var)) and scales (starting at
            √ic_prior_var) are learnt: for trials that start from a few shared states, such as
            an experiment's K conditions, so that a trial's initial condition can borrow from
            the others of its cluster. It has no closed-form KL to the guide's Gaussian.
        co_tau, co_noise_var: initial AR(1) time constant (bins) and process variance of the
            ``co`` prior; both are learnt. co_prior_df: Student-t degrees of freedom of the
            prior's innovations (:class:`AR1StudentT`, for pulse-like inputs); ``None`` (the
            papers' choice): Gaussian. cell_clip: generator state clip. dropout: on factors.

    Sites (in the ``trials`` plate): ``ic`` [ic_dim], ``co`` [time, co_dim], deterministic
    ``factors`` and ``rates`` (Hz; the predicted mean for the Gaussian likelihood), and the
    observed ``counts``. Call signature
    ``model(counts, inputs=None, *, n_trials=None, cd_mask=None)``: ``n_trials`` is the size
    of the full data set when ``counts`` is a minibatch; ``cd_mask`` (coordinated dropout, as
    :class:`~pyro_circuits.svi.CoordinatedDropout` passes it) scores only the entries where it
    is 0.

    Example:
        >>> model = LFADS(n_neurons=5, ic_dim=4, gen_dim=8, fac_dim=3, co_dim=1)
        >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(2, 7, 5))
        >>> trace.nodes["co"]["value"].shape, trace.nodes["rates"]["value"].shape
        (torch.Size([2, 7, 1]), torch.Size([2, 7, 5]))
    """

    dims = {
        "ic": ["trial", "ic_dim"],
        "co": ["trial", "time", "co_dim"],
        "factors": ["trial", "time", "factor"],
        "rates": ["trial", "time", "neuron"],
        "counts": ["trial", "time", "neuron"],
    }

    def __init__(
        self,
        n_neurons: int,
        *,
        ic_dim: int = 64,
        gen_dim: int = 100,
        fac_dim: int = 20,
        co_dim: int = 0,
        ext_dim: int = 0,
        dt: float = 0.01,
        likelihood: str = "poisson",
        ic_prior_var: float = 0.1,
        co_tau: float = 10.0,
        co_noise_var: float = 0.1,
        co_prior_df: float | None = None,
        cell_clip: float = 5.0,
        dropout: float = 0.0,
        ic_prior_components: int = 1,
    ) -> None:
        super().__init__()
        require_positive_ints(
            n_neurons=n_neurons,
            ic_dim=ic_dim,
            gen_dim=gen_dim,
            fac_dim=fac_dim,
            ic_prior_components=ic_prior_components,
        )
        for name, value in dict(co_dim=co_dim, ext_dim=ext_dim).items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if likelihood not in ("poisson", "gaussian"):
            raise ValueError(f"likelihood must be 'poisson' or 'gaussian', got {likelihood!r}")
        if dt <= 0 or ic_prior_var <= 0 or co_tau <= 0 or co_noise_var <= 0 or cell_clip <= 0:
            raise ValueError(
                "dt, ic_prior_var, co_tau, co_noise_var and cell_clip must be positive"
            )
        self.n_neurons, self.ic_dim, self.gen_dim = n_neurons, ic_dim, gen_dim
        self.fac_dim, self.co_dim, self.ext_dim = fac_dim, co_dim, ext_dim
        self.dt, self.likelihood, self.cell_clip = dt, likelihood, cell_clip
        if co_prior_df is not None and co_prior_df <= 0:
            raise ValueError(f"co_prior_df must be positive or None, got {co_prior_df}")
        self.co_prior_df = co_prior_df
        self.ic_prior_components = ic_prior_components
        if ic_prior_components == 1:
            self.ic_prior_mean = nn.Parameter(torch.zeros(ic_dim))
            self.register_buffer("ic_prior_scale", torch.full((ic_dim,), math.sqrt(ic_prior_var)))
        else:
            shape = (ic_prior_components, ic_dim)
            self.ic_prior_mean = nn.Parameter(torch.randn(shape) * math.sqrt(ic_prior_var))
            self.ic_prior_log_scale = nn.Parameter(torch.full(shape, math.log(ic_prior_var) / 2))
        self.co_log_tau = nn.Parameter(torch.full((co_dim,), math.log(co_tau)))
        self.co_log_noise_var = nn.Parameter(torch.full((co_dim,), math.log(co_noise_var)))
        self.ic_to_g0 = nn.Linear(ic_dim, gen_dim)
        self.generator = init_gru(nn.GRU(max(co_dim + ext_dim, 1), gen_dim, batch_first=True))
        self.factor_weight = nn.Parameter(torch.randn(fac_dim, gen_dim) / math.sqrt(gen_dim))
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(fac_dim, n_neurons)
        nn.init.normal_(self.readout.weight, std=1 / math.sqrt(fac_dim))
        nn.init.zeros_(self.readout.bias)
        if likelihood == "gaussian":
            self.log_noise_scale = nn.Parameter(torch.zeros(n_neurons))
        self._memo = None

    # --- the generator, shared with the guide -------------------------------------------------
    # A GRU state is a convex combination of the previous state and a tanh candidate, so
    # clipping g_0 to ±cell_clip keeps every later state within the clip as well.
    def initial_state(self, ic: torch.Tensor) -> torch.Tensor:
        """Generator state g_0 from the initial condition."""
        return self.ic_to_g0(ic).clamp(-self.cell_clip, self.cell_clip)

    def factor_matrix(self) -> torch.Tensor:
        """The [gen_dim, fac_dim] factor map; its columns (rows of W) have unit norm."""
        return (self.factor_weight / self.factor_weight.norm(dim=1, keepdim=True)).T

    def step(self, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One generator step: state g_t [batch, gen_dim] from g_{t-1} and u_t = [co_t, ext_t]."""
        gru = self.generator
        return torch.gru_cell(
            u, g, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
        )

    def remember(self, ic, co, inputs, factors) -> None:
        """Cache factors the guide computed for exactly these (ic, co, inputs) tensors.

        The guide runs the generator while it samples ``co``; the model reuses that run instead
        of repeating it when it is replayed on the same tensors (checked by identity).
        """
        self._memo = (ic, co, inputs, factors)

    def factors(self, ic, co, inputs, n_steps: int) -> torch.Tensor:
        """Factors [..., time, fac_dim] generated from ``ic``, inferred and measured inputs."""
        memo, self._memo = self._memo, None
        if memo is not None and memo[0] is ic and memo[1] is co and memo[2] is inputs:
            return memo[3]
        lead = ic.shape[:-1]
        parts = [] if co is None else [co.expand(*lead, -1, -1)]
        if inputs is not None:
            parts.append(inputs.expand(*lead, -1, -1))
        u = torch.cat(parts, -1) if parts else ic.new_zeros(*lead, n_steps, 1)
        g0 = self.initial_state(ic).reshape(1, -1, self.gen_dim)
        states = self.generator(u.reshape(-1, n_steps, u.shape[-1]), g0)[0]
        return self.dropout(states.reshape(*lead, n_steps, self.gen_dim)) @ self.factor_matrix()

    # --- the model ------------------------------------------------------------------------------
    def init_readout(self, counts: torch.Tensor) -> LFADS:
        """Set the readout bias to each neuron's mean log rate (Poisson) or mean (Gaussian)."""
        check_counts(counts, integer=self.likelihood == "poisson")
        mean = counts.mean((0, 1))
        if self.likelihood == "poisson":
            return self.set_readout_rate(mean)
        with torch.no_grad():
            self.readout.bias.copy_(mean)
        return self

    def set_readout_rate(self, mean_count: torch.Tensor) -> LFADS:
        """Readout bias = log of each neuron's mean count per bin, as a rate in Hz."""
        with torch.no_grad():
            self.readout.bias.copy_(torch.log(mean_count.clamp(min=1e-3) / self.dt))
        return self

    def ic_prior(self) -> dist.TorchDistribution:
        """p(ic), event shape [ic_dim]: a Gaussian, or the mixture of ``ic_prior_components``."""
        if self.ic_prior_components == 1:
            return dist.Normal(self.ic_prior_mean, self.ic_prior_scale).to_event(1)
        components = dist.Normal(self.ic_prior_mean, self.ic_prior_log_scale.exp()).to_event(1)
        logits = self.ic_prior_mean.new_zeros(self.ic_prior_components)
        equal_weights = dist.Categorical(logits=logits)
        return dist.MixtureSameFamily(equal_weights, components)

    def co_prior(self, n_steps: int) -> AR1Normal:
        alpha = torch.exp(-torch.exp(-self.co_log_tau))
        scale = torch.exp(self.co_log_noise_var / 2)
        if self.co_prior_df is None:
            return AR1Normal(alpha, scale, n_steps)
        return AR1StudentT(alpha, scale, n_steps, self.co_prior_df)

    def check_data(self, counts, inputs=None) -> None:
        """Raise a clear error for malformed ``counts`` or ``inputs``."""
        check_counts(counts, integer=self.likelihood == "poisson")
        if counts.shape[-1] != self.n_neurons:
            raise ValueError(f"counts has {counts.shape[-1]} neurons, the model {self.n_neurons}")
        if self.ext_dim and inputs is None:
            raise ValueError(f"inputs of shape [trials, time, {self.ext_dim}] are required")
        if inputs is not None and inputs.shape != (*counts.shape[:2], self.ext_dim):
            raise ValueError(
                f"inputs must have shape {(*counts.shape[:2], self.ext_dim)}, "
                f"got {tuple(inputs.shape)}"
            )

    def encoder_input(self, counts: torch.Tensor) -> torch.Tensor:
        """What the guide's encoders read of the data: the counts themselves here."""
        return counts

    def sample_factors(self, n_batch: int, n_steps: int, inputs=None) -> torch.Tensor:
        """Sample ``ic`` (and ``co``) and record the ``factors`` site; inside the trials plate."""
        ic = pyro.sample("ic", self.ic_prior().expand([n_batch]))
        co = None
        if self.co_dim:
            co = pyro.sample("co", self.co_prior(n_steps).expand([n_batch]))
        factors = self.factors(ic, co, inputs, n_steps)
        return pyro.deterministic("factors", factors, event_dim=2)

    def forward(self, counts, inputs=None, *, n_trials=None, cd_mask=None):
        self.check_data(counts, inputs)
        n_batch, n_steps, _ = counts.shape
        subsample = torch.arange(n_batch, device=counts.device)
        with pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1):
            factors = self.sample_factors(n_batch, n_steps, inputs)
            mean = self.readout(factors)
            if self.likelihood == "poisson":
                rates = pyro.deterministic("rates", torch.exp(mean), event_dim=2)
                observation = dist.Poisson(rates * self.dt)
            else:
                pyro.deterministic("rates", mean, event_dim=2)
                observation = dist.Normal(mean, torch.exp(self.log_noise_scale))
            if cd_mask is not None:
                observation = observation.mask(cd_mask == 0)
            return pyro.sample("counts", observation.to_event(2), obs=counts)

"""The LFADS encoder: the amortised posterior over initial conditions and inferred inputs."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.handlers import standard_normal
from pyro_circuits.models.lfads import LFADS, init_gru
from pyro_circuits.sites import LocalPyroModule

__all__ = ["LFADSEncoder"]


_GENERATOR_API = ("check_data", "initial_state", "step", "factor_matrix", "remember")


class _SequencePosterior(dist.Delta):
    """The co sequence drawn step by step, carrying its log-density log q(co)."""


@dist.kl.register_kl(_SequencePosterior, dist.Distribution)
def _sampled_kl_only(p, q):
    # Delta's registered KL drops log_density; make ELBOs estimate this KL by sampling.
    raise NotImplementedError


def _bidirectional_gru(input_size: int, hidden_size: int) -> nn.GRU:
    return init_gru(nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=True))


class LFADSEncoder(LocalPyroModule):
    """Guide for :class:`~pyro_circuits.models.LFADS`, with the model's signature and sites.

    The encoders read ``model.encoder_input(counts)``: the spikes for LFADS, the AR(1)
    innovation of the fluorescence for the calcium models. ``ic``: a bidirectional GRU reads
    them; its final forward and backward states give the
    mean and log-variance of q(ic) (scale sqrt(exp(logvar) + ic_post_var_min)). ``co`` (when the
    model infers inputs): a second bidirectional GRU's outputs, lagged by ``ci_lag`` steps (t - lag
    forward, t + lag backward), and the previous factors feed a controller GRU that gives
    q(co_t | co_<t) = N(μ_t, σ_t²); the sample co_t drives the model's own generator. The
    sequence is one ``co`` site whose log-density is the sum of the per-step terms. Given a
    ``cd_mask`` (coordinated dropout, as :class:`~pyro_circuits.svi.CoordinatedDropout` passes
    it) the encoders read the encoder input times the mask.

    Arguments:
        model: the LFADS model (its generator is shared, not copied).
        enc_dim, ci_dim, con_dim: encoder, controller-input encoder and controller sizes.
        ci_lag: controller input lag in bins. dropout: on the encoder input and outputs.
        observed: neuron indices the encoder reads (default all; e.g. the held-in neurons).
        input_dim: width of the features a caller passes as ``encoded`` to read instead of the
            data (the ladder guide's stacked dynamics level); default: the observed neurons.

    Example:
        >>> model = LFADS(n_neurons=5, ic_dim=4, gen_dim=8, fac_dim=3, co_dim=1)
        >>> guide = LFADSEncoder(model, enc_dim=6, ci_dim=6, con_dim=6)
        >>> trace = pyro.poutine.trace(guide).get_trace(torch.zeros(2, 7, 5))
        >>> trace.nodes["ic"]["value"].shape, trace.nodes["co"]["value"].shape
        (torch.Size([2, 4]), torch.Size([2, 7, 1]))
    """

    def __init__(
        self,
        model: LFADS,
        *,
        enc_dim: int = 64,
        ci_dim: int = 64,
        con_dim: int = 64,
        ci_lag: int = 1,
        dropout: float = 0.0,
        ic_post_var_min: float = 1e-4,
        observed=None,
        input_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not all(hasattr(model, name) for name in _GENERATOR_API):
            raise TypeError(
                f"model must be an LFADS model (with {', '.join(_GENERATOR_API)}), "
                f"got {type(model).__name__}"
            )
        require_positive_ints(enc_dim=enc_dim, ci_dim=ci_dim, con_dim=con_dim)
        if not isinstance(ci_lag, int) or ci_lag < 0:
            raise ValueError(f"ci_lag must be a non-negative integer, got {ci_lag!r}")
        object.__setattr__(self, "model", model)  # shared, not a submodule: no duplicate params
        observed = torch.arange(model.n_neurons) if observed is None else torch.as_tensor(observed)
        self.register_buffer("observed", observed.long())
        n_in = len(observed) if input_dim is None else input_dim
        self.input_dim, self.ci_lag, self.ic_post_var_min = input_dim, ci_lag, ic_post_var_min
        self.dropout = nn.Dropout(dropout)
        self.ic_encoder = _bidirectional_gru(n_in, enc_dim)
        self.ic_linear = nn.Linear(2 * enc_dim, 2 * model.ic_dim)
        if model.co_dim:
            self.ci_encoder = _bidirectional_gru(n_in, ci_dim)
            self.controller = init_gru(nn.GRUCell(2 * ci_dim + model.fac_dim, con_dim))
            self.co_linear = nn.Linear(con_dim, 2 * model.co_dim)
            self.con_h0 = nn.Parameter(torch.zeros(con_dim))

    def _controller_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step encoder outputs: forward lagged to t - lag, backward advanced to t + lag."""
        out = self.dropout(self.ci_encoder(x)[0])
        forward, backward = out.chunk(2, -1)
        lag = self.ci_lag
        if lag:
            forward = nn.functional.pad(forward, (0, 0, lag, 0))[:, :-lag]
            backward = nn.functional.pad(backward, (0, 0, 0, lag))[:, lag:]
        return torch.cat([forward, backward], -1)

    def _sample_co(self, ic, ci, inputs, n_steps):
        """Run controller and generator together; return co, its log-density, and the factors."""
        model = self.model
        lead = ic.shape[:-1]
        flat = lead.numel()
        ci = ci.expand(*lead, *ci.shape[-2:]).reshape(flat, n_steps, -1)
        if inputs is not None:
            inputs = inputs.expand(*lead, *inputs.shape[-2:]).reshape(flat, n_steps, -1)
        g = model.initial_state(ic).reshape(flat, -1)
        c = self.con_h0.expand(flat, -1)
        f = g.new_zeros(flat, model.fac_dim)
        weight = model.factor_matrix()
        noise = standard_normal((flat, n_steps, model.co_dim), device=g.device)
        cos, logvars, factors = [], [], []
        for t in range(n_steps):
            c = self.controller(torch.cat([ci[:, t], f], -1), c)
            loc, logvar = self.co_linear(c).chunk(2, -1)
            co_t = loc + torch.exp(logvar / 2) * noise[:, t]
            g = model.step(g, co_t if inputs is None else torch.cat([co_t, inputs[:, t]], -1))
            f = model.dropout(g) @ weight
            cos.append(co_t)
            logvars.append(logvar)
            factors.append(f)
        # log N(co_t | loc_t, σ_t) = -ε²/2 - log σ_t - log(2π)/2 with co_t = loc_t + σ_t ε
        log_q = -0.5 * (noise**2 + torch.stack(logvars, 1) + math.log(2 * math.pi)).sum((1, 2))
        co, factors = torch.stack(cos, 1), torch.stack(factors, 1)
        return (
            co.reshape(*lead, *co.shape[1:]),
            log_q.reshape(lead),
            factors.reshape(*lead, *factors.shape[1:]),
        )

    def forward(self, counts, inputs=None, *, n_trials=None, cd_mask=None, encoded=None):
        model = self.model
        model.check_data(counts, inputs)
        if (encoded is None) != (self.input_dim is None):
            raise ValueError(
                "pass `encoded` features exactly when the encoder was built with `input_dim`"
            )
        if encoded is not None and cd_mask is not None:
            raise ValueError("cd_mask masks the data, which an encoder given `encoded` never reads")
        if encoded is None:
            x = model.encoder_input(counts)
            x = (x if cd_mask is None else x * cd_mask)[..., self.observed]
        else:
            x = encoded
        x = self.dropout(x)
        n_batch, n_steps, _ = counts.shape
        subsample = torch.arange(n_batch, device=counts.device)
        with pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1):
            final = self.ic_encoder(x)[1]  # [2, batch, enc_dim]
            h = self.dropout(torch.cat([final[0], final[1]], -1))
            loc, logvar = self.ic_linear(h).chunk(2, -1)
            scale = torch.sqrt(torch.exp(logvar) + self.ic_post_var_min)
            ic = pyro.sample("ic", dist.Normal(loc, scale).to_event(1))
            if model.co_dim:
                co, log_q, factors = self._sample_co(
                    ic, self._controller_inputs(x), inputs, n_steps
                )
                co = pyro.sample("co", _SequencePosterior(co, log_density=log_q, event_dim=2))
                model.remember(ic, co, inputs, factors)

"""The ladder guide of :class:`~pyro_circuits.models.calcium_lfads.CalciumLFADS`."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.guides.lfads_encoder import LFADSEncoder, _bidirectional_gru
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.models.lfads import init_gru
from pyro_circuits.sites import LocalPyroModule

__all__ = ["LadderEncoder"]


class LadderEncoder(LocalPyroModule):
    """Guide for :class:`CalciumLFADS`: dynamics-level and spike-level encoders of fluorescence.

    Both levels read the AR(1) innovation F_t − (1 − dt/τ) F_{t−1} of the fluorescence (the
    model's ``encoder_input``; 0 at a missing frame and the next), where a spike shows as a
    step of α against noise σ√2. Dynamics level: an :class:`LFADSEncoder` of the model reads
    it and samples ``ic`` and ``co``. Spike level: a bidirectional GRU reads the fluorescence beside
    its innovation; a controller GRU reads its outputs with the factors f_t generated from the
    sampled ``ic``/``co`` (as :meth:`CalciumLFADS.spike_level_factors` gives them), and a linear
    map of its state beside the frame's step features gives q(z_t) = N(μ_t, σ_t²) (mean field
    over steps given those). Step features: each cell's innovation and ``step_dim`` features of
    it from a small MLP shared by the cells, so that the map from a cell's step to its spike
    can be threshold-like rather than exp(linear). This direct path lets each cell's step reach
    z_t without squeezing through the GRUs, which read the spikes poorly on their own
    (``docs/calcium.md``). With
    ``stacked=True`` the dynamics level reads the spike-level encoder's outputs instead of the
    innovation, as the paper stacks its dynamics encoder on the spike-level one.

    Arguments:
        model: the CalciumLFADS model (shared, not copied).
        enc_dim, con_dim: spike-level encoder and controller sizes.
        step_dim: features of each cell's innovation on the direct path (hidden width too).
        z_post_var_min: floor of the q(z_t) variance.
        stacked: the dynamics level reads the spike-level encoder's outputs (no ``cd_mask`` then).
        **deep: options of the dynamics-level :class:`LFADSEncoder` (``enc_dim``, ``ci_dim``, ...).

    Example:
        >>> model = CalciumLFADS(4, z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2)
        >>> guide = LadderEncoder(model, enc_dim=5, con_dim=5, deep=dict(enc_dim=5))
        >>> trace = pyro.poutine.trace(guide).get_trace(torch.zeros(2, 7, 4))
        >>> trace.nodes["ic"]["value"].shape, trace.nodes["z"]["value"].shape
        (torch.Size([2, 3]), torch.Size([2, 7, 2]))
    """

    def __init__(
        self,
        model: CalciumLFADS,
        *,
        enc_dim: int = 32,
        con_dim: int = 32,
        step_dim: int = 8,
        z_post_var_min: float = 1e-4,
        stacked: bool = False,
        deep: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, CalciumLFADS):
            raise TypeError(f"model must be a CalciumLFADS, got {type(model).__name__}")
        require_positive_ints(enc_dim=enc_dim, con_dim=con_dim, step_dim=step_dim)
        object.__setattr__(self, "model", model)  # shared, not a submodule: no duplicate params
        self.z_post_var_min = z_post_var_min
        deep = dict(deep or {}, input_dim=2 * enc_dim) if stacked else deep or {}
        self.deep = LFADSEncoder(model, **deep)
        self.encoder = _bidirectional_gru(2 * model.n_neurons, enc_dim)
        self.controller = init_gru(nn.GRU(2 * enc_dim + model.fac_dim, con_dim, batch_first=True))
        self.step_features = nn.Sequential(
            nn.Linear(1, step_dim), nn.ELU(), nn.Linear(step_dim, step_dim), nn.ELU()
        )
        n_direct = model.n_neurons * (1 + step_dim)
        self.z_linear = nn.Linear(con_dim + n_direct, 2 * model.z_dim)

    def deep_parameters(self) -> list[nn.Parameter]:
        """The dynamics-level encoder's parameters (held in stage 1 of
        :class:`~pyro_circuits.svi.Staged`)."""
        return list(self.deep.parameters())

    def forward(self, fluorescence, inputs=None, *, n_trials=None, cd_mask=None):
        model = self.model
        model.check_data(fluorescence, inputs)
        x = torch.nan_to_num(fluorescence, nan=0.0)
        innovation = model.encoder_input(fluorescence)
        features = self.encoder(torch.cat([x, innovation], -1))[0]
        stacked = self.deep.input_dim is not None
        latents = (
            poutine.trace(self.deep)
            .get_trace(
                fluorescence,
                inputs,
                n_trials=n_trials,
                cd_mask=cd_mask,
                encoded=features if stacked else None,
            )
            .nodes
        )
        ic = latents["ic"]["value"]
        co = latents["co"]["value"] if model.co_dim else None
        n_batch, n_steps, _ = x.shape
        factors = model.factors(ic, co, inputs, n_steps)
        model.remember(ic, co, inputs, factors)  # the model replays these draws
        features = features.expand(*factors.shape[:-1], -1)
        controls = torch.cat([features, model.spike_level_factors(factors)], -1)
        h = self.controller(controls.flatten(0, -3))[0].reshape(*controls.shape[:-1], -1)
        steps = innovation.unsqueeze(-1)  # [trials, time, cells, 1]
        direct = torch.cat([steps, self.step_features(steps)], -1).flatten(-2)  # past the GRUs
        direct = direct.expand(*h.shape[:-1], -1)
        loc, logvar = self.z_linear(torch.cat([h, direct], -1)).chunk(2, -1)
        scale = torch.sqrt(torch.exp(logvar) + self.z_post_var_min)
        subsample = torch.arange(n_batch, device=x.device)
        # The dynamics-level encoder recorded the trials plate's subsample site already.
        with (
            poutine.block(hide=["trials"]),
            pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1),
        ):
            pyro.sample("z", dist.Normal(loc, scale).to_event(2))

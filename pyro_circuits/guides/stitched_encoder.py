"""The guide of :class:`~pyro_circuits.models.StitchedLFADS`: per-session read-ins feeding one
shared LFADS encoder."""

from __future__ import annotations

from pyro_circuits.guides.lfads_encoder import LFADSEncoder
from pyro_circuits.models.stitched_lfads import StitchedLFADS
from pyro_circuits.sites import LocalPyroModule

__all__ = ["StitchedEncoder"]


class StitchedEncoder(LocalPyroModule):
    """Guide for :class:`StitchedLFADS`, with the model's signature and sites.

    Each trial's counts pass through its session's read-in (the model's
    :meth:`~StitchedLFADS.encoder_input`, so the read-ins live with the read-outs in the model)
    into one :class:`LFADSEncoder` shared by all sessions, which samples ``ic`` (and ``co``)
    and runs the shared generator. Under coordinated dropout (``cd_mask``) the read-ins read
    the counts times the mask.

    Arguments:
        model: the StitchedLFADS model (shared, not copied).
        **encoder: options of the shared :class:`LFADSEncoder` (``enc_dim``, ``ci_dim``,
            ``con_dim``, ``ci_lag``, ``dropout``, ``ic_post_var_min``).

    Example:
        >>> import pyro, torch
        >>> model = StitchedLFADS([3, 5], ic_dim=4, gen_dim=8, fac_dim=2, co_dim=1)
        >>> guide = StitchedEncoder(model, enc_dim=6, ci_dim=6, con_dim=6)
        >>> sessions = torch.tensor([0.0, 1.0]).reshape(2, 1, 1).expand(2, 7, 1)
        >>> trace = pyro.poutine.trace(guide).get_trace(torch.zeros(2, 7, 5), sessions)
        >>> trace.nodes["ic"]["value"].shape, trace.nodes["co"]["value"].shape
        (torch.Size([2, 4]), torch.Size([2, 7, 1]))
    """

    def __init__(self, model: StitchedLFADS, **encoder) -> None:
        super().__init__()
        if not isinstance(model, StitchedLFADS):
            raise TypeError(f"model must be a StitchedLFADS, got {type(model).__name__}")
        for option in ("input_dim", "observed"):
            if option in encoder:
                raise TypeError(f"StitchedEncoder takes no {option}: the read-ins set it")
        object.__setattr__(self, "model", model)  # shared, not a submodule: no duplicate params
        self.core = LFADSEncoder(model, input_dim=model.read_in_dim, **encoder)

    def forward(self, counts, inputs=None, *, n_trials=None, cd_mask=None):
        model = self.model
        if inputs is None:
            raise ValueError("inputs must hold each trial's session index (Sessions.pack)")
        model.check_data(counts, inputs)
        read = counts if cd_mask is None else counts * cd_mask
        self.core(counts, None, n_trials=n_trials, encoded=model.encoder_input(read, inputs))

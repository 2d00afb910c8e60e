"""Coordinated dropout (Keshtkaran & Pandarinath 2019): the guide reads the data with a random
fraction of the entries zeroed and the likelihood scores only those, so that the model cannot
fit the data by passing it through the latents unchanged."""

from __future__ import annotations

import torch

from pyro_circuits.svi.callbacks import Callback

__all__ = ["CoordinatedDropout"]


class CoordinatedDropout(Callback):
    """At each training step, draw a mask over the batch's entries and pass it to the model and
    the guide as the keyword ``keyword`` (``cd_mask``, the built-in models' and guides'): a
    fraction ``rate`` of the entries is 0 (dropped), the rest 1/(1 - ``rate``). The guide reads
    the data times the mask; the model scores only the entries where it is 0.

    The mask is one ``torch.rand_like`` draw of the batch's counts per step, before the guide's
    draws. Validation and posterior reads pass no mask.

    Example:
        >>> import pyro
        >>> pyro.set_rng_seed(0)
        >>> kwargs = CoordinatedDropout(0.5).step_kwargs(None, torch.ones(2, 3), None)
        >>> sorted(kwargs), kwargs["cd_mask"].unique().tolist()
        (['cd_mask'], [0.0, 2.0])
    """

    def __init__(self, rate: float, keyword: str = "cd_mask") -> None:
        if not 0 < rate < 1:
            raise ValueError(f"coordinated dropout needs a rate in (0, 1), got {rate}")
        self.rate, self.keyword = rate, keyword

    def mask(self, counts: torch.Tensor) -> torch.Tensor:
        """A mask shaped like ``counts``: 0 where dropped, 1/(1 - rate) where kept."""
        keep = torch.rand_like(counts) >= self.rate
        return keep / (1 - self.rate)

    def step_kwargs(self, loop, counts, inputs) -> dict:
        return {self.keyword: self.mask(counts)}

"""Read-out handlers for fitted guides.

:class:`PushMean` replaces every latent draw by its distribution's mean: LFADS's "posterior push
mean" read-out. Guides that draw a reparameterised sequence by hand (the LFADS controller's
inputs, step by step) take their noise from :func:`standard_normal`, an effectful draw that it sets to zero.
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import effectful
from pyro.poutine.util import site_is_subsample

__all__ = ["PushMean", "standard_normal"]


class PushMean(Messenger):
    """Each latent sample site takes its distribution's mean instead of a draw.

    Run around a guide, it passes the posterior means through the rest of the guide and, replayed,
    through the model, free of sampling noise.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> with PushMean():
        ...     pyro.sample("x", dist.Normal(torch.tensor(2.0), 1.0)).item()
        2.0
    """

    def _pyro_sample(self, msg):
        if not (msg["is_observed"] or site_is_subsample(msg)) and msg["value"] is None:
            msg["value"] = msg["fn"].mean

    def _pyro_standard_normal(self, msg):
        msg["value"] = torch.zeros(*msg["args"], **msg["kwargs"])


def _randn(shape, device=None) -> torch.Tensor:
    return torch.randn(shape, device=device)


_standard_normal = effectful(_randn, type="standard_normal")


def standard_normal(shape, device=None) -> torch.Tensor:
    """The noise ε of a hand-written reparameterised draw μ + σ·ε: N(0, 1), or zeros under
    :class:`PushMean`.

    Example:
        >>> with PushMean():
        ...     standard_normal((2,)).tolist()
        [0.0, 0.0]
    """
    return _standard_normal(shape, device=device)

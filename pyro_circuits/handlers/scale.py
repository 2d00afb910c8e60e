"""Scaling the log-density of latent sites: the KL warm-up of a model and its guide."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.poutine.scale_messenger import ScaleMessenger

__all__ = ["scale_latents"]


class scale_latents(ScaleMessenger):
    """``poutine.scale`` restricted to latent sample sites: the KL warm-up of both model and guide.

    ``only`` limits it to the named sites, ``exclude`` leaves the named sites alone.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> from pyro import poutine
        >>> with scale_latents(0.5):
        ...     trace = poutine.trace(lambda: pyro.sample("z", dist.Normal(0, 1))).get_trace()
        >>> trace.nodes["z"]["scale"]
        0.5
    """

    def __init__(
        self, scale: float, only: Sequence[str] | None = None, exclude: Sequence[str] = ()
    ):
        super().__init__(scale)
        self.only, self.exclude = only, tuple(exclude)

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["name"] in self.exclude:
            return
        if self.only is None or msg["name"] in self.only:
            super()._process_message(msg)

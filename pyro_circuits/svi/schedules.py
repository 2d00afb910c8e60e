"""Warm-up schedules of SVI training, as loop hooks: the KL warm-up of the latent sites, the L2
penalty on the recurrent kernels with its warm-up, and the ladder models' two-stage schedule
:class:`Staged`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from pyro_circuits.checks import nonnegative_int, real
from pyro_circuits.handlers import scale_latents
from pyro_circuits.svi.callbacks import Callback
from pyro_circuits.svi.elbo import recurrent_l2

__all__ = ["KLWarmup", "L2Penalty", "Staged", "ramp"]


def ramp(step: int, length: int) -> float:
    """Linear warm-up from 1/(length+1) to 1 over ``length`` steps (1 when length is 0).

    Example:
        >>> [ramp(step, 3) for step in range(5)]
        [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return min(1.0, (step + 1) / (length + 1))


class KLWarmup(Callback):
    """Scale the log-densities of the latent sites (of model and guide: their KL) by
    ``ramp(step, steps)``, leaving the ``exclude`` sites alone.

    Example:
        >>> KLWarmup(4).warmup
        4
    """

    def __init__(self, steps: int = 0, exclude: Sequence[str] = ()) -> None:
        self.warmup, self.exclude = nonnegative_int("kl_warmup", steps), tuple(exclude)

    def scaling(self, loop) -> scale_latents:
        return scale_latents(ramp(loop.steps, self.warmup), exclude=self.exclude)


class L2Penalty(Callback):
    """Add ``scale`` · schedule(step) · ½Σ‖W_hh‖²/Σnumel of the recurrent kernels of model and
    guide (:func:`~pyro_circuits.svi.elbo.recurrent_l2`) to each step's loss. The schedule is
    ``ramp(step, warmup)`` unless given.

    Example:
        >>> L2Penalty(0.5, warmup=3).schedule(0)
        0.25
    """

    def __init__(
        self, scale: float, warmup: int = 0, schedule: Callable[[int], float] | None = None
    ) -> None:
        self.scale = real("l2_scale", scale, low=0.0)
        self.warmup = nonnegative_int("l2_warmup", warmup)
        self.schedule = schedule or functools.partial(ramp, length=warmup)

    def penalty(self, loop) -> torch.Tensor:
        return self.scale * self.schedule(loop.steps) * recurrent_l2((loop.model, loop.guide))


@dataclass
class Staged(Callback):
    """The ladder models' two-stage schedule (VaLPACa; reference: hold = ramp = 1600 steps).

    Stage 1 (``hold`` steps) fits the observation level: the parameters that the model's and
    the guide's ``deep_parameters()`` return are held fixed and the KL of the deep latent
    ``sites`` is scaled by the ramp's first value. Stage 2 ramps that KL (and, in
    :func:`~pyro_circuits.svi.train`, the L2 penalty) linearly to 1 over ``ramp`` steps. The
    other latents keep their own warm-up (:class:`KLWarmup` with ``exclude=sites``).

    As a hook it looks the held parameters up as training begins (a TypeError if the model or
    the guide has no ``deep_parameters()``), scales the deep sites' KL, and drops the held
    parameters' gradients during stage 1.

    Example:
        >>> Staged(hold=2, ramp=3).deep_scale(1), Staged(hold=2, ramp=3).deep_scale(4)
        (0.25, 0.75)
    """

    hold: int = 1600
    ramp: int = 1600
    sites: tuple[str, ...] = ("ic", "co")
    _held: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nonnegative_int("Staged needs hold >= 0: hold", self.hold)
        nonnegative_int("Staged needs ramp >= 0: ramp", self.ramp)

    def holding(self, step: int) -> bool:
        """Whether the deep parameters are held at ``step``."""
        return step < self.hold

    def deep_scale(self, step: int) -> float:
        """Scale of the deep KL and the L2 penalty at ``step``."""
        return ramp(max(step - self.hold, 0), self.ramp)

    @property
    def length(self) -> int:
        """Steps of both stages."""
        return self.hold + self.ramp

    @property
    def warmup(self) -> int:
        return self.length

    @staticmethod
    def held_parameters(model, guide) -> list[torch.nn.Parameter]:
        """The parameters that ``model.deep_parameters()`` and ``guide.deep_parameters()`` return."""
        held = []
        for part in (model, guide):
            if not hasattr(part, "deep_parameters"):
                raise TypeError(f"staged training needs {type(part).__name__}.deep_parameters()")
            held.extend(part.deep_parameters())
        return held

    def on_train_begin(self, loop) -> None:
        self._held = self.held_parameters(loop.model, loop.guide)

    def scaling(self, loop) -> scale_latents:
        return scale_latents(self.deep_scale(loop.steps), only=self.sites)

    def on_backward(self, loop) -> None:
        if self.holding(loop.steps):
            for p in self._held:
                p.grad = None  # Adam leaves parameters without a gradient unchanged

"""Perturbation effects: optogenetic silencing and activation as Pyro handlers.

A model passes its activity (or input current) through a named perturbation point,
:func:`site`, which returns the value unchanged when no handler is active. Handlers change what
those points return, so one handler serves every model that exposes a point::

    with optogenetic(target="LP", window=(0.8, 1.2), gain=0.675):
        model()

Points are messages of type ``"perturb"`` on Pyro's effect stack: handlers compose with each other
(the innermost acts first) and with Pyro's own (``condition``, ``do``, ``trace``, ``plate``).
Gradients of any statistic with respect to a stimulus come from autograd
(:func:`stimulus_gradient`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import effectful

__all__ = ["optogenetic", "site", "stimulus_gradient"]


def _unchanged(value: torch.Tensor, t: float | None = None, populations=None) -> torch.Tensor:
    return value


_perturb = effectful(_unchanged, type="perturb")


def site(
    name: str,
    value: torch.Tensor,
    t: float | None = None,
    populations: Sequence[str] | None = None,
) -> torch.Tensor:
    """A perturbation point: returns ``value`` unless a handler such as :func:`optogenetic` acts.

    Arguments:
        name: the point's name (handlers may select points by name, e.g. ``"activity"``).
        value: activity or current, with populations along the last dimension.
        t: time of this value in seconds (handlers with a time window need it).
        populations: names of the populations along the last dimension of ``value``.

    Example:
        >>> x = torch.ones(3)
        >>> site("activity", x, t=0.0, populations=("a", "b", "c")) is x
        True
    """
    return _perturb(value, t=t, populations=populations, name=name)


class optogenetic(Messenger):
    """Optogenetic silencing (``gain``) and activation (``current``) of target populations.

    Inside ``window`` (``t0 <= t < t1``; ``None``: always) each selected population's value is
    scaled by ``1 - gain`` (the paper's silencing, x = (1 - γ)·φ(u)) and then ``current`` is added.
    Values outside the window or of other populations pass unchanged.

    Arguments:
        target: a population name, a sequence of names, or a boolean mask over the last dimension.
        window: ``(t0, t1)`` in seconds, or ``None`` for the whole simulation.
        gain: silencing strength γ in [0, 1] (a tensor is allowed, e.g. to differentiate).
        current: added to the selected populations (in the units of the point's value).
        site: only act on perturbation points of this name (default: every point).

    Example:
        >>> x = torch.ones(2)
        >>> with optogenetic("a", window=(0.0, 1.0), gain=0.25):
        ...     site("activity", x, t=0.5, populations=("a", "b"))
        tensor([0.7500, 1.0000])
    """

    def __init__(
        self,
        target: str | Sequence[str] | Sequence[bool] | torch.Tensor,
        window: tuple[float, float] | None = None,
        gain: float | torch.Tensor | None = None,
        current: float | torch.Tensor | None = None,
        site: str | None = None,
    ) -> None:
        super().__init__()
        if gain is None and current is None:
            raise ValueError("optogenetic needs gain (silencing) and/or current (activation)")
        if isinstance(gain, int | float) and not 0.0 <= gain <= 1.0:
            raise ValueError(f"gain must lie in [0, 1], got {gain}")
        if window is not None:
            if len(window) != 2 or not window[0] < window[1]:
                raise ValueError(f"window must be (t0, t1) with t0 < t1, got {window!r}")
        self.target = target
        self.window = window
        self.gain = gain
        self.current = current
        self.site = site

    def _pyro_perturb(self, msg) -> None:
        if self.site is not None and msg["name"] != self.site:
            return
        value = msg["args"][0] if msg["value"] is None else msg["value"]
        mask = self._mask(msg["name"], msg["kwargs"]["populations"], value)
        t = msg["kwargs"]["t"]
        if self.window is not None:
            if t is None:
                raise ValueError(
                    f"perturbation point {msg['name']!r} has no time t; a window needs timed points"
                )
            if not self.window[0] <= t < self.window[1]:
                return
        if self.gain is not None:
            value = value * (1.0 - self.gain * mask)
        if self.current is not None:
            value = value + self.current * mask
        msg["value"] = value

    def _mask(self, name: str, populations, value: torch.Tensor) -> torch.Tensor:
        size = value.shape[-1] if value.dim() else 1
        target = self.target
        if isinstance(target, str) or (
            isinstance(target, Sequence) and target and isinstance(target[0], str)
        ):
            names = [target] if isinstance(target, str) else list(target)
            if populations is None:
                raise ValueError(
                    f"target {names} selects populations by name, but point {name!r} declares "
                    "no population names; pass a boolean mask instead"
                )
            unknown = [n for n in names if n not in populations]
            if unknown:
                raise ValueError(
                    f"target names unknown population(s) {unknown} at point {name!r}; "
                    f"known populations: {list(populations)}"
                )
            selected = torch.tensor([p in names for p in populations])
        else:
            selected = torch.as_tensor(target, dtype=torch.bool)
        if selected.shape != (size,):
            raise ValueError(
                f"target selects {tuple(selected.shape)} populations but point {name!r} has "
                f"{size} along its last dimension"
            )
        return selected.to(dtype=value.dtype, device=value.device)


def stimulus_gradient(
    model: Callable,
    statistic: str,
    target,
    window: tuple[float, float] | None = None,
    *,
    gain: float | torch.Tensor | None = None,
    current: float | torch.Tensor | None = None,
    site: str | None = None,
    seed: int | None = None,
    args: tuple = (),
    kwargs: dict | None = None,
) -> torch.Tensor:
    """Gradient of a statistic (summed over its entries) with respect to a stimulus, by autograd.

    Exactly one of ``gain`` and ``current`` is the stimulus; it is applied with
    :class:`optogenetic` at the value given and the gradient has its shape.

    Example:
        >>> def model():
        ...     x = site("activity", torch.tensor([2.0, 3.0]), t=0.0, populations=("a", "b"))
        ...     pyro.deterministic("total", x.sum())
        >>> stimulus_gradient(model, "total", "a", gain=0.5)
        tensor(-2.)
    """
    if (gain is None) == (current is None):
        raise ValueError("give exactly one stimulus: gain or current")
    stimulus = torch.as_tensor(gain if current is None else current).detach().requires_grad_()
    handler = optogenetic(
        target,
        window,
        gain=stimulus if current is None else None,
        current=stimulus if gain is None else None,
        site=site,
    )
    if seed is not None:
        pyro.set_rng_seed(seed)
    with handler:
        trace = poutine.trace(model).get_trace(*args, **(kwargs or {}))
    if statistic not in trace.nodes:
        raise ValueError(f"statistic {statistic!r} is not a site of the model")
    (grad,) = torch.autograd.grad(trace.nodes[statistic]["value"].sum(), stimulus)
    return grad

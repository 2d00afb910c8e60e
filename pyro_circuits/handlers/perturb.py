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

import numbers
import warnings
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import effectful

__all__ = ["optogenetic", "site", "stimulus_gradient"]


def _unchanged(
    value: torch.Tensor, t: float | None = None, populations=None, step: int | None = None
) -> torch.Tensor:
    return value


_perturb = effectful(_unchanged, type="perturb")


def site(
    name: str,
    value: torch.Tensor,
    t: float | None = None,
    populations: Sequence[str] | None = None,
    step: int | None = None,
) -> torch.Tensor:
    """A perturbation point: returns ``value`` unless a handler such as :func:`optogenetic` acts.

    Arguments:
        name: the point's name (handlers may select points by name, e.g. ``"activity"``).
        value: activity or current, with populations along the last dimension.
        t: time of this value in seconds (handlers with a time window need it).
        populations: names of the populations along the last dimension of ``value`` (a name may
            repeat, e.g. one label per neuron: a target name selects every entry carrying it).
        step: index of the time step (handlers with a time-indexed current need it).

    Example:
        >>> x = torch.ones(3)
        >>> site("activity", x, t=0.0, populations=("a", "b", "c")) is x
        True
    """
    return _perturb(value, t=t, populations=populations, step=step, name=name)


class optogenetic(Messenger):
    """Optogenetic silencing (``gain``) and activation (``current``) of target populations.

    Inside ``window`` (``t0 <= t < t1``; ``None``: always) each selected population's value is
    scaled by ``1 - gain`` (the paper's silencing, x = (1 - γ)·φ(u)) and then ``current`` is added.
    Values outside the window or of other populations pass unchanged.

    Arguments:
        target: a population name, a sequence of names, a boolean mask over the last dimension
            (a list of bools or a bool tensor), or indices into it (a list of ints or an integer
            tensor; repeated or out-of-range indices are an error, so a 0/1 list meant as a mask
            is not silently read as indices).
        window: ``(t0, t1)`` in seconds, or ``None`` for the whole simulation.
        gain: silencing strength γ in [0, 1] (a tensor is allowed, e.g. to differentiate).
        current: added to the selected populations (in the units of the point's value): a
            constant (number or 0-d tensor), a callable of the point's time ``t``, or a tensor
            indexed by the point's ``step`` along its first dimension (``[T]`` or ``[T, N]``).
            It may be negative (a hyperpolarising current).
        site: only act on perturbation points of this name (default: every point); a name that no
            point matched while the handler was active gives a warning as it exits.

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
        if gain is not None:
            if not isinstance(gain, numbers.Real | torch.Tensor) or isinstance(gain, bool):
                raise TypeError(f"gain must be a number or a tensor, got {type(gain).__name__}")
            g = torch.as_tensor(gain).detach()
            if torch.isnan(g).any():
                raise ValueError("gain contains NaN")
            if ((g < 0) | (g > 1)).any():
                raise ValueError(f"gain must lie in [0, 1], got {gain}")
        if current is not None and not callable(current):
            if not isinstance(current, numbers.Real | torch.Tensor) or isinstance(current, bool):
                raise TypeError(
                    "current must be a number, a tensor or a callable of t, got "
                    f"{type(current).__name__}"
                )
            if torch.isnan(torch.as_tensor(current).detach()).any():
                raise ValueError("current contains NaN")
            if isinstance(current, torch.Tensor) and current.dim() > 2:
                raise ValueError(
                    f"a current tensor is [T] or [T, N] (indexed by step), got {tuple(current.shape)}"
                )
        if isinstance(target, torch.Tensor) and target.is_floating_point():
            raise TypeError("target tensor must be bool (a mask) or integer (indices), not float")
        if window is not None:
            if len(window) != 2 or not window[0] < window[1]:
                raise ValueError(f"window must be (t0, t1) with t0 < t1, got {window!r}")
        self.target = target
        self.window = window
        self.gain = gain
        self.current = current
        self.site = site
        self._matched = False

    def __enter__(self):
        self._matched = False
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.site is not None and not self._matched:
            warnings.warn(
                f"optogenetic(site={self.site!r}) matched no perturbation point while it was "
                "active; check the point's name",
                UserWarning,
                stacklevel=2,
            )
        return result

    def _pyro_perturb(self, msg) -> None:
        if self.site is not None and msg["name"] != self.site:
            return
        self._matched = True
        value = msg["args"][0] if msg["value"] is None else msg["value"]
        by_name = isinstance(self.target, str) or (
            isinstance(self.target, Sequence) and self.target and isinstance(self.target[0], str)
        )
        mask = self._mask(msg["name"], msg["kwargs"]["populations"], value) if by_name else None
        t = msg["kwargs"]["t"]
        if self.window is not None:
            if t is None:
                raise ValueError(
                    f"perturbation point {msg['name']!r} has no time t; a window needs timed points"
                )
            if not self.window[0] <= t < self.window[1]:
                return
        if mask is None:
            mask = self._mask(msg["name"], msg["kwargs"]["populations"], value)
        if self.gain is not None:
            value = value * (1.0 - self.gain * mask)
        if self.current is not None:
            value = value + self._current(msg) * mask
        msg["value"] = value

    def _current(self, msg):
        current = self.current
        if callable(current):
            current = current(msg["kwargs"]["t"])
            if not isinstance(current, numbers.Real | torch.Tensor) or isinstance(current, bool):
                raise TypeError(f"current(t) must return a number or tensor, got {current!r}")
            if torch.isnan(torch.as_tensor(current).detach()).any():
                raise ValueError(f"current(t) returned NaN at t={msg['kwargs']['t']}")
            return current
        if isinstance(current, torch.Tensor) and current.dim() >= 1:
            step = msg["kwargs"].get("step")
            if step is None:
                raise ValueError(
                    f"a time-indexed current needs points with a step; {msg['name']!r} has none"
                )
            if not 0 <= step < len(current):
                raise ValueError(
                    f"current has {len(current)} steps but point {msg['name']!r} is at step {step}"
                )
            return current[step]
        return current

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
        elif _is_index_list(target):
            index = torch.as_tensor(target, dtype=torch.long).flatten()
            if len(set(index.tolist())) != len(index):
                raise ValueError(
                    f"target index list {index.tolist()} repeats an index; pass a list of bools "
                    "for a mask"
                )
            if len(index) and (index.min() < -size or index.max() >= size):
                raise ValueError(
                    f"target indices {index.tolist()} out of range for point {name!r} with {size} "
                    "entries along its last dimension"
                )
            selected = torch.zeros(size, dtype=torch.bool)
            selected[index] = True
        else:
            selected = torch.as_tensor(target, dtype=torch.bool)
        if selected.shape != (size,):
            raise ValueError(
                f"target selects {tuple(selected.shape)} populations but point {name!r} has "
                f"{size} along its last dimension"
            )
        return selected.to(dtype=value.dtype, device=value.device)


def _is_index_list(target) -> bool:
    if isinstance(target, torch.Tensor):
        return not target.dtype == torch.bool and not target.is_floating_point()
    return (
        isinstance(target, Sequence)
        and len(target) > 0
        and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in target)
    )


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

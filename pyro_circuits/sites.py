"""Reading the model contract: parameter, noise and statistic sites of a circuit model.

A circuit model is an ordinary Pyro program (see ``docs/model_contract.md``):

* circuit parameters are global ``pyro.sample`` sites (outside every plate) whose batch
  shape is ``()`` -- vector parameters put their dimensions in the event shape;
* simulator noise is declared with :func:`noise`, a reparameterised standard normal marked
  ``infer={"is_noise": True}`` so that inference methods never mistake it for a parameter;
* emergent-property statistics are ``pyro.deterministic`` sites.

:class:`CircuitProgram` traces a model once, finds those sites, and runs the model vectorised
over a leading batch of parameter draws (one call for ``n`` draws, under a
``pyro.plate("particles", n)``).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.poutine.util import site_is_subsample

from pyro_circuits.checks import on_device, positive_int, seed_int, to_device

__all__ = ["CircuitProgram", "LocalPyroModule", "SimulationError", "noise"]

# Pyro's effect-handler stack is global to the process: threads (e.g. joblib's threading
# backend) must not run Pyro programs concurrently. Process-based backends run in parallel.
_PYRO_STACK_LOCK = threading.Lock()


class SimulationError(FloatingPointError):
    """A simulator returned NaN or inf; the message names the offending parameter values."""


def noise(name: str, shape: Sequence[int] | torch.Size = (), *, like: torch.Tensor | None = None):
    """Sample reparameterised standard-normal simulator noise of the given event ``shape``.

    The site is marked ``infer={"is_noise": True}``: it is differentiable (EPI takes gradients
    through it) and it is never treated as a circuit parameter.

    Example:
        >>> import pyro, torch
        >>> pyro.set_rng_seed(0)
        >>> noise("eps", (2, 3)).shape
        torch.Size([2, 3])
    """
    options = {"dtype": like.dtype, "device": like.device} if like is not None else {}
    loc = torch.zeros(shape, **options)
    return pyro.sample(name, dist.Normal(loc, 1.0).to_event(loc.dim()), infer={"is_noise": True})


class LocalPyroModule(PyroModule):
    """A ``PyroModule`` whose parameters stay its own: each call runs under Pyro's
    ``module_local_params`` setting, restored afterwards, so several fitted modules coexist,
    pickle with their parameters, and never touch the global param store.

    Every subclass's constructor also takes a keyword ``seed``: given, the initial parameters
    are drawn from it, without touching the global random state (a subclass whose constructor
    declares ``seed`` itself keeps its own meaning).

    Example:
        >>> from pyro.nn import PyroParam
        >>> class Gain(LocalPyroModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.gain = PyroParam(torch.tensor(2.0))
        ...     def forward(self, x):
        ...         return self.gain * x
        >>> Gain()(torch.tensor(3.0)).item(), pyro.settings.get("module_local_params")
        (6.0, False)
        >>> from pyro_circuits.models import LFADS
        >>> a, b = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, seed=0), LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, seed=0)
        >>> all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
        True
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and "seed" not in inspect.signature(init).parameters:
            cls.__init__ = _seeded(init)

    def __init__(self, name: str = "") -> None:
        with pyro.settings.context(module_local_params=True):
            super().__init__(name)

    def __call__(self, *args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            return super().__call__(*args, **kwargs)


def _seeded(init: Callable) -> Callable:
    """``init`` with a keyword ``seed`` that draws what it builds from that seed, the global
    random state left as it was."""

    @functools.wraps(init)
    def seeded_init(self, *args, seed: int | None = None, **kwargs) -> None:
        if seed is None:
            return init(self, *args, **kwargs)
        seed = seed_int("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init(self, *args, **kwargs)

    return seeded_init


def _is_parameter_candidate(site: dict) -> bool:
    return (
        site["type"] == "sample"
        and not site_is_subsample(site)
        and not site["is_observed"]
        and not site["infer"].get("is_noise", False)
        and not site["infer"].get("is_auxiliary", False)
        and not site["infer"].get("_deterministic", False)
        and not site["cond_indep_stack"]
    )


@dataclass
class CircuitProgram:
    """A circuit model with its parameter and statistic sites resolved.

    Arguments:
        model: the Pyro program.
        params: parameter site names; default every global latent, non-noise sample site.
        args, kwargs: fixed arguments the model is called with.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> program = CircuitProgram(LDS2D())
        >>> program.params, program.statistics
        (['a11', 'a12', 'a21', 'a22'], ['real_lambda', 'imag_lambda'])
        >>> stats = program.simulate({k: torch.zeros(5) for k in program.params})
        >>> stats["real_lambda"].shape
        torch.Size([5])
    """

    model: Callable
    params: Sequence[str] | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise TypeError(f"model must be a callable Pyro program, got {type(self.model)!r}")
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(self.model).get_trace(*self.args, **self.kwargs)
        candidates = {n: s for n, s in trace.nodes.items() if _is_parameter_candidate(s)}
        if self.params is None:
            self.params = list(candidates)
        else:
            self.params = list(self.params)
            unknown = [p for p in self.params if p not in candidates]
            if unknown:
                raise ValueError(
                    f"params {unknown} are not global latent sample sites of the model; "
                    f"candidates are {sorted(candidates)}"
                )
        if not self.params:
            raise ValueError("the model has no circuit-parameter sites (global pyro.sample sites)")
        for name in self.params:
            fn = candidates[name]["fn"]
            if fn.batch_shape != torch.Size():
                raise ValueError(
                    f"parameter site {name!r} has batch shape {tuple(fn.batch_shape)}; declare "
                    "vector parameters with .to_event() so their dimensions are event dimensions"
                )
        self.priors: dict[str, dist.Distribution] = {n: candidates[n]["fn"] for n in self.params}
        self.statistics: list[str] = [
            n
            for n, s in trace.nodes.items()
            if s["type"] == "sample" and s["infer"].get("_deterministic")
        ]
        self.statistic_shapes = {n: trace.nodes[n]["value"].shape for n in self.statistics}
        self.statistic_dtypes = {
            n: torch.as_tensor(trace.nodes[n]["value"]).dtype for n in self.statistics
        }
        self.param_shapes = {n: self.priors[n].event_shape for n in self.params}
        self.plate_nesting = max(
            (len(s["cond_indep_stack"]) for s in trace.nodes.values() if s["type"] == "sample"),
            default=0,
        )

    def on(self, device: torch.device) -> CircuitProgram:
        """This program resolved again on ``device``: its model traced under
        ``with torch.device(device)`` (so its priors live there), its tensor arguments moved and
        a model that is a ``torch.nn.Module`` copied and moved; on the CPU, this program itself.

        Example:
            >>> def model():
            ...     pyro.deterministic("f", pyro.sample("x", dist.Uniform(0.0, 1.0)))
            >>> program = CircuitProgram(model)
            >>> program.on(torch.device("cpu")) is program
            True
        """
        if device.type == "cpu":
            return self
        with on_device(device), torch.no_grad():
            parts = (self.model, self.params, self.args, self.kwargs)
            return CircuitProgram(*to_device(parts, device))

    def require_statistics(self) -> None:
        """Raise a clear error when the model declares no ``pyro.deterministic`` statistics."""
        if not self.statistics:
            raise ValueError(
                "the model has no statistic sites; declare emergent-property statistics with "
                "pyro.deterministic('name', value)"
            )

    def trace(self, values: dict[str, torch.Tensor]) -> poutine.Trace:
        """Run the model once for a batch of ``n`` parameter draws (values shaped ``(n, *event)``)."""
        n = self._batch_size(values)
        lead = (1,) * self.plate_nesting
        shaped = {k: v.reshape((n, *lead, *self.param_shapes[k])) for k, v in values.items()}
        with _PYRO_STACK_LOCK, pyro.plate("particles", n, dim=-(self.plate_nesting + 1)):
            return poutine.trace(poutine.condition(self.model, data=shaped)).get_trace(
                *self.args, **self.kwargs
            )

    def simulate(
        self, values: dict[str, torch.Tensor], *, check: bool = True, chunk: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Statistic values ``{name: (n, *shape)}`` for a batch of parameter draws.

        With ``check=True`` a NaN or inf statistic raises :class:`SimulationError` naming the
        parameter values that produced it. ``chunk`` caps the draws per run of the model: a
        simulator's memory grows with its batch (noise drawn up front for every step and
        trial), so a large batch runs in pieces; by default it runs at once.

        Example:
            >>> def model():
            ...     pyro.deterministic("f", 2 * pyro.sample("x", dist.Uniform(0.0, 1.0)))
            >>> program = CircuitProgram(model)
            >>> program.simulate({"x": torch.tensor([0.1, 0.2, 0.3])}, chunk=2)["f"]
            tensor([0.2000, 0.4000, 0.6000])
        """
        n = self._batch_size(values)
        chunk = n if chunk is None else positive_int("chunk", chunk)
        if n > chunk:
            parts = [
                self.simulate({k: v[start : start + chunk] for k, v in values.items()}, check=check)
                for start in range(0, n, chunk)
            ]
            return {name: torch.cat([part[name] for part in parts]) for name in self.statistics}
        trace = self.trace(values)
        found = {name: trace.nodes[name]["value"] for name in self.statistics}
        return self.collect_statistics(found, values, check=check)

    def collect_statistics(
        self, found: dict[str, torch.Tensor], values: dict[str, torch.Tensor], *, check: bool = True
    ) -> dict[str, torch.Tensor]:
        """The statistic sites' values ``found`` in one run of the model on ``values``, each as
        ``(n, *shape)``; with ``check=True`` a NaN or inf raises :class:`SimulationError`."""
        n = self._batch_size(values)
        stats = {}
        for name in self.statistics:
            value = found[name]
            shape = self.statistic_shapes[name]
            if value.numel() != n * shape.numel():
                raise ValueError(
                    f"statistic {name!r} has shape {tuple(value.shape)} for {n} particles; expected "
                    f"{n} x {tuple(shape)}: the model must broadcast over a leading particle dimension"
                )
            stats[name] = value.reshape(n, *shape)
        if check:
            self._check_finite(values, stats)
        return stats

    def _batch_size(self, values: dict[str, torch.Tensor]) -> int:
        missing = [p for p in self.params if p not in values]
        if missing:
            raise ValueError(f"values are missing parameter sites {missing}")
        sizes = {v.shape[0] for v in values.values()}
        if len(sizes) != 1:
            raise ValueError(f"parameter values disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()

    def _check_finite(
        self, values: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]
    ) -> None:
        bad = torch.zeros(
            next(iter(values.values())).shape[0], dtype=torch.bool, device=self._device(values)
        )
        for value in stats.values():
            bad |= ~torch.isfinite(value.detach().reshape(value.shape[0], -1)).all(-1)
        if bad.any():
            index = bad.nonzero()[:3, 0].tolist()
            shown = {k: v.detach()[index].tolist() for k, v in values.items()}
            raise SimulationError(
                f"the simulator returned NaN/inf for {int(bad.sum())} of {bad.numel()} parameter "
                f"draws; first offending parameter values: {shown}"
            )

    @staticmethod
    def _device(values: dict[str, torch.Tensor]) -> torch.device:
        return next(iter(values.values())).device

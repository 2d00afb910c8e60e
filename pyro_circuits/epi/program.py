"""EPI's simulator call made cheap: a model run under one light messenger instead of a full trace."""

from __future__ import annotations

import pyro
import torch
from pyro.poutine.messenger import Messenger

from pyro_circuits.sites import _PYRO_STACK_LOCK, CircuitProgram

__all__ = ["StatisticsRun"]


class _Statistics(Messenger):
    """Puts parameter values at their sites and keeps the statistic sites' values.

    A parameter site gets its value as an observed site, marked done: Pyro's default sampling
    and the plate's broadcasting of its prior (neither of which would change the value) are
    skipped, and so is the broadcasting of a statistic site's ``Delta``. A statistic site
    (``pyro.deterministic``) is kept by name with the value the handlers outside leave it, as a
    trace keeps it. Every other message (noise, other latent sites, perturbation points) passes
    untouched to the handlers outside, as under ``poutine.trace(poutine.condition(model, data))``.
    """

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values
        self.stats: dict[str, torch.Tensor] = {}
        self.seen: set[str] = set()

    def _pyro_sample(self, msg) -> None:
        if msg["name"] in self.values:
            msg["value"], msg["is_observed"] = self.values[msg["name"]], True
            msg["done"] = True
        elif msg["infer"].get("_deterministic"):
            msg["done"] = True

    def _pyro_post_sample(self, msg) -> None:
        name = msg["name"]
        if name in self.seen:  # as a trace refuses it
            raise RuntimeError(f"Multiple sample sites named '{name}'")
        self.seen.add(name)
        if msg["infer"].get("_deterministic"):
            self.stats[name] = msg["value"]


class StatisticsRun:
    """A :class:`~pyro_circuits.sites.CircuitProgram`'s :meth:`simulate` without building a trace.

    The model runs under ``pyro.plate("particles", n)`` as before, with one messenger in place of
    ``poutine.trace(poutine.condition(...))``: the same values reach the model, noise is drawn by
    the same Pyro machinery in the same order (so the statistics, their gradients and the random
    stream are those of the traced program), and handlers around the call, such as
    :func:`~pyro_circuits.handlers.perturb.optogenetic`, act as before. Sites are matched by name
    on every call, so a model whose sites change from call to call runs as it would traced; a
    statistic site the call did not reach is an error naming it.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> program = CircuitProgram(LDS2D())
        >>> values = {k: torch.full((3,), 1.0) for k in program.params}
        >>> StatisticsRun(program).simulate(values)["real_lambda"]
        tensor([2., 2., 2.])
    """

    def __init__(self, program: CircuitProgram) -> None:
        if not isinstance(program, CircuitProgram):
            raise TypeError(f"program must be a CircuitProgram, got {type(program).__name__}")
        self.program = program

    def simulate(
        self, values: dict[str, torch.Tensor], *, check: bool = True
    ) -> dict[str, torch.Tensor]:
        """Statistic values ``{name: (n, *shape)}``, as :meth:`CircuitProgram.simulate` gives."""
        program = self.program
        n = program._batch_size(values)  # checks the draws before any work
        lead = (1,) * program.plate_nesting
        shaped = {k: v.reshape((n, *lead, *program.param_shapes[k])) for k, v in values.items()}
        run = _Statistics(shaped)
        with _PYRO_STACK_LOCK, pyro.plate("particles", n, dim=-(program.plate_nesting + 1)), run:
            program.model(*program.args, **program.kwargs)
        missing = [s for s in program.statistics if s not in run.stats]
        if missing:
            raise ValueError(f"the model did not reach its statistic sites {missing} in this run")
        return program.collect_statistics(run.stats, values, check=check)

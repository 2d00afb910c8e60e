"""Whether an emergent property is within reach: each statistic's range over prior and
initialisation draws, checked against the targets before EPI optimises."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from pyro_circuits.checks import positive_int, seed_int
from pyro_circuits.property import EmergentProperty
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = ["AttainableRange", "UnreachablePropertyWarning", "attainable_ranges", "warn_unreachable"]


class UnreachablePropertyWarning(UserWarning):
    """A target mean outside the range a statistic took over prior and initialisation draws, or
    a target variance larger than any distribution over that range can have with that mean."""


@dataclass(frozen=True)
class AttainableRange:
    """The range [low, high] one statistic took over the draws, against its target μ, σ².

    ``max_variance`` is the Bhatia–Davis bound (μ − low)(high − μ): the largest variance of any
    distribution on [low, high] with mean μ (negative when μ lies outside).
    """

    statistic: str
    low: float
    high: float
    mean: float
    variance: float
    draws: int

    @property
    def max_variance(self) -> float:
        return (self.mean - self.low) * (self.high - self.mean)

    @property
    def problem(self) -> str | None:
        """Why the target looks unreachable, else None."""
        seen = (
            f"[{self.low:.4g}, {self.high:.4g}], the range it took over {self.draws} prior and "
            "initialisation draws"
        )
        if not self.low <= self.mean <= self.high:
            return f"the target mean of {self.statistic} ({self.mean:.4g}) lies outside {seen}"
        if self.variance > self.max_variance:
            return (
                f"the target variance of {self.statistic} ({self.variance:.4g}) exceeds "
                f"{self.max_variance:.4g}, the largest variance a distribution with mean "
                f"{self.mean:.4g} can have on {seen}"
            )
        return None


@torch.no_grad()
def attainable_ranges(
    program: CircuitProgram,
    prop: EmergentProperty,
    init: Normal | None = None,
    n: int = 1000,
    seed: int = 0,
) -> list[AttainableRange]:
    """Each statistic's range over ``n`` prior draws and, with ``init`` (a Normal over the flat
    parameters), ``n`` draws of it that fall inside the supports; one entry per constraint mean
    in the property's order. Non-finite statistics are left out. The global random state is
    left as it was.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> ranges = attainable_ranges(CircuitProgram(LDS2D()), LDS2D.oscillation(), n=200)
        >>> [r.statistic for r in ranges], ranges[1].low >= 0
        (['real_lambda', 'imag_lambda'], True)
    """
    n, seed = positive_int("n", n), seed_int("seed", seed)
    prop.validate(program.statistic_shapes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = [{name: program.priors[name].sample((n,)) for name in program.params}]
        if init is not None:
            space = ParameterSpace(program.priors)
            theta = init.sample((n,))
            low, high = space.bounds()
            inside = ((theta > low) & (theta < high)).all(-1)
            if inside.any():
                draws.append(space.split(theta[inside]))
        flat = torch.cat([prop.flatten(program.simulate(d, check=False)) for d in draws])
    names = [name[2:-1] for name in prop.constraint_names[: flat.shape[1]]]
    ranges = []
    for j, name in enumerate(names):
        values = flat[:, j][torch.isfinite(flat[:, j])]
        low, high = (values.min().item(), values.max().item()) if len(values) else (0.0, -1.0)
        mean, variance = prop.mean_vector[j].item(), prop.variance_vector[j].item()
        ranges.append(AttainableRange(name, low, high, mean, variance, len(flat)))
    return ranges


def warn_unreachable(
    program: CircuitProgram,
    prop: EmergentProperty,
    init: Normal | None = None,
    n: int = 1000,
    seed: int = 0,
) -> list[AttainableRange]:
    """:func:`attainable_ranges`, with an :class:`UnreachablePropertyWarning` naming each
    statistic whose target looks out of reach; returns the ranges that do.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> prop = EmergentProperty({"imag_lambda": 20.0}, {"imag_lambda": 1.0})
        >>> with warnings.catch_warnings(record=True):
        ...     [r.statistic for r in warn_unreachable(CircuitProgram(LDS2D()), prop, n=200)]
        ['imag_lambda']
    """
    flagged = [r for r in attainable_ranges(program, prop, init, n, seed) if r.problem]
    for r in flagged:
        warnings.warn(
            f"EPI: {r.problem}; the property may be unreachable with these parameter supports",
            UnreachablePropertyWarning,
            stacklevel=3,
        )
    return flagged

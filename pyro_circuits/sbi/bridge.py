"""The bridge to sbi: the prior and the simulator of a Pyro circuit model, and x₀ of a property.

The same model function that EPI fits runs under sbi (0.27, current names ``NPE_C`` and
``SMCABC``):

* :func:`sbi_prior` builds the prior from the parameter sites (``BoxUniform`` when every site
  is Uniform, otherwise the sites' own distributions through ``process_prior``);
* :class:`Simulator` runs the model vectorised over a particle plate without gradients and
  returns the statistic sites side by side as one vector per draw;
* the observation x₀ of an emergent property is its mean vector (as in Bittner et al. 2021).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch.distributions import Distribution, Independent, Uniform

from pyro_circuits.checks import name_in, positive_int, seed_int
from pyro_circuits.property import EmergentProperty, check_fit_arguments
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = ["Simulator", "check_keywords", "check_run", "observation", "prepare", "sbi_prior"]


def _is_uniform(prior: Distribution) -> bool:
    while isinstance(prior, Independent):
        prior = prior.base_dist
    return isinstance(prior, Uniform)


def sbi_prior(space: ParameterSpace) -> Distribution:
    """The sbi prior over the flat parameter vector of ``space``.

    Every site Uniform: ``BoxUniform(low, high)``. Otherwise each site's own prior (batch shape
    ``()``, event dimension ≤ 1) joined by sbi's ``MultipleIndependent`` and checked by
    ``process_prior``.

    Example:
        >>> import pyro.distributions as dist
        >>> space = ParameterSpace({"a": dist.Uniform(-1.0, 1.0), "b": dist.Normal(0.0, 1.0)})
        >>> prior = sbi_prior(space)
        >>> prior.sample((3,)).shape
        torch.Size([3, 2])
    """
    from sbi.utils import BoxUniform, MultipleIndependent
    from sbi.utils.user_input_checks import process_prior

    priors = [space.priors[name] for name in space.names]
    if all(_is_uniform(p) for p in priors):
        low, high = space.bounds()
        return BoxUniform(low, high)
    parts = []
    for name, prior in zip(space.names, priors, strict=True):
        if len(prior.event_shape) > 1:
            raise ValueError(
                f"parameter site {name!r} has event shape {tuple(prior.event_shape)}; sbi priors "
                "support scalar or vector sites only (declare it with .to_event(1))"
            )
        parts.append(prior.expand([1]).to_event(1) if not prior.event_shape else prior)
    prior, _, _ = process_prior(MultipleIndependent(parts, validate_args=False))
    return prior


def observation(prop: EmergentProperty) -> torch.Tensor:
    """x₀ for an emergent property: its flat mean vector, shape ``(1, k)``."""
    if not isinstance(prop, EmergentProperty):
        raise TypeError(f"prop must be an EmergentProperty, got {type(prop).__name__}")
    return prop.mean_vector.reshape(1, -1)


class Simulator:
    """θ batch ``(n, D)`` (tensor or numpy) → statistics ``(n, k)``, without gradients.

    Picklable (it holds the model, not a trace), so joblib can ship it to workers.

    Arguments:
        program: the resolved model.
        statistics: statistic sites, concatenated in this order; default all of the model's.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> simulator = Simulator(CircuitProgram(LDS2D()))
        >>> simulator(torch.zeros(5, 4)).shape
        torch.Size([5, 2])
    """

    def __init__(self, program: CircuitProgram, statistics: Sequence[str] | None = None) -> None:
        program.require_statistics()
        self.program = program
        self.space = ParameterSpace(program.priors)
        self.statistics = list(statistics or program.statistics)
        unknown = [s for s in self.statistics if s not in program.statistic_shapes]
        if unknown:
            raise ValueError(
                f"statistics {unknown} are not statistic sites of the model; it declares "
                f"{program.statistics}"
            )

    @torch.no_grad()
    def __call__(self, theta) -> torch.Tensor:
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
        stats = self.program.simulate(self.space.split(theta.reshape(-1, self.space.dim)))
        return torch.cat([stats[s].reshape(theta.shape[0], -1) for s in self.statistics], dim=-1)


def check_run(model, prop, params, model_args, model_kwargs, **common) -> None:
    """The checks NPE and SMC-ABC share, before any work: the model and property arguments,
    and ``num_workers``, ``simulation_batch_size`` (positive integers), ``seed``, ``progress``."""
    check_fit_arguments(model, prop, params, model_args, model_kwargs)
    positive_int("num_workers", common["num_workers"])
    positive_int("simulation_batch_size", common["simulation_batch_size"])
    seed_int("seed", common["seed"])
    if not isinstance(common["progress"], bool):
        raise TypeError(f"progress must be True or False, got {common['progress']!r}")


def check_keywords(name: str, kwargs, function) -> dict:
    """``kwargs`` (a dict or None) whose keys are all parameters of ``function``."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise TypeError(f"{name} must be a dict of keyword arguments, got {kwargs!r}")
    signature = inspect.signature(function)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return dict(kwargs)
    known = [k for k in signature.parameters if k != "self"]
    for key in kwargs:
        name_in(f"{name} key", key, known)
    return dict(kwargs)


def prepare(model, prop, params, model_args, model_kwargs):
    """The resolved program, its simulator of the property's statistics, and x₀."""
    program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
    program.require_statistics()
    x0 = observation(prop)
    prop.validate(program.statistic_shapes)
    simulator = Simulator(program, prop.names)
    return program, simulator, x0

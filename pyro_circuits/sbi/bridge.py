"""The bridge to sbi: the prior and the simulator of a Pyro circuit model, and x₀ of a property.

The same model function that EPI fits runs under sbi (0.27, current names ``NPE_C`` and
``SMCABC``):

* :func:`sbi_prior` builds the prior from the parameter sites (``BoxUniform`` when every site
  is Uniform, otherwise the sites' own distributions through ``process_prior``);
* :class:`Simulator` runs the model vectorised over a particle plate without gradients and
  returns the statistic sites side by side as one vector per draw;
* :func:`simulate` runs a simulator over parameter draws in fixed-size chunks, each with its
  own seed, on any ``concurrent.futures.Executor`` (:mod:`pyro_circuits.parallel`), so the
  simulations are identical whatever the executor and its number of workers;
  :class:`SeededSimulator` does the same for a simulator that sbi calls itself (SMC-ABC);
* the observation x₀ of an emergent property is its mean vector (as in Bittner et al. 2021).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from concurrent.futures import Executor
from functools import partial

import torch
from torch.distributions import Distribution, Independent, Uniform

from pyro_circuits.checks import name_in, on_device, positive_int, seed_int, torch_device
from pyro_circuits.parallel import check_executor, check_picklable, chunk_seed, parallel_map, seeded
from pyro_circuits.property import EmergentProperty, check_fit_arguments
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

#: The default device of the simulations and of sbi.
CPU = torch.device("cpu")

__all__ = [
    "SeededSimulator",
    "Simulator",
    "check_keywords",
    "check_run",
    "observation",
    "prepare",
    "sbi_prior",
    "simulate",
]


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

    Picklable (it holds the model, not a trace), so an executor can ship it to workers.

    It simulates on ``device``: the parameters are moved there and the model runs under
    ``with torch.device(device)``, resolved there once (its tensor arguments moved, a model
    that is a ``torch.nn.Module`` copied and moved); the statistics are returned on ``device``.

    Arguments:
        program: the resolved model.
        statistics: statistic sites, concatenated in this order; default all of the model's.
        device: where the simulations run (default the CPU).

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> simulator = Simulator(CircuitProgram(LDS2D()))
        >>> simulator(torch.zeros(5, 4)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        program: CircuitProgram,
        statistics: Sequence[str] | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        program.require_statistics()
        self.device = torch_device("device", device)
        self.program = program.on(self.device)
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
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype()).to(self.device)
        with on_device(self.device):
            stats = self.program.simulate(self.space.split(theta.reshape(-1, self.space.dim)))
        return torch.cat([stats[s].reshape(theta.shape[0], -1) for s in self.statistics], dim=-1)


def _simulate_chunk(simulator: Simulator, task: tuple[int, torch.Tensor]) -> torch.Tensor:
    """One chunk's simulations under its own seed (a picklable piece of work)."""
    seed, theta = task
    return seeded(simulator, seed, theta)


def simulate(
    simulator: Simulator,
    theta: torch.Tensor,
    *,
    seed: int,
    stream: tuple[int, ...] = (),
    chunk_size: int = 1000,
    executor: Executor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """The simulations of ``theta`` ``(n, D)``: chunks of ``chunk_size`` rows, chunk ``i``
    simulated with torch's generator seeded from ``(seed, *stream, i)`` on ``executor``
    (``None``: here), concatenated in order. Identical for every executor and worker count;
    a worker that dies is a :class:`~pyro_circuits.parallel.WorkerLost`. The chunks go out on
    the simulator's device and the simulations come back on ``theta``'s.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> simulator = Simulator(CircuitProgram(LDS2D()))
        >>> simulate(simulator, torch.zeros(5, 4), seed=0, chunk_size=2).shape
        torch.Size([5, 2])
    """
    theta = torch.as_tensor(theta)
    chunk_size = positive_int("chunk_size", chunk_size)
    chunks = torch.split(theta.to(simulator.device), chunk_size)
    tasks = [(chunk_seed(seed, *stream, i), chunk) for i, chunk in enumerate(chunks)]
    desc = f"{len(theta)} simulations"
    parts = parallel_map(
        partial(_simulate_chunk, simulator), tasks, executor=executor, desc=desc, progress=progress
    )
    return torch.cat(parts).to(theta.device)


class SeededSimulator:
    """A simulator for sbi to call (SMC-ABC draws its own parameters): call ``k`` runs
    :func:`simulate` with the stream ``(k,)``, so every call has its own deterministic seeds.

    Example:
        >>> from pyro_circuits.models import Rank2RNN  # a model with simulator noise
        >>> simulator = SeededSimulator(Simulator(CircuitProgram(Rank2RNN(2))), seed=0)
        >>> first, second = simulator(torch.zeros(3, 8)), simulator(torch.zeros(3, 8))
        >>> simulator.calls, bool((first == second).all())
        (2, False)
    """

    def __init__(
        self,
        simulator: Simulator,
        *,
        seed: int,
        chunk_size: int = 1000,
        executor: Executor | None = None,
        progress: bool = False,
    ) -> None:
        self.simulator, self.seed, self.chunk_size = simulator, seed, chunk_size
        self.executor, self.progress, self.calls = executor, progress, 0

    def __call__(self, theta) -> torch.Tensor:
        self.calls += 1
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
        return simulate(
            self.simulator,
            theta,
            seed=self.seed,
            stream=(self.calls,),
            chunk_size=self.chunk_size,
            executor=self.executor,
            progress=self.progress,
        )


def check_run(model, prop, params, model_args, model_kwargs, **common) -> None:
    """The checks NPE and SMC-ABC share, before any work: the model and property arguments,
    ``executor`` (None or a ``concurrent.futures.Executor``), ``simulation_batch_size`` (a
    positive integer), ``seed``, ``progress``."""
    check_fit_arguments(model, prop, params, model_args, model_kwargs)
    check_executor(common["executor"])
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


def prepare(
    model,
    prop,
    params,
    model_args,
    model_kwargs,
    executor: Executor | None = None,
    device: torch.device = CPU,
):
    """The resolved program (on the CPU), its simulator of the property's statistics, and x₀;
    a TypeError when ``executor`` is given and the simulator (the model) cannot be sent to its
    workers. The simulator runs on ``device`` without an executor; an executor's workers
    simulate on the CPU (chunks go to them as CPU tensors and come back to ``device``)."""
    program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
    program.require_statistics()
    x0 = observation(prop)
    prop.validate(program.statistic_shapes)
    simulator = Simulator(program, prop.names, device=device if executor is None else CPU)
    check_picklable("the model", simulator, executor)
    return program, simulator, x0

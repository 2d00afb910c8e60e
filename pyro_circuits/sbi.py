"""The bridge to sbi: prior and simulator from a Pyro circuit model; NPE and SMC-ABC runners.

The same model function that EPI fits runs under sbi (0.27, current names ``NPE_C`` and
``SMCABC``):

* :func:`sbi_prior` builds the prior from the parameter sites (``BoxUniform`` when every site
  is Uniform, otherwise the sites' own distributions through ``process_prior``);
* :class:`Simulator` runs the model vectorised over a particle plate without gradients and
  returns the statistic sites side by side as one vector per draw;
* the observation x₀ of an emergent property is its mean vector (as in Bittner et al. 2021).

Simulations may run in parallel with ``num_workers`` (joblib, as sbi does); the joblib backend
is the caller's choice, e.g. ``with joblib.parallel_config(backend="threading"): NPE(...)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

import arviz as az
import pandas as pd
import pyro
import torch
from torch.distributions import Distribution, Independent, Uniform

from pyro_circuits.checks import positive_int
from pyro_circuits.diagnostics import inference_data, predictive_distance
from pyro_circuits.epi.property import EmergentProperty
from pyro_circuits.results import InferenceResult
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = [
    "NPE",
    "NPEResult",
    "SMCABC",
    "SMCABCResult",
    "SMCABCStalled",
    "Simulator",
    "observation",
    "sbi_prior",
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


def _setup(model, prop, params, model_args, model_kwargs):
    program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
    program.require_statistics()
    x0 = observation(prop)
    prop.validate(program.statistic_shapes)
    simulator = Simulator(program, prop.names)
    return program, simulator, x0


@dataclass
class SBIResult(InferenceResult):
    """Common part of the sbi results: parameter draws, predictive, InferenceData.

    Attributes:
        history: one row per round (NPE) or population (SMC-ABC): ``simulations`` used so far,
            ``wall_time`` so far, and ``distance`` = ‖mean statistics − x₀‖₂ (NPE: of posterior
            predictive draws; SMC-ABC: of the population's accepted simulations).
    """

    program: CircuitProgram
    prop: EmergentProperty
    wall_time: float
    simulations: int
    seed: int
    history: pd.DataFrame
    settings: dict

    @property
    def space(self) -> ParameterSpace:
        return ParameterSpace(self.program.priors)

    def _flat_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` parameter draws ``{site: (n, *shape)}``; a ``seed`` makes them reproducible."""
        if seed is not None:
            torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(
            int(torch.randint(2**31, ()).item()) if seed is None else seed
        )
        return self.space.split(self._flat_sample(n, generator))

    def _sample_stats(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float | None:
        """Monte-Carlo entropy −E[log q] in nats where the method has a density, else None."""
        return None

    def to_inference_data(self, n: int = 2000, seed: int | None = 0) -> az.InferenceData:
        draws = self.sample(n, seed)
        with torch.no_grad():
            stats = self.program.simulate(draws)
        return inference_data(
            draws,
            predictive={k: stats[k] for k in self.prop.names},
            sample_stats=self._sample_stats(draws),
            prop=self.prop,
            attrs={
                "method": self.method,
                "wall_time": self.wall_time,
                "simulations": self.simulations,
                "entropy": self.entropy(seed=seed),
                "seed": self.seed,
            },
        )


@dataclass
class NPEResult(SBIResult):
    """The NPE posterior p(θ | x₀) (sbi ``DirectPosterior``) with its training record."""

    posterior: object = None
    x0: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    max_sampling_time: float | None = 600.0
    method = "npe"

    def _flat_sample(self, n, generator):
        torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))
        return self.posterior.sample(
            (n,), x=self.x0, show_progress_bars=False, max_sampling_time=self.max_sampling_time
        )

    @torch.no_grad()
    def log_prob(self, z) -> torch.Tensor:
        """log p(θ | x₀) for draws ``{site: (n, *shape)}`` or a flat ``(n, D)`` tensor."""
        flat = (
            self.space.join(z)
            if isinstance(z, dict)
            else torch.as_tensor(z).reshape(-1, self.space.dim)
        )
        return self.posterior.log_prob(
            flat.float(), x=self.x0, leakage_correction_params={"num_rejection_samples": 2000}
        )

    def _sample_stats(self, draws):
        return {"log_q": self.log_prob(draws)}

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float:
        return -self.log_prob(self.sample(n, seed)).mean().item()


@dataclass
class SMCABCResult(SBIResult):
    """The last SMC-ABC population: weighted particles; :meth:`sample` resamples by weight."""

    particles: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    log_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    epsilon: float = math.inf
    method = "smcabc"

    def _flat_sample(self, n, generator):
        index = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        return self.particles[index]


class SMCABCStalled(RuntimeError):
    """SMC-ABC cannot fill a population: its perturbation kernel almost never lands inside the
    prior's support (as in high dimension, where the chance is a product over coordinates).

    Attributes: ``acceptance`` (the fraction of kernel draws inside the support),
    ``kernel_draws``, ``population`` (the one being filled), ``simulations`` (used so far).
    """

    def __init__(self, acceptance: float, kernel_draws: int, population: int, simulations: int):
        self.acceptance, self.kernel_draws = acceptance, kernel_draws
        self.population, self.simulations = population, simulations
        super().__init__(
            f"SMC-ABC stalled in population {population} after {simulations} simulations: "
            f"only {round(acceptance * kernel_draws):,} of {kernel_draws:,} perturbation-kernel "
            "draws fell inside the prior's support. Lower kernel_variance_scale, or use NPE or EPI"
        )


@cache
def _guarded_smcabc():
    """sbi's ``SMCABC`` whose kernel-perturbation loop stops when it cannot fill a population.

    sbi redraws perturbed particles until enough fall inside the prior's support, with no limit;
    here, once ``10 / min_kernel_acceptance`` draws were made for one batch, a fraction inside
    below ``min_kernel_acceptance`` raises :class:`SMCABCStalled`. Draws come in batches of at
    least the population size (sbi draws just the number still missing, which at a low fraction
    inside becomes a long loop of tiny batches); the first accepted ones are kept.
    """
    from sbi.inference import SMCABC as _SMCABC
    from sbi.utils.sbiutils import within_support

    class GuardedSMCABC(_SMCABC):
        min_kernel_acceptance = 0.0
        populations = 0

        def _sample_next_population(self, *args, **kwargs):
            self.populations += 1
            return super()._sample_next_population(*args, **kwargs)

        def _sample_and_perturb(self, particles, weights, num_samples=1):
            kept, accepted, drawn = [], 0, 0
            while accepted < num_samples:
                parents = self.sample_from_population_with_weights(
                    particles, weights, num_samples=max(num_samples - accepted, len(particles))
                )
                perturbed = self._get_new_kernel(parents).sample()
                inside = within_support(self.prior, perturbed)
                kept.append(perturbed[inside])
                accepted, drawn = accepted + int(inside.sum()), drawn + len(perturbed)
                floor, fraction = self.min_kernel_acceptance, accepted / drawn
                if accepted < num_samples and drawn * floor >= 10 and fraction < floor:
                    raise SMCABCStalled(fraction, drawn, self.populations, self.simulation_counter)
            return torch.cat(kept)[:num_samples]

    return GuardedSMCABC


@contextmanager
def _populations(records: list):
    """Collect (population, epsilon, simulations, time) from SMCABC's log records."""

    class Handler(logging.Handler):
        def emit(self, record):
            if record.msg.startswith("population=") and record.args:
                args = record.args
                sims = args[3] if len(args) == 4 else args[2]
                records.append((int(args[0]), float(args[1]), int(sims), record.created))

    logger = logging.getLogger("sbi.inference.abc.abc_base")
    handler, level, propagate = Handler(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class _NoTracker:
    """sbi training tracker that records nothing (sbi's default writes ``sbi-logs/``)."""

    log_dir = None

    def log_metric(self, name, value, step=None) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_params(self, params) -> None:
        pass

    def add_figure(self, name, figure, step=None) -> None:
        pass

    def flush(self) -> None:
        pass


def NPE(
    model: Callable,
    prop: EmergentProperty,
    *,
    params: Sequence[str] | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    simulations: int = 1000,
    rounds: int = 1,
    density_estimator: str | Callable = "zuko_maf",
    estimator_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    stop_distance: float | None = None,
    check_samples: int = 1000,
    num_workers: int = 1,
    simulation_batch_size: int = 1000,
    tracker=None,
    seed: int = 0,
    progress: bool = True,
) -> NPEResult:
    """Neural posterior estimation (sbi ``NPE_C``) of p(θ | x₀) with x₀ the property mean.

    Each round draws ``simulations`` parameter sets from the proposal (the prior in round 1,
    then the current posterior at x₀: sequential NPE with the atomic loss), simulates them and
    trains. After each round ``check_samples`` posterior draws are simulated to record the
    predictive distance ‖E[f] − x₀‖₂ in ``history`` (these checks are not counted in
    ``simulations``); with ``stop_distance`` the rounds stop once it is below that value.

    Arguments:
        model, prop, params, model_args, model_kwargs: the circuit model and its property.
        simulations: simulations per round.
        rounds: maximum number of rounds.
        density_estimator: an sbi estimator name (``"zuko_maf"``, ``"zuko_nsf"``, ``"maf"``,
            ``"nsf"``, ``"mdn"``, …) or a builder callable.
        estimator_kwargs: keywords of ``sbi.neural_nets.posterior_nn`` for a named estimator
            (e.g. ``hidden_features=50, num_transforms=3``). Zuko flows default to
            ``z_score_theta="transform_to_unconstrained"`` (a map onto the prior support).
        train_kwargs: keywords of ``NPE_C.train`` (e.g. ``max_num_epochs``).
        num_workers, simulation_batch_size: passed to ``simulate_for_sbi`` (joblib).
        tracker: an sbi training tracker (e.g. ``sbi.utils.tracking.TensorBoardTracker``);
            default none, so nothing is written to disk.
        seed: random seed.
        progress: show sbi's progress bars.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> result = NPE(LDS2D(), LDS2D.oscillation(), simulations=200, check_samples=0,
        ...              train_kwargs={"max_num_epochs": 2}, progress=False)
        >>> result.sample(4)["a11"].shape, result.simulations
        (torch.Size([4]), 200)
    """
    from sbi.inference import NPE_C, simulate_for_sbi
    from sbi.neural_nets import posterior_nn

    simulations = positive_int("simulations", simulations)
    rounds = positive_int("rounds", rounds)
    program, simulator, x0 = _setup(model, prop, params, model_args, model_kwargs)
    prior = sbi_prior(simulator.space)
    if isinstance(density_estimator, str):
        defaults = {}
        if density_estimator.startswith("zuko_"):
            # The paper's "support map": the flow lives in unconstrained space, so no
            # posterior mass leaks outside the prior support (leakage stalls multi-round NPE).
            defaults = {"z_score_theta": "transform_to_unconstrained", "x_dist": prior}
        estimator = posterior_nn(density_estimator, **{**defaults, **(estimator_kwargs or {})})
    elif callable(density_estimator):
        estimator = density_estimator
    else:
        raise TypeError(
            f"density_estimator must be a name or a callable, got {density_estimator!r}"
        )
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    inference = NPE_C(
        prior=prior,
        density_estimator=estimator,
        show_progress_bars=progress,
        tracker=tracker or _NoTracker(),
    )
    proposal, rows, used = prior, [], 0
    for round_ in range(1, rounds + 1):
        theta, x = simulate_for_sbi(
            simulator,
            proposal,
            simulations,
            num_workers=num_workers,
            simulation_batch_size=simulation_batch_size,
            seed=seed + round_,
            show_progress_bar=progress,
        )
        used += simulations
        trained = inference.append_simulations(theta, x, proposal=proposal).train(
            **{"show_train_summary": False, **(train_kwargs or {})}
        )
        posterior = inference.build_posterior(trained)
        posterior.set_default_x(x0)
        proposal = posterior
        distance = math.nan
        if check_samples:
            with torch.no_grad():
                draws = posterior.sample(
                    (check_samples,), x=x0, show_progress_bars=False, max_sampling_time=600.0
                )
                distance = predictive_distance(simulator(draws), prop)
        rows.append(
            {
                "round": round_,
                "simulations": used,
                "wall_time": time.perf_counter() - start,
                "distance": distance,
            }
        )
        if stop_distance is not None and distance < stop_distance:
            break
    return NPEResult(
        program=program,
        prop=prop,
        wall_time=time.perf_counter() - start,
        simulations=used,
        seed=seed,
        history=pd.DataFrame(rows),
        settings={
            "simulations": simulations,
            "rounds": rounds,
            "density_estimator": str(density_estimator),
            "estimator_kwargs": dict(estimator_kwargs or {}),
            "train_kwargs": dict(train_kwargs or {}),
        },
        posterior=posterior,
        x0=x0,
    )


def SMCABC(
    model: Callable,
    prop: EmergentProperty,
    *,
    params: Sequence[str] | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    simulations: int = 10_000,
    particles: int | None = None,
    initial_population: int | None = None,
    epsilon_decay: float = 0.5,
    distance_based_decay: bool = True,
    kernel_variance_scale: float = 1.0,
    min_kernel_acceptance: float = 1e-5,
    num_workers: int = 1,
    simulation_batch_size: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> SMCABCResult:
    """Sequential Monte Carlo ABC (sbi ``SMCABC``, Beaumont et al. 2009) around x₀.

    Populations of ``particles`` are accepted at a shrinking threshold ε on the L2 distance
    to x₀ until ``simulations`` are spent. ε schedule: ε ← ``epsilon_decay``·ε, or with
    ``distance_based_decay`` the ``epsilon_decay`` quantile of the last population's
    distances. Requires bounded parameters (a uniform prior, as in the paper).

    Arguments:
        model, prop, params, model_args, model_kwargs: the circuit model and its property.
        simulations: the simulation budget.
        particles: population size; default ``min(1000, simulations // 20)`` (at least 10).
        initial_population: prior draws of population 0; default ``2 * particles``.
        epsilon_decay, distance_based_decay: the ε schedule.
        kernel_variance_scale: scale of the Gaussian perturbation kernel's covariance.
        min_kernel_acceptance: the smallest fraction of perturbed particles inside the prior's
            support that is waited for; below it :class:`SMCABCStalled` is raised (0: wait
            forever, as sbi does). In D dimensions the fraction shrinks like c^D: with a
            ``rank2_rnn(25)`` (D = 100) population none of 300,000 draws lands inside.
        num_workers, simulation_batch_size: joblib parallelism of the simulations.
        seed: random seed.
        progress: show sbi's progress bars.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> result = SMCABC(LDS2D(), LDS2D.oscillation(), simulations=600, particles=50,
        ...                 progress=False)
        >>> result.sample(4)["a11"].shape
        torch.Size([4])
    """
    simulations = positive_int("simulations", simulations)
    if particles is None:
        particles = min(1000, max(10, simulations // 20))
    particles = positive_int("particles", particles)
    initial_population = positive_int("initial_population", initial_population or 2 * particles)
    if initial_population < particles or simulations < initial_population:
        raise ValueError(
            f"need particles ({particles}) <= initial_population ({initial_population}) <= "
            f"simulations ({simulations})"
        )
    if not 0 < epsilon_decay < 1:
        raise ValueError(f"epsilon_decay must lie in (0, 1), got {epsilon_decay}")
    if not 0 <= min_kernel_acceptance < 1:
        raise ValueError(f"min_kernel_acceptance must lie in [0, 1), got {min_kernel_acceptance}")
    program, simulator, x0 = _setup(model, prop, params, model_args, model_kwargs)
    low, high = simulator.space.bounds()
    unbounded = [
        name
        for name, lo, hi in zip(simulator.space.coordinate_names, low, high, strict=True)
        if not (lo.isfinite() and hi.isfinite())
    ]
    if unbounded:
        raise ValueError(
            f"SMCABC needs bounded parameters (a Uniform prior); parameters {unbounded} are "
            "unbounded: give them a Uniform prior or use NPE"
        )
    pyro.set_rng_seed(seed)
    inference = _guarded_smcabc()(
        simulator,
        sbi_prior(simulator.space),
        num_workers=num_workers,
        simulation_batch_size=simulation_batch_size,
        show_progress_bars=progress,
    )
    inference.min_kernel_acceptance = min_kernel_acceptance
    records: list = []
    start = time.perf_counter()
    wall_start = time.time()
    with _populations(records):
        final, summary = inference(
            x0,
            num_particles=particles,
            num_initial_pop=initial_population,
            num_simulations=simulations,
            epsilon_decay=float(epsilon_decay),
            distance_based_decay=distance_based_decay,
            kernel_variance_scale=kernel_variance_scale,
            return_summary=True,
        )
    wall_time = time.perf_counter() - start
    rows = []
    for (population, epsilon, used, created), xs in zip(records, summary["xs"], strict=False):
        rows.append(
            {
                "population": population,
                "epsilon": epsilon,
                "simulations": used,
                "wall_time": created - wall_start,
                "distance": predictive_distance(xs, prop),
            }
        )
    return SMCABCResult(
        program=program,
        prop=prop,
        wall_time=wall_time,
        simulations=int(inference.simulation_counter),
        seed=seed,
        history=pd.DataFrame(rows),
        settings={
            "simulations": simulations,
            "particles": particles,
            "initial_population": initial_population,
            "epsilon_decay": epsilon_decay,
            "distance_based_decay": distance_based_decay,
            "kernel_variance_scale": kernel_variance_scale,
        },
        particles=final,
        log_weights=summary["weights"][-1],
        epsilon=float(summary["epsilons"][-1]),
    )

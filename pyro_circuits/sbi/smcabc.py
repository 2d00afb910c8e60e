"""Sequential Monte Carlo ABC (sbi ``SMCABC``) around x₀, with a guard against a stalled kernel."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from functools import cache

import pandas as pd
import pyro
import torch

from pyro_circuits.checks import positive_float, positive_int, probability, torch_device
from pyro_circuits.property import EmergentProperty, predictive_distance
from pyro_circuits.sbi.bridge import SeededSimulator, check_run, prepare, sbi_prior
from pyro_circuits.sbi.result import SMCABCResult
from pyro_circuits.threads import thread_count, torch_threads

__all__ = ["SMCABC", "SMCABCStalled", "silverman_scale"]


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


def _require_bounded(space) -> None:
    """A clear error unless every parameter coordinate has finite bounds."""
    low, high = space.bounds()
    unbounded = [
        name
        for name, lo, hi in zip(space.coordinate_names, low, high, strict=True)
        if not (lo.isfinite() and hi.isfinite())
    ]
    if unbounded:
        raise ValueError(
            f"SMCABC needs bounded parameters (a Uniform prior); parameters {unbounded} are "
            "unbounded: give them a Uniform prior or use NPE"
        )


def _history(records: list, summary: dict, wall_start: float, prop) -> pd.DataFrame:
    """One row per population: ε, simulations and time so far, and the distance of its
    accepted simulations' mean."""
    rows = [
        {
            "population": population,
            "epsilon": epsilon,
            "simulations": used,
            "wall_time": created - wall_start,
            "distance": predictive_distance(xs, prop),
        }
        for (population, epsilon, used, created), xs in zip(records, summary["xs"], strict=False)
    ]
    return pd.DataFrame(rows)


def silverman_scale(particles: int, dim: int) -> float:
    """pyABC's default perturbation-kernel scale: the square of Silverman's rule-of-thumb
    bandwidth, (4 / (n (d + 2)))^(1 / (d + 4)), for ``particles`` n in ``dim`` d dimensions.

    Example:
        >>> round(silverman_scale(1000, 8), 3)
        0.271
    """
    return (4 / (particles * (dim + 2))) ** (2 / (dim + 4))


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
    kernel_variance_scale: float | str = 1.0,
    min_kernel_acceptance: float = 1e-5,
    executor: Executor | None = None,
    simulation_batch_size: int = 1000,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = None,
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
        kernel_variance_scale: scale of the Gaussian perturbation kernel's covariance (sbi's
            kernel is the population's weighted covariance times this), or ``"silverman"``:
            pyABC's default, Silverman's bandwidth squared, (4 / (particles (D + 2)))^(2 / (D + 4))
            for D parameter dimensions (:func:`silverman_scale`).
        min_kernel_acceptance: the smallest fraction of perturbed particles inside the prior's
            support that is waited for; below it :class:`SMCABCStalled` is raised (0: wait
            forever, as sbi does). In D dimensions the fraction shrinks like c^D: with a
            ``rank2_rnn(25)`` (D = 100) population none of 300,000 draws lands inside.
        executor: where the simulations run: None (here) or any
            ``concurrent.futures.Executor`` (see ``NPE``); the model must then be picklable.
        simulation_batch_size: draws per chunk; chunk ``i`` of sbi's ``k``-th call of the
            simulator is seeded from ``(seed, k, i)``, so results never depend on the executor.
        seed: random seed.
        progress: show sbi's progress bars.
        device: where the model simulates without an executor (an executor's workers simulate
            on the CPU): ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``, checked first
            (``cuda`` without CUDA is a ValueError). The populations, weights and kernel stay on
            the CPU: sbi's ``SMCABC`` computes its kernel covariance with NumPy. The result is on
            the CPU. The CUDA path has not yet been run on a GPU.
        threads: torch intra-op threads for the populations (their simulations), restored after
            them; default None: torch's setting (see :mod:`pyro_circuits.threads`).

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> result = SMCABC(LDS2D(), LDS2D.oscillation(), simulations=600, particles=50,
        ...                 progress=False)
        >>> result.sample(4)["a11"].shape
        torch.Size([4])
    """
    check_run(model, prop, params, model_args, model_kwargs, executor=executor,
              simulation_batch_size=simulation_batch_size, seed=seed, progress=progress)  # fmt: skip
    device = torch_device("device", device)
    threads = thread_count("threads", threads)
    simulations = positive_int("simulations", simulations)
    if kernel_variance_scale != "silverman":
        positive_float("kernel_variance_scale", kernel_variance_scale)
    if not isinstance(distance_based_decay, bool):
        raise TypeError(f"distance_based_decay must be True or False, got {distance_based_decay!r}")
    if particles is None:
        particles = min(1000, max(10, simulations // 20))
    particles = positive_int("particles", particles)
    if initial_population is None:
        initial_population = 2 * particles
    initial_population = positive_int("initial_population", initial_population)
    if initial_population < particles or simulations < initial_population:
        raise ValueError(
            f"need particles ({particles}) <= initial_population ({initial_population}) <= "
            f"simulations ({simulations})"
        )
    probability("epsilon_decay", epsilon_decay, low_open=True, high_open=True)
    probability("min_kernel_acceptance", min_kernel_acceptance, high_open=True)
    args = (model, prop, params, model_args, model_kwargs, executor, device)
    program, simulator, x0 = prepare(*args)
    _require_bounded(simulator.space)
    if kernel_variance_scale == "silverman":
        kernel_variance_scale = silverman_scale(particles, simulator.space.dim)
    pyro.set_rng_seed(seed)
    chunked = SeededSimulator(
        simulator, seed=seed, chunk_size=simulation_batch_size, executor=executor, progress=progress
    )
    # sbi hands each population's draws to the chunked simulator in one call.
    inference = _guarded_smcabc()(
        chunked, sbi_prior(simulator.space), simulation_batch_size=None, show_progress_bars=progress
    )
    inference.min_kernel_acceptance = min_kernel_acceptance
    records: list = []
    start = time.perf_counter()
    wall_start = time.time()
    with _populations(records), torch_threads(threads):
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
    return SMCABCResult(
        program=program,
        prop=prop,
        wall_time=wall_time,
        simulations=int(inference.simulation_counter),
        seed=seed,
        history=_history(records, summary, wall_start, prop),
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
        distances=summary["distances"][-1],
    )

"""Neural posterior estimation (sbi ``NPE_C``) of a circuit model's parameters at x₀.

Simulations run in fixed-size chunks, each with its own seed, on any
``concurrent.futures.Executor`` (``executor=``; :mod:`pyro_circuits.parallel`), and sbi is
given the simulations already made: the result is the same whatever the executor.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import pandas as pd
import pyro
import torch

from pyro_circuits.checks import (
    name_in,
    nonnegative_int,
    on_device,
    positive_float,
    positive_int,
    probability,
    torch_device,
)
from pyro_circuits.parallel import chunk_seed, seeded
from pyro_circuits.property import EmergentProperty, near_share, predictive_distance
from pyro_circuits.sbi.bridge import (
    check_keywords,
    check_run,
    prepare,
    sbi_prior,
    simulate,
)
from pyro_circuits.sbi.result import NPEResult
from pyro_circuits.space import ParameterSpace
from pyro_circuits.threads import thread_count, torch_threads

__all__ = ["NPE", "ObservationInTailWarning", "estimator_builder", "stalled_rounds"]

#: Below this share of round 1's simulations within one target s.d. of x₀, NPE warns: on the
#: rank-2 RNN it converged at shares of 4–5 % and stalled at 0.05 % and 0 (docs/comparison.md).
TAIL_SHARE = 0.005


class ObservationInTailWarning(UserWarning):
    """x₀ lies in the far tail of the prior predictive: NPE's flow may never fit it closely."""


class NoTracker:
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


#: The estimator keywords that choose how sbi standardises θ and x.
Z_SCORES = ("z_score_theta", "z_score_x")


def _check_estimator(density_estimator, estimator_kwargs) -> dict:
    """``estimator_kwargs`` (a dict, or None: ``{}``) checked against what sbi's
    ``posterior_nn`` and the named builder take: an unknown name or key is a ValueError naming
    it (with the nearest match), before any simulation. sbi itself would only warn about an
    unknown key, or fail with a NotImplementedError for an unknown name after the simulations.
    A z-score setting of None becomes ``"none"``: sbi documents both as "do not z-score", but
    its flow configuration drops None and z-scores after all.
    """
    from sbi.neural_nets import posterior_nn
    from sbi.neural_nets.factory import model_builders

    if estimator_kwargs is not None and not isinstance(estimator_kwargs, dict):
        raise TypeError(f"estimator_kwargs must be a dict, got {estimator_kwargs!r}")
    if callable(density_estimator):
        if estimator_kwargs:
            raise ValueError(
                "estimator_kwargs are keywords of a named density_estimator; a callable "
                f"builder takes its own (got {sorted(estimator_kwargs)})"
            )
        return {}
    if not isinstance(density_estimator, str):
        raise TypeError(
            f"density_estimator must be a name or a callable, got {density_estimator!r}"
        )
    name_in("density_estimator", density_estimator, model_builders)
    known = {
        name
        for function in (posterior_nn, model_builders[density_estimator])
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is not parameter.VAR_KEYWORD
    }
    # posterior_nn sets the builder's data arguments and its z_score_y (from z_score_x).
    known -= {"model", "batch_x", "batch_y", "z_score_y"}
    if density_estimator.startswith("zuko_"):
        known.add("x_dist")  # the support map's prior, which zuko flows take
    checked = dict(estimator_kwargs or {})
    for key in checked:
        name_in("estimator_kwargs key", key, sorted(known))
    for key in Z_SCORES:
        if key in checked and checked[key] is None:
            checked[key] = "none"
    return checked


def estimator_builder(density_estimator: str | Callable, estimator_kwargs: dict | None, prior):
    """The sbi density-estimator builder that :func:`NPE` trains: for a name, sbi's
    ``posterior_nn`` with ``estimator_kwargs`` (checked first), and for zuko flows the support
    map onto ``prior``'s support unless ``estimator_kwargs`` sets ``z_score_theta``; a callable
    is returned as it is.

    Example:
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
        >>> build = estimator_builder("zuko_maf", {"hidden_features": 8}, prior)
        >>> net = build(prior.sample((50,)), torch.randn(50, 1))
        >>> bool(prior.support.check(net.sample((20,), torch.zeros(1, 1))).all())
        True
    """
    from sbi.neural_nets import posterior_nn

    estimator_kwargs = _check_estimator(density_estimator, estimator_kwargs)
    if callable(density_estimator):
        return density_estimator
    defaults = {}
    if density_estimator.startswith("zuko_"):
        # The paper's "support map": the flow lives in unconstrained space, so no
        # posterior mass leaks outside the prior support (leakage stalls multi-round NPE).
        defaults = {"z_score_theta": "transform_to_unconstrained", "x_dist": prior}
    return posterior_nn(density_estimator, **{**defaults, **(estimator_kwargs or {})})


def _posterior_on_cpu(inference, trained, build, prior, theta, x):
    """The trained posterior rebuilt on the CPU: a fresh estimator from ``build`` (the run's
    builder, its support map made from the CPU ``prior``) on the CPU copies of the last round's
    ``theta`` and ``x``, with the trained weights and buffers loaded, so that the result samples,
    pickles and loads on a machine without the training device. The global random state is left
    as it was."""
    with torch.random.fork_rng(devices=[]):
        net = build(theta.cpu(), x.cpu())
    net.load_state_dict(trained.state_dict())
    return inference.build_posterior(net.train(trained.training), prior=prior)


#: The stream key of a round's check simulations, apart from its training simulations' chunks.
CHECK_STREAM = 2**31


@torch.no_grad()
def _checked_distances(posterior, x0, samples: int, prop, **simulation) -> dict[str, float]:
    """The predictive distances of ``samples`` posterior draws at x₀, of their mean
    (``distance``) and of their median (``median_distance``); NaN when ``samples`` is 0. The
    draws are simulated like a round's (``simulation``: :func:`simulate`'s arguments), in
    chunks on the run's executor."""
    if not samples:
        return {"distance": math.nan, "median_distance": math.nan}
    draws = posterior.sample((samples,), x=x0, show_progress_bars=False, max_sampling_time=600.0)
    x = simulate(theta=draws, **simulation)
    return {
        "distance": predictive_distance(x, prop),
        "median_distance": predictive_distance(x, prop, center="median"),
    }


def stalled_rounds(log_probs: Sequence[float]) -> int:
    """How many of the last rounds ended without a better validation log-probability than every
    round before them (``NPE(patience=k)`` stops once this reaches k).

    Example:
        >>> stalled_rounds([-5.0, -2.0, -2.5, -2.0])
        2
    """
    best, stalled = -math.inf, 0
    for log_prob in log_probs:
        stalled = 0 if log_prob > best else stalled + 1
        best = max(best, log_prob)
    return stalled


def _stop_rule(rows, stop_distance, patience, max_time, start) -> str | None:
    """The first of NPE's stop rules that the rounds so far (``rows``) meet, or None."""
    if stop_distance is not None and rows[-1]["distance"] < stop_distance:
        return "stop_distance"
    log_probs = [row["validation_log_prob"] for row in rows]
    if patience is not None and stalled_rounds(log_probs) >= patience:
        return "patience"
    if max_time is not None and time.perf_counter() - start >= max_time:
        return "max_time"
    return None


def _warn_tail(near: float) -> None:
    warnings.warn(
        f"NPE: {near:.2%} of round 1's simulations lie within one target s.d. of x₀ (the "
        "property's means): x₀ is in the far tail of the prior predictive, where the flow's "
        "fit at x₀ may stay short of the criterion whatever the rounds; EPI targets the "
        "property directly",
        ObservationInTailWarning,
        stacklevel=3,
    )


def _truncated(prior, posterior, quantile: float, device: torch.device):
    """The prior restricted to where ``posterior``'s density exceeds its ``quantile``."""
    from sbi.utils import RestrictedPrior, get_density_thresholder

    inside = get_density_thresholder(posterior, quantile=quantile)
    return RestrictedPrior(prior, inside, sample_with="rejection", device=str(device))


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
    patience: int | None = None,
    max_time: float | None = None,
    truncate: float | None = None,
    check_samples: int = 1000,
    executor: Executor | None = None,
    simulation_batch_size: int = 1000,
    tracker=None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = None,
) -> NPEResult:
    """Neural posterior estimation (sbi ``NPE_C``) of p(θ | x₀) with x₀ the property mean.

    Each round draws ``simulations`` parameter sets from the proposal (the prior in round 1,
    then the current posterior at x₀: sequential NPE with the atomic loss), simulates them and
    trains; ``history``'s ``near_x0`` is the share of the round's simulations within one target
    s.d. of x₀ (:func:`~pyro_circuits.property.near_share`), and an
    :class:`ObservationInTailWarning` says when round 1's is below 0.5 %. After each round
    ``check_samples`` posterior draws are simulated to record the
    predictive distance ‖E[f] − x₀‖₂ in ``history`` (these checks are not counted in
    ``simulations``; they are simulated in chunks like a round's, on the executor), with the
    distance of the draws' median (``median_distance``, an earlier version of the reference
    SNPE script's measure), beside the round's best validation log-probability; with
    ``stop_distance`` the rounds stop once the distance is below that value, and with
    ``patience`` once that many consecutive rounds have ended below the best validation
    log-probability of the rounds before them (the reference SNPE's rule, with 2). With
    ``max_time`` no round starts once that many seconds have passed (the reference's time limit).
    The result's ``stopped_by`` names the rule that ended the rounds. With ``truncate`` the
    rounds are truncated sequential NPE instead (Deistler et al. 2022):
    each later round draws from the prior restricted to the region where the current posterior's
    density exceeds its ``truncate`` quantile, and every round trains with the first round's loss.

    Arguments:
        model, prop, params, model_args, model_kwargs: the circuit model and its property.
        simulations: simulations per round.
        rounds: maximum number of rounds.
        stop_distance: stop after the first round whose predictive distance is below this.
        patience: stop after this many consecutive rounds without a better validation
            log-probability than every earlier round's (None: no such stop).
        max_time: start no new round after this many seconds of wall time; the round under way
            finishes (None: no limit).
        truncate: the posterior-density quantile below which later rounds' prior draws are
            rejected (truncated sequential NPE, e.g. 1e-4); None: the atomic loss on proposals
            drawn from the posterior.
        density_estimator: an sbi estimator name (``"zuko_maf"``, ``"zuko_nsf"``, ``"maf"``,
            ``"nsf"``, ``"mdn"``, …) or a builder callable.
        estimator_kwargs: keywords of ``sbi.neural_nets.posterior_nn`` for a named estimator
            (e.g. ``hidden_features=50, num_transforms=3``). Zuko flows default to
            ``z_score_theta="transform_to_unconstrained"`` (a map onto the prior support).
        train_kwargs: keywords of ``NPE_C.train`` (e.g. ``max_num_epochs``).
        executor: where the simulations run: None (here) or any
            ``concurrent.futures.Executor`` (a process pool, ``parallel.RayExecutor``, Dask's
            ``client.get_executor()``); the model must then be picklable.
        simulation_batch_size: draws per chunk; chunk ``i`` of round ``r`` is simulated with a
            seed drawn from ``(seed, r, i)`` (the check's from ``(seed, r, CHECK_STREAM,
            i)``), so the simulations depend on the seed and this size, never on the executor.
        tracker: an sbi training tracker (e.g. ``sbi.utils.tracking.TensorBoardTracker``);
            default none, so nothing is written to disk.
        seed: random seed.
        progress: show sbi's progress bars.
        device: where sbi trains (its ``device=``: the density estimator, the prior and the
            proposal's draws) and, without an executor, where the model simulates (an
            executor's workers simulate on the CPU). ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
            ``torch.device``, checked first (``cuda`` without CUDA is a ValueError). The result's
            posterior is rebuilt on the CPU. The CUDA path has not yet been run on a GPU.
        threads: torch intra-op threads for the rounds (simulations and training), restored
            after them; default None: torch's setting (see :mod:`pyro_circuits.threads`).

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> result = NPE(LDS2D(), LDS2D.oscillation(), simulations=200, check_samples=0,
        ...              train_kwargs={"max_num_epochs": 2}, progress=False)
        >>> result.sample(4)["a11"].shape, result.simulations
        (torch.Size([4]), 200)
    """
    from sbi.inference import NPE_C

    check_run(model, prop, params, model_args, model_kwargs, executor=executor,
              simulation_batch_size=simulation_batch_size, seed=seed, progress=progress)  # fmt: skip
    device = torch_device("device", device)
    threads = thread_count("threads", threads)
    simulations = positive_int("simulations", simulations)
    rounds = positive_int("rounds", rounds)
    if stop_distance is not None:
        positive_float("stop_distance", stop_distance)
    if patience is not None:
        positive_int("patience", patience)
    if max_time is not None:
        positive_float("max_time", max_time)
    if truncate is not None:
        probability("truncate", truncate, low_open=True, high_open=True)
    first_round_loss = {"force_first_round_loss": True} if truncate is not None else {}
    check_samples = nonnegative_int("check_samples", check_samples)
    estimator_kwargs = _check_estimator(density_estimator, estimator_kwargs)
    train_kwargs = check_keywords("train_kwargs", train_kwargs, NPE_C.train)
    args = (model, prop, params, model_args, model_kwargs, executor, device)
    program, simulator, x0 = prepare(*args)
    with on_device(device):
        prior = sbi_prior(ParameterSpace(program.on(device).priors))
    estimator = estimator_builder(density_estimator, estimator_kwargs, prior)
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    inference = NPE_C(
        prior=prior,
        density_estimator=estimator,
        device=str(device),
        show_progress_bars=progress,
        tracker=tracker or NoTracker(),
    )
    x0_here = x0.to(device)
    proposal, rows, used, stopped_by = prior, [], 0, None
    with torch_threads(threads):
        for round_ in range(1, rounds + 1):
            # truncated NPE's region is built only when a round draws from it
            draw_from = (
                proposal
                if truncate is None or round_ == 1
                else _truncated(prior, proposal, truncate, device)
            )
            theta = seeded(draw_from.sample, chunk_seed(seed, round_), (simulations,))
            x = simulate(
                simulator,
                theta,
                seed=seed,
                stream=(round_,),
                chunk_size=simulation_batch_size,
                executor=executor,
                progress=progress,
            )
            used += simulations
            near = near_share(x, prop)
            if round_ == 1 and near < TAIL_SHARE:
                _warn_tail(near)
            appended = inference.append_simulations(
                theta, x, proposal=proposal if truncate is None else None
            )
            trained = appended.train(
                **{"show_train_summary": False, **first_round_loss, **(train_kwargs or {})}
            )
            posterior = inference.build_posterior(trained)
            posterior.set_default_x(x0_here)
            proposal = posterior
            distances = _checked_distances(
                posterior,
                x0_here,
                check_samples,
                prop,
                simulator=simulator,
                seed=seed,
                stream=(round_, CHECK_STREAM),
                chunk_size=simulation_batch_size,
                executor=executor,
            )
            log_prob = -float(inference.summary["best_validation_loss"][-1])
            rows.append(
                {
                    "round": round_,
                    "simulations": used,
                    "wall_time": time.perf_counter() - start,
                    **distances,
                    "near_x0": near,
                    "validation_log_prob": log_prob,
                    "epochs_trained": int(inference.summary["epochs_trained"][-1]),
                }
            )
            stopped_by = _stop_rule(rows, stop_distance, patience, max_time, start)
            if stopped_by:
                break
    if device.type != "cpu":
        cpu_prior = sbi_prior(ParameterSpace(program.priors))
        build = estimator_builder(density_estimator, estimator_kwargs, cpu_prior)
        posterior = _posterior_on_cpu(inference, trained, build, cpu_prior, theta, x)
        posterior.set_default_x(x0)
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
            "patience": patience,
            "max_time": max_time,
            "truncate": truncate,
            "density_estimator": str(density_estimator),
            "estimator_kwargs": dict(estimator_kwargs or {}),
            "train_kwargs": dict(train_kwargs or {}),
        },
        posterior=posterior,
        x0=x0,
        stopped_by=stopped_by or "rounds",
    )

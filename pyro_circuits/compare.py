"""Run several inference methods on one circuit model and property; one table, one folder.

Every method is called through a runner with the same signature and answers through the
result protocol (``sample``, ``predictive``, ``to_inference_data``), so adding a method is one
entry in :data:`METHODS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from pathlib import Path

import arviz as az
import pandas as pd
import torch

from pyro_circuits.checks import (
    int_in_range,
    name_in,
    names_in,
    positive_float,
    positive_int,
    seed_int,
    torch_device,
    writable_dir,
)
from pyro_circuits.epi import EPIConfig, EPIResult, epi
from pyro_circuits.parallel import check_executor, check_picklable, parallel_map
from pyro_circuits.property import (
    CONVERGENCE_DISTANCE,
    EmergentProperty,
    moment_test,
    predictive_distance,
)
from pyro_circuits.results import InferenceResult, atomic_save
from pyro_circuits.sbi import NPE, SMCABC

__all__ = ["METHODS", "compare", "markdown_table", "summary_row", "write_comparison"]


def _run_epi(model, prop, budget, seed, progress, **options) -> EPIResult:
    """EPI with at most ``budget`` simulations in its Adam steps (epochs × iterations × N)."""
    config = options.pop("config", None) or EPIConfig(stop_early=True)
    per_epoch = config.iterations * config.batch_size
    if budget >= per_epoch:
        config = replace(config, epochs=budget // per_epoch)
    else:
        config = replace(config, epochs=1, iterations=max(1, budget // config.batch_size))
    return epi(model, prop, config=config, seed=seed, progress=progress, **options)


def _run_npe(model, prop, budget, seed, progress, **options):
    """NPE with ``budget`` simulations split evenly over ``rounds`` (default 1)."""
    rounds = options.pop("rounds", 1)
    return NPE(
        model,
        prop,
        simulations=max(1, budget // rounds),
        rounds=rounds,
        seed=seed,
        progress=progress,
        **options,
    )


def _run_smcabc(model, prop, budget, seed, progress, **options):
    """SMC-ABC with a budget of ``budget`` simulations."""
    return SMCABC(model, prop, simulations=budget, seed=seed, progress=progress, **options)


#: name → runner(model, prop, budget, seed, progress, **options) → InferenceResult
METHODS: dict[str, Callable[..., InferenceResult]] = {
    "epi": _run_epi,
    "npe": _run_npe,
    "smcabc": _run_smcabc,
}


def _to_convergence(
    trace: pd.DataFrame, threshold: float, column: str = "distance"
) -> tuple[float, float]:
    """Simulations and wall time at the first checkpoint whose ``column`` is below
    ``threshold`` (NaN, NaN when none is, or the trace lacks that column)."""
    if column not in trace:
        return math.nan, math.nan
    hits = trace[trace[column] < threshold]
    if hits.empty:
        return math.nan, math.nan
    return float(hits["simulations"].iloc[0]), float(hits["wall_time"].iloc[0])


def summary_row(
    result: InferenceResult,
    *,
    seed: int = 0,
    threshold: float = CONVERGENCE_DISTANCE,
    draws: int = 2000,
    moment_batches: int = 20,
) -> dict:
    """One row of the comparison table for any :class:`InferenceResult`, read through the
    protocol alone: the predictive distance and moment test on ``draws`` fresh draws, the
    result's own convergence flag, cost, convergence point and entropy, and the statistics'
    predictive means and standard deviations. The ``median_*`` entries apply the criterion to
    the predictive median instead (the reference SNPE script's measure): the distance on the
    same draws and, where the result's trace records it per checkpoint (NPE), the point it was
    first met.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> from pyro_circuits.sbi import SMCABC
        >>> result = SMCABC(LDS2D(), LDS2D.oscillation(), simulations=500, particles=50,
        ...                 progress=False)
        >>> row = summary_row(result, draws=200)
        >>> row["method"], row["simulations"] >= 500
        ('smcabc', True)
    """
    if not isinstance(result, InferenceResult):
        raise TypeError(f"result must be an InferenceResult, got {type(result).__name__}")
    _check_draws(draws, moment_batches)
    prop = result.prop
    with torch.no_grad():
        stats = result.predictive(draws, seed=seed)
    f = prop.flatten(stats)
    distance = predictive_distance(f, prop)
    batch = draws // moment_batches
    violations = (prop.sufficient_statistics(stats) - prop.target)[: batch * moment_batches]
    moments = moment_test(violations.reshape(moment_batches, batch, -1).mean(1))
    trace = result.convergence_trace()
    sims, wall = _to_convergence(trace, threshold)
    median_sims, median_wall = _to_convergence(trace, threshold, "median_distance")
    entropy = result.entropy()
    row = {
        "method": result.method,
        "seed": seed,
        "converged": distance < threshold,
        "distance": distance,
        "moment_test": moments.converged,
        "epi_converged": result.converged if result.method == "epi" else None,
        "wall_time": result.wall_time,
        "simulations": result.simulations,
        "simulations_to_converge": sims,
        "wall_time_to_converge": wall,
        "median_distance": predictive_distance(f, prop, center="median"),
        "simulations_to_median_converge": median_sims,
        "wall_time_to_median_converge": median_wall,
        "entropy": math.nan if entropy is None else entropy,
    }
    names = [c[2:-1] for c in prop.constraint_names[: f.shape[1]]]
    row.update({f"mean {n}": v for n, v in zip(names, f.mean(0).tolist(), strict=True)})
    row.update({f"std {n}": v for n, v in zip(names, f.std(0).tolist(), strict=True)})
    return row


def _check_draws(draws, moment_batches) -> None:
    """Enough draws for the moment test: ≥ 2 batches (one batch gives p = 0) of ≥ 4 draws."""
    draws = positive_int("draws", draws)
    moment_batches = int_in_range("moment_batches", moment_batches, 2)
    if draws < 4 * moment_batches:
        raise ValueError(f"draws ({draws}) must be at least 4 × moment_batches ({moment_batches})")


def compare(
    model: Callable,
    prop: EmergentProperty,
    methods: Sequence[str] = ("epi", "npe", "smcabc"),
    *,
    budget: int = 10_000,
    seeds: Sequence[int] = (0,),
    threshold: float = CONVERGENCE_DISTANCE,
    options: Mapping[str, Mapping] | None = None,
    draws: int = 2000,
    moment_batches: int = 20,
    out: str | Path | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, dict[str, az.InferenceData]]:
    """Run each method on the same model and property, once per seed.

    Arguments:
        model: the circuit model (Pyro program); parameters and statistics are read from it.
        prop: the emergent property; its mean vector is x₀ for NPE and SMC-ABC.
        methods: names in :data:`METHODS`.
        budget: simulations each method may spend (EPI: in its Adam steps; NPE: over all
            rounds; SMC-ABC: the ABC budget). Evaluation draws are not counted.
        seeds: one run per method and seed.
        threshold: the shared criterion: converged when ‖E[f] − μ‖₂ < threshold (paper: 0.5).
        options: per-method keyword arguments, e.g. ``{"npe": {"rounds": 2}, "epi":
            {"config": EPIConfig(...)}, "smcabc": {"particles": 200}}``; ``params``,
            ``model_args``, ``model_kwargs`` and ``threads`` (torch's intra-op threads; without
            it EPI runs with one, the others with torch's setting) go to every method through
            ``options["all"]``.
        draws: predictive draws for the table and the InferenceData.
        moment_batches: batches of the EPI moment test applied to every method's predictive.
        out: folder for ``comparison.csv``, ``comparison.md``, ``<method>_seed<k>.nc``,
            ``pairs.png`` and ``predictive.png``.
        executor: where the method × seed runs go: None (one after the other, here) or any
            ``concurrent.futures.Executor`` (:mod:`pyro_circuits.parallel`), with the same
            results; the model, property and options must then be picklable. Simulations
            inside one run go to an executor of their own through ``options``, e.g.
            ``{"npe": {"executor": ...}}``.
        progress: progress bars.
        device: the ``device`` of every run (``"cpu"``, ``"cuda"``, …; see
            :func:`~pyro_circuits.epi.epi`, :func:`~pyro_circuits.sbi.NPE` and
            :func:`~pyro_circuits.sbi.SMCABC`), checked before any run; a ``device`` in
            ``options`` overrides it for that method.

    Returns:
        The table (one row per method × seed: ``converged``, ``distance``, ``moment_test``,
        ``wall_time``, ``simulations``, ``simulations_to_converge``,
        ``wall_time_to_converge``, ``median_distance``, ``simulations_to_median_converge``,
        ``wall_time_to_median_converge``, ``entropy``, ``mean <stat>``, ``std <stat>``) and
        ``{"<method>_seed<k>": InferenceData}``.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> table, idata = compare(LDS2D(), LDS2D.oscillation(), methods=["smcabc"],
        ...                        budget=500, draws=200, options={"smcabc": {"particles": 50}},
        ...                        progress=False)
        >>> list(idata), bool(table["simulations"][0] >= 500)
        (['smcabc_seed0'], True)
    """
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro program, got {type(model).__name__}")
    if not isinstance(prop, EmergentProperty):
        raise TypeError(f"prop must be an EmergentProperty, got {type(prop).__name__}")
    methods = names_in("methods", methods, sorted(METHODS))
    positive_int("budget", budget)
    if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of integer seeds, got {seeds!r}")
    seeds = [seed_int("seeds entry", s) for s in seeds]
    positive_float("threshold", threshold)
    _check_draws(draws, moment_batches)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict of per-method dicts, got {options!r}")
    for key, value in dict(options or {}).items():
        name_in("options key", key, [*sorted(METHODS), "all"])
        if not isinstance(value, Mapping):
            raise TypeError(f"options[{key!r}] must be a dict of keyword arguments, got {value!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if out is not None:
        out = writable_dir("out", out)  # checked before the runs, not after them
    check_executor(executor)
    device = torch_device("device", device)
    options = {key: dict(value) for key, value in dict(options or {}).items()}
    shared = {"device": device, **options.pop("all", {})}
    summary = {"threshold": threshold, "draws": draws, "moment_batches": moment_batches}
    run = partial(_run_one, model, prop, budget, progress and executor is None, shared, options,
                  summary)  # fmt: skip
    check_picklable("the model, property and options", run, executor)
    runs = [(m, s) for m in methods for s in seeds]
    outputs = parallel_map(run, runs, executor=executor, desc="compare", progress=progress)
    idatas = {f"{m}_seed{s}": idata for (m, s), (_, idata) in zip(runs, outputs, strict=True)}
    table = pd.DataFrame([row for row, _ in outputs])
    if out is not None:
        write_comparison(table, idatas, prop, out)
    return table, idatas


def _run_one(model, prop, budget, progress, shared, options, summary, run):
    """One method × seed run of :func:`compare`: its table row and its InferenceData."""
    method, seed = run
    options = {**shared, **options.get(method, {})}
    result = METHODS[method](model, prop, budget, seed, progress, **options)
    row = summary_row(result, seed=seed, **summary)
    return row, result.to_inference_data(n=summary["draws"], seed=seed)


def markdown_table(table: pd.DataFrame) -> str:
    """A pandas table as GitHub Markdown (floats to 4 significant digits, NaN as —)."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "—" if math.isnan(value) else f"{value:.4g}"
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * table.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def write_comparison(
    table: pd.DataFrame, idatas: Mapping[str, az.InferenceData], prop, out: str | Path
) -> list[Path]:
    """Write the table (CSV, Markdown), each run's NetCDF, the pair and predictive plots."""
    import matplotlib.pyplot as plt

    from pyro_circuits.plots import plot_method_pairs, plot_predictive_scatter

    out = writable_dir("out", out)
    paths = [
        atomic_save(out / "comparison.csv", lambda tmp: table.to_csv(tmp, index=False)),
        atomic_save(
            out / "comparison.md", lambda tmp: tmp.write_text(markdown_table(table) + "\n")
        ),
    ]
    for name, idata in idatas.items():
        paths.append(atomic_save(out / f"{name}.nc", lambda tmp, d=idata: d.to_netcdf(str(tmp))))
    for figure, name in (
        (plot_method_pairs(idatas), "pairs.png"),
        (plot_predictive_scatter(idatas, prop), "predictive.png"),
    ):
        paths.append(
            atomic_save(out / name, lambda tmp, f=figure: f.savefig(tmp, dpi=110, format="png"))
        )
        plt.close(figure)
    return paths

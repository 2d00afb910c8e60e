"""Why does the SC silencing result depend on EPI's flow seed (issue #51, item 3)?

Hypothesis: the SC property (Pro and Anti accuracy 0.75 ± 0.075) admits a family of solutions;
the Anti error increase under partial delay-period silencing is one function of where a draw
lies (chiefly vW), the same for every seed, and the seeds differ only in which part of the family
their q covers. For each SC flow saved by ``benchmarks.circuits_epi sc --seed N``
(``benchmarks/records/circuits_epi/sc-seed<N>_q.pt``), this study

* draws parameter sets from q (draw seed 1, as the benchmark: its 1000 draws are the first
  1000 here) and records each parameter's mean and sd and the share with sW < 0;
* simulates every draw with and without silencing at γ = 0.675 (the benchmark's ``errors``,
  the same noise both ways) and keeps the Δ Pro and Δ Anti error per draw; a second noise seed
  measures how much of Δ Anti is simulator noise;
* pools the draws of all seeds and asks whether Δ Anti is the same function of the parameters
  for every seed: gradient boosting of Δ Anti on (sW, vW, dW, hW), cross-validated, with and
  without the seed's label; each seed held out (fit on the others, predict its draws' mean,
  also on the draws that lie near another seed's draws); each seed's own fit applied to every
  seed's draws (which seed's draws carry the others' means); the mean Δ Anti per (sign of sW,
  vW bin) and seed, with a test of equal means across seeds in each shared bin.

Regenerate (one record, ``benchmarks/records/sc_seeds/all.json``; minutes on one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.studies.sc_seeds

A smoke run (``--draws 20 --trials 20``, or any setting but the defaults) writes its record to
``benchmarks/output/records_quick/`` instead.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import chi2
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from benchmarks.circuits_epi import (
    BENCHMARK,
    QUICK_RECORDS,
    errors,
    flow_path,
    load_sc_flow,
    sc_runs,
)
from benchmarks.records import RECORDS, ROOT, command, write_record
from benchmarks.report.circuits import EXPERIMENT_GAMMA, passes_check, select_sc
from pyro_circuits.checks import require_positive_ints
from pyro_circuits.models import SuperiorColliculus
from pyro_circuits.models.superior_colliculus import PARAMS
from pyro_circuits.sites import CircuitProgram

STUDY = "sc_seeds"
DRAWS, TRIALS = 4000, 200
DRAW_SEED = 1  # the benchmark's draws of q (its first 1000 draws are this study's first 1000)
NOISE_SEED = 2  # the benchmark's noise seed; chunk c uses NOISE_SEED + 100 c (replicate: + 1)
CHUNK = 1000
BIN_WIDTH = 0.5  # vW bins
SHARED = 20  # draws a seed needs in a bin for its mean there to be compared
NEAR = 0.25  # a held-out draw is covered when another seed's draw lies this close (L2)
LARGE = 0.05  # a draw's Δ Anti counted as large


def saved_seeds() -> list[int]:
    """The SC flow seeds with a saved flow and a record, ascending."""
    folder = RECORDS / BENCHMARK
    seeds = (
        int(p.name.removeprefix("sc-seed").removesuffix("_q.pt"))
        for p in folder.glob("sc-seed*_q.pt")
    )
    return sorted(s for s in seeds if (folder / f"sc-seed{s}.json").exists())


def simulate(seed: int, draws: int, trials: int, progress: bool) -> dict[str, np.ndarray]:
    """Draws of seed ``seed``'s q and their error increases under silencing at γ = 0.675:
    ``theta`` (draws, 4), ``pro`` and ``anti`` (Δ error per draw), ``anti_replicate`` (Δ Anti
    with the next noise seed)."""
    q = load_sc_flow(seed)
    torch.manual_seed(DRAW_SEED)
    theta = q.sample(draws)
    program = CircuitProgram(SuperiorColliculus(trials=trials))
    out = {"pro": [], "anti": [], "anti_replicate": []}
    chunks = range(0, draws, CHUNK)
    for c, first in enumerate(tqdm(chunks, desc=f"seed {seed}", disable=not progress)):
        part = dict(zip(PARAMS, theta[first : first + CHUNK].T, strict=True))
        for replicate in (0, 1):
            noise = NOISE_SEED + 100 * c + replicate
            base_pro, base_anti = errors(program, part, 0.0, seed=noise)
            pro, anti = errors(program, part, EXPERIMENT_GAMMA, seed=noise)
            if replicate:
                out["anti_replicate"].append(anti - base_anti)
            else:
                out["pro"].append(pro - base_pro)
                out["anti"].append(anti - base_anti)
    return {"theta": theta.numpy()} | {k: torch.cat(v).numpy() for k, v in out.items()}


def mean_se(values: np.ndarray) -> dict:
    n = len(values)
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / n**0.5), "n": n}


def describe(run: dict, sims: dict, trials: int) -> dict:
    """One seed's q and its silencing effects; ``first_1000``: Δ Anti over the benchmark's
    draws, beside the benchmark record's figure (``benchmark``), when this run repeats them
    (at least 1000 draws, the benchmark's trials)."""
    theta, anti = sims["theta"], sims["anti"]
    row = {
        "entropy": run["selected_entropy"],
        "converged": run["converged"],
        "larger_check": passes_check(run),
        "sW_negative": float((theta[:, 0] < 0).mean()),
        "params": {
            name: {"mean": float(theta[:, i].mean()), "sd": float(theta[:, i].std(ddof=1))}
            for i, name in enumerate(PARAMS)
        },
        "pro": mean_se(sims["pro"]),
        "anti": mean_se(anti),
        "anti_large": float((anti > LARGE).mean()),
    }
    if len(anti) >= 1000 and trials == run["settings"]["trials"]:
        recorded = run["silencing"][str(EXPERIMENT_GAMMA)]["anti_error_increase_mean"]
        row["first_1000"] = {"anti": float(anti[:1000].mean()), "benchmark": recorded}
    return row


def bins(theta: np.ndarray, anti: np.ndarray, seeds: np.ndarray) -> list[dict]:
    """Mean Δ Anti per (sign of sW, vW bin) and seed, and the test of equal means across the
    seeds with at least :data:`SHARED` draws in the bin (χ² of the precision-weighted spread)."""
    low = np.floor(theta[:, 1].min() / BIN_WIDTH) * BIN_WIDTH
    index = np.floor((theta[:, 1] - low) / BIN_WIDTH).astype(int)
    rows = []
    for sign, negative in (("sW < 0", True), ("sW ≥ 0", False)):
        for b in np.unique(index):
            member = (index == b) & ((theta[:, 0] < 0) == negative)
            if member.sum() < SHARED:
                continue
            cells = {}
            for s in np.unique(seeds):
                values = anti[member & (seeds == s)]
                cells[str(s)] = mean_se(values) if len(values) > 1 else {"n": len(values)}
            edges = [float(low + b * BIN_WIDTH), float(low + (b + 1) * BIN_WIDTH)]
            rows.append({"sW": sign, "vW": edges, "seeds": cells} | homogeneity(cells))
    return rows


def homogeneity(cells: dict) -> dict:
    """χ² test that the seeds with at least :data:`SHARED` draws share one mean."""
    shared = [c for c in cells.values() if c["n"] >= SHARED]
    if len(shared) < 2:
        return {"compared": len(shared), "p": None}
    mean = np.array([c["mean"] for c in shared])
    weight = 1 / np.maximum(np.array([c["se"] for c in shared]), 1e-9) ** 2
    centre = (weight * mean).sum() / weight.sum()
    statistic = float((weight * (mean - centre) ** 2).sum())
    return {"compared": len(shared), "p": float(chi2.sf(statistic, len(shared) - 1))}


def booster():
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=0)


def pooled_fit(theta, anti, replicate, seeds) -> dict:
    """Cross-validated R² of Δ Anti on the parameters, with the seed's label added, the noise
    ceiling, and each parameter's permutation importance (drop in R² on held-out draws)."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict, train_test_split

    labels = (seeds[:, None] == np.unique(seeds)[None, :]).astype(float)
    folds = KFold(5, shuffle=True, random_state=0)
    r2 = {
        name: float(r2_score(anti, cross_val_predict(booster(), x, anti, cv=folds)))
        for name, x in (("params", theta), ("params_and_seed", np.hstack([theta, labels])))
    }
    noise = np.mean((anti - replicate) ** 2) / 2
    train, test = train_test_split(np.arange(len(anti)), test_size=0.5, random_state=0)
    model = booster().fit(theta[train], anti[train])
    importance = permutation_importance(
        model, theta[test], anti[test], n_repeats=5, random_state=0, scoring="r2"
    )
    return {
        "r2": r2,
        "noise_ceiling": float(1 - noise / anti.var()),
        "importance": dict(zip(PARAMS, importance.importances_mean.tolist(), strict=True)),
    }


def held_out(theta, anti, seeds) -> dict:
    """Each seed held out: the other seeds' fit predicts its draws (mean, R²), over all of them
    and over the draws within :data:`NEAR` of another seed's draw (``covered``); for its draws
    with Δ Anti above :data:`LARGE`, the median distance to the nearest draw of another seed and
    of its own (``large_distance``)."""
    from sklearn.metrics import r2_score
    from sklearn.neighbors import NearestNeighbors

    out = {}
    for s in np.unique(seeds):
        mine = seeds == s
        predicted = booster().fit(theta[~mine], anti[~mine]).predict(theta[mine])
        distance = NearestNeighbors(n_neighbors=1).fit(theta[~mine]).kneighbors(theta[mine])[0]
        covered = distance[:, 0] < NEAR
        row = {
            "predicted": float(predicted.mean()),
            "r2": float(r2_score(anti[mine], predicted)),
            "covered": float(covered.mean()),
        }
        if covered.sum() > 1:
            row["covered_measured"] = mean_se(anti[mine][covered])
            row["covered_predicted"] = float(predicted[covered].mean())
        big = anti[mine] > LARGE
        if big.sum() > 1:
            own = NearestNeighbors(n_neighbors=2).fit(theta[mine]).kneighbors(theta[mine][big])
            row["large_distance"] = {
                "others": float(np.median(distance[big, 0])),
                "own": float(np.median(own[0][:, 1])),
            }
        out[str(s)] = row
    return out


def transfer(theta, anti, seeds) -> dict:
    """``[a][b]``: the mean Δ Anti that the fit on seed a's draws predicts for seed b's draws
    (a = b: cross-validated within the seed)."""
    from sklearn.model_selection import KFold, cross_val_predict

    out = {}
    for a in np.unique(seeds):
        mine = seeds == a
        model = booster().fit(theta[mine], anti[mine])
        folds = KFold(5, shuffle=True, random_state=0)
        own = cross_val_predict(booster(), theta[mine], anti[mine], cv=folds)
        out[str(a)] = {
            str(b): float(own.mean() if a == b else model.predict(theta[seeds == b]).mean())
            for b in np.unique(seeds)
        }
    return out


def large(theta, anti) -> dict:
    """Mean parameters of the pooled draws with Δ Anti above :data:`LARGE` and of the rest."""
    return {
        label: {"n": int(member.sum())}
        | dict(zip(PARAMS, theta[member].mean(0).tolist(), strict=True))
        for label, member in (("large", anti > LARGE), ("rest", anti <= LARGE))
        if member.any()
    }


def study(seeds: list[int], draws: int, trials: int, progress: bool) -> dict:
    """The record's metrics."""
    runs = {run["seed"]: run for run in sc_runs()}
    sims = {s: simulate(s, draws, trials, progress) for s in seeds}
    per_seed = {str(s): describe(runs[s], sims[s], trials) for s in seeds}
    theta = np.concatenate([sims[s]["theta"] for s in seeds])
    anti = np.concatenate([sims[s]["anti"] for s in seeds])
    replicate = np.concatenate([sims[s]["anti_replicate"] for s in seeds])
    labels = np.repeat(seeds, draws)
    with threadpool_limits(1):
        fit = pooled_fit(theta, anti, replicate, labels)
        for s, row in held_out(theta, anti, labels).items():
            per_seed[s]["held_out"] = row
        cross = transfer(theta, anti, labels)
    return {
        "gamma": EXPERIMENT_GAMMA,
        "selected_seed": select_sc([runs[s] for s in seeds])["seed"],
        "seeds": per_seed,
        "pooled": fit,
        "transfer": cross,
        "large": large(theta, anti),
        "bins": bins(theta, anti, labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=DRAWS, help="draws of q per seed")
    parser.add_argument("--trials", type=int, default=TRIALS, help="trials per condition")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    require_positive_ints(draws=args.draws, trials=args.trials)
    torch.set_num_threads(1)
    seeds = saved_seeds()
    if len(seeds) < 2:
        raise SystemExit("need the saved flows of two SC seeds at least (circuits_epi sc --seed N)")
    metrics = study(seeds, args.draws, args.trials, not args.no_progress)
    default = (args.draws, args.trials) == (DRAWS, TRIALS)
    options = [] if default else ["--draws", args.draws, "--trials", args.trials]
    configuration = {
        "seeds": seeds,
        "draws": args.draws,
        "trials": args.trials,
        "draw_seed": DRAW_SEED,
        "noise_seed": NOISE_SEED,
        "bin_width": BIN_WIDTH,
        "shared": SHARED,
        "near": NEAR,
        "large": LARGE,
        "flows": [str(flow_path(s, quick=False).relative_to(ROOT)) for s in seeds],
    }
    path = write_record(
        STUDY,
        "all",
        "OMP_NUM_THREADS=1 " + command(f"benchmarks.studies.{STUDY}", *options),
        configuration,
        metrics,
        notes="The machine's two cores were shared with other benchmarks during the run.",
        root=RECORDS if default else QUICK_RECORDS,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

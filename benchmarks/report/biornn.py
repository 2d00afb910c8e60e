"""Section of the ``biornn_perturbation`` records: students of a reference circuit under light."""

from __future__ import annotations

import math
from statistics import mean

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "bioRNN perturbation test (trial-matched students of a reference circuit)"
ORDER = ["bioRNN", "sigmaRNN", "noDale", "nonlocal_inhibition", "no_sparsity", "no_spike", "no_TM"]
SERIES = ("inactivation", "activation")


def _sem(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def _pm(values: list[float], digits: int = 3) -> str:
    if not values:
        return ""
    sem = _sem(values)
    text = f"{mean(values):.{digits}f}"
    return text if math.isnan(sem) else f"{text} ± {sem:.{digits}f}"


def _epochs(record: dict) -> int:
    c = record["configuration"]
    return math.ceil(c["steps"] / math.ceil(c["train_trials"] / c["batch"]))


def _cells(record: dict) -> list[float]:
    """The 20 cells' errors are 10 per hypothesis (power 0 counted in both series)."""
    cells = record["metrics"]["cells"]
    return [cells[s][p] for s in SERIES for p in sorted(cells[s], key=float)]


def _floor(record: dict) -> list[float]:
    floor = record["metrics"]["floor"]
    return [floor[s][p] for s in SERIES for p in sorted(floor[s], key=float)]


def render(records: list[dict]) -> str:
    by = {}
    for r in records:
        c = r["configuration"]
        by.setdefault(c["model"], {}).setdefault(c["hypothesis"], {})[c["seed"]] = r
    models = [m for m in ORDER if m in by] + sorted(set(by) - set(ORDER))
    hypotheses = sorted({r["configuration"]["hypothesis"] for r in records})
    first = records[0]["configuration"]
    # the noise floor: teacher against itself with other noise, mean over the cells of every
    # hypothesis present (the same for every student of a hypothesis)
    floors = {}
    for r in records:
        floors.setdefault(r["configuration"]["hypothesis"], _floor(r))
    floor = mean(v for h in hypotheses for v in floors[h])

    def seed_means(model: str) -> list[float]:
        """Per seed: the mean of the cells over the hypotheses that seed has records for."""
        seeds = sorted({s for h in by[model].values() for s in h})
        out = []
        for s in seeds:
            values = [v for h in hypotheses if s in by[model].get(h, {})
                      for v in _cells(by[model][h][s])]  # fmt: skip
            if len(values) == 10 * len(hypotheses):
                out.append(mean(values))
        return out

    summary = []
    bio = seed_means("bioRNN") if "bioRNN" in by else []
    for m in models:
        per_seed = seed_means(m)
        unperturbed = [
            mean(by[m][h][s]["metrics"]["unperturbed_error"] for h in hypotheses)
            for s in sorted({s for h in by[m].values() for s in h})
            if all(s in by[m].get(h, {}) for h in hypotheses)
        ]
        ratio = mean(per_seed) / floor if per_seed else float("nan")
        versus = mean(per_seed) / mean(bio) if per_seed and bio else float("nan")
        runs = [r for h in by[m].values() for r in h.values()]
        train = [r["metrics"]["train_seconds"] for r in runs]
        last = [r["metrics"]["best_epoch"] == _epochs(r) - 1 for r in runs]
        summary.append(
            [
                m,
                len(per_seed),
                _pm(unperturbed),
                _pm(per_seed),
                f"{ratio:.2f}",
                f"{versus:.2f}",
                f"{sum(last)}/{len(runs)}",
                f"{mean(train):.0f}" if train else "",
            ]
        )

    detail = []
    for m in models:
        for h in hypotheses:
            seeds = by[m].get(h, {})
            if not seeds:
                continue
            row = [m, h]
            for s in SERIES:
                powers = sorted(next(iter(seeds.values()))["metrics"]["cells"][s], key=float)
                row.append(
                    " → ".join(
                        f"{mean(r['metrics']['cells'][s][p] for r in seeds.values()):.3f}"
                        for p in (powers[0], powers[-1])
                    )
                )
            row.append(_pm([mean(_cells(r)) for r in seeds.values()]))
            detail.append(row)
    floor_rows = [
        ["teacher (noise floor)", h]
        + [" → ".join(f"{floors[h][i]:.3f}" for i in (5 * k, 5 * k + 4)) for k in range(2)]
        + [f"{mean(floors[h]):.3f}"]
        for h in hypotheses
    ]

    dp_rows, micro_rows = [], []
    for m in models:
        errors = [r["metrics"]["delta_p"]["error"] for h in by[m].values() for r in h.values()]
        if errors:
            dp_rows.append([m, len(errors), _pm(errors)])
        for h in hypotheses:
            for s, r in sorted(by[m].get(h, {}).items()):
                micro = r["metrics"].get("micro_perturbation")
                if micro:
                    micro_rows.append(
                        [m, h, s]
                        + [
                            f"{micro[k]:+.1f} ({micro['predicted_' + k]:+.1f})"
                            for k in ("positive", "random", "negative")
                        ]  # fmt: skip
                    )
    teacher_dp = [
        next(iter(next(iter(by.values())).get(h, {}).values()))["metrics"]["delta_p"][
            "teacher_other_noise_error"
        ]
        for h in hypotheses
        if next(iter(by.values())).get(h)
    ]
    dp_rows.append(["teacher vs itself (other noise)", len(teacher_dp), _pm(teacher_dp)])

    total = sum(
        r["metrics"]["train_seconds"] + r["metrics"]["eval_seconds"] for r in records
    ) + sum(
        next(iter(by[models[0]].get(h, {}).values()))["metrics"]["sample_seconds"]
        for h in hypotheses
        if by[models[0]].get(h)
    )
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"CPU size: 2 areas × ({first['n_exc']} E + {first['n_inh']} I), dt "
            f"{first['dt_ms']} ms, {first['n_steps']} steps; {first['train_trials']} training and "
            f"{first['test_trials']} test trials of each reference circuit; "
            f"{first['steps']} optimiser steps of {first['batch']} trials per student; "
            f"{first['eval_trials']} trials per perturbation cell. Teacher: "
            f"{first['teacher']}. Each cell: the hard trial-matching MSE of area-0 features "
            "between lit student and lit teacher (light on area 1, ±20 ms around the stimulus); "
            f"the noise floor is the teacher against itself with other noise (mean {floor:.3f} "
            "over the cells). Reference (paper's repository, full size): bioRNN 0.203, σRNN "
            "0.511, floor 0.167 (ratios 1.22 and 3.06). Targets here: bioRNN ratio ≤ 1.35, "
            "σRNN/bioRNN ≥ 2, σRNN unperturbed error ≤ bioRNN's.",
            "",
            "Mean over the 20 cells (2 hypotheses × 10; power 0 in both series), mean ± SEM over "
            'seeds (a seed counts once it has both hypotheses). "best epoch = last": runs whose '
            "test trial-matching loss was still at its lowest in the last epoch (not converged):",
            "",
            table(
                [
                    "model",
                    "seeds",
                    "unperturbed error",
                    "mean of 20 cells",
                    "÷ noise floor",
                    "÷ bioRNN",
                    "best epoch = last",
                    "train s (mean)",
                ],
                summary,
            ),
            "",
            "Per hypothesis (mean over seeds; power 0 → highest power):",
            "",
            table(["model", "hypothesis", *SERIES, "mean of 10 cells"], detail + floor_rows),
            "",
            "Error in ΔP(both areas active) under inactivation of area 1 at power 1 (active: the "
            "area's filtered population rate peaks above the teacher's median peak):",
            "",
            table(["model", "runs", "|ΔP_model − ΔP_teacher|"], dp_rows),
            "",
            "Micro-perturbation: change of the area-1 readout (summed filtered rate after the "
            "stimulus, Hz·bins, mean of 200 trials, replayed noise) when the 20 neurons of most "
            "positive, random or most negative mean gradient get power 0.1 for 40 ms after the "
            "stimulus; in brackets the first-order prediction Σ gradient × power × steps:",
            "",
            table(["model", "hypothesis", "seed", "positive", "random", "negative"], micro_rows),
            "",
            f"Whole table: {total / 60:.1f} min of compute summed over the runs (two runs "
            "in parallel, one thread each, on a 2-core machine shared with other jobs).",
            *provenance(records),
        ]
    )

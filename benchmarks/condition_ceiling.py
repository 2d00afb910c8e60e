"""How much of the calcium benchmark's rates a trial's condition explains, and whether its spikes
tell the condition.

The synthetic data sets repeat each condition (initial state) over several trials, which differ
only in their Poisson noise (Lorenz) or also in the timing of one input pulse (chaotic RNN). Two
reference points, next to the models of the calcium table (`benchmarks.calcium_synthetic`):

* **condition mean (oracle)**: the validation trial's rates taken as the mean true rates of its
  condition's training trials. It knows the condition and the true rates, so no model that reads
  one trial can be expected to reach it, but it says how much the trial-to-trial part leaves.
* **condition PSTH** (:func:`pyro_circuits.baselines.condition_psth`): the condition read from
  the validation trial's own spikes (Poisson likelihood under each condition's smoothed
  training PSTH), and that PSTH as its rates. Spikes only, no dynamics, no truth.

A second table scores both, and the calcium table's models, on each tenth of the trial: where
in the trial the models fall short of what the condition explains.

Regenerate::

    .venv/bin/python -m benchmarks.condition_ceiling
"""

from __future__ import annotations

import torch

from benchmarks import calcium_synthetic
from benchmarks._report import machine, read_json, update_section, write_json
from pyro_circuits import baselines, metrics

COMMAND = ".venv/bin/python -m benchmarks.condition_ceiling"
SIGMAS = (4.0, 8.0, 16.0)  # bins


def condition_mean_rates(data) -> torch.Tensor:
    """Each validation trial's rates read as the mean true rates of its condition's training
    trials."""
    labels, means = baselines.condition_average(data.train.rates, data.conditions[data.train_idx])
    return means[torch.searchsorted(labels, data.conditions[data.valid_idx])]


def participation_ratio(values: torch.Tensor) -> float:
    """The effective number of dimensions of [..., features] ``values`` (leading axes
    flattened): (Σλ)² / Σλ² over the eigenvalues λ of their covariance; d for d equal
    variances, 1 for one."""
    flat = values.reshape(-1, values.shape[-1]).double()
    variances = torch.linalg.svdvals(flat - flat.mean(0)) ** 2
    return float(variances.sum() ** 2 / (variances**2).sum())


def run(name: str) -> dict:
    make_data, recipe = calcium_synthetic.CONFIGS[name]["data"]
    data = make_data(**recipe)
    valid_conditions = data.conditions[data.valid_idx]
    psth = {}
    for sigma in SIGMAS:
        rates, chosen = baselines.condition_psth(data, sigma=sigma).predict(data.valid.counts)
        psth[sigma] = dict(
            rates_r2=metrics.r2_score(data.valid.rates, rates),
            rates_r2_by_tenth=metrics.r2_by_segment(data.valid.rates, rates),
            accuracy=float((chosen.flatten() == valid_conditions).float().mean()),
        )
    oracle = condition_mean_rates(data)
    row = dict(
        dataset=name,
        shape=tuple(data.counts.shape),
        n_conditions=len(torch.unique(data.conditions)),
        condition_mean_r2=metrics.r2_score(data.valid.rates, oracle),
        condition_mean_r2_by_tenth=metrics.r2_by_segment(data.valid.rates, oracle),
        psth=psth,
        dimension=participation_ratio(data.valid.rates),
        dimension_by_tenth=[
            participation_ratio(data.valid.rates[:, w])
            for w in metrics.time_windows(data.counts.shape[1], 10)
        ],
    )
    print(name, row["condition_mean_r2"], psth, flush=True)
    return row


def _table_rates(table: dict, method: str) -> str:
    scores = table.get(method, {})
    return f"{scores['rates_r2']:.3f}" if "rates_r2" in scores else "–"


def _markdown(rows: list[dict]) -> str:
    tables = {row["dataset"]: read_json(f"calcium_synthetic_{row['dataset']}") for row in rows}
    lines = [
        "## Calcium data: what a trial's condition explains",
        "",
        f"Regenerate: `{COMMAND}` (`benchmarks/condition_ceiling.py`). {machine()}.",
        "Rates R² on the validation trials of the calcium benchmark's data. *Condition mean*: the "
        "mean true rates of the trial's condition over its training trials (an oracle: it is "
        "told the condition and reads the true rates). *Condition PSTH*: the condition chosen by "
        "the Poisson likelihood of the trial's own spikes under each condition's training PSTH "
        "(Gaussian kernel of σ bins), and that PSTH (`baselines.condition_psth`); the accuracy is "
        "the share of trials whose condition it finds. The last two columns are the calcium "
        "table's rows on the same data.",
        "",
        "| data | trials × bins × cells | conditions | condition mean (oracle) "
        + "".join(f"| condition PSTH σ = {s:g}: R² (accuracy) " for s in SIGMAS)
        + "| LFADS on the true spikes | ladder |",
        "|---|---|---|---|" + "---|" * len(SIGMAS) + "---|---|",
    ]
    for row in rows:
        name = row["dataset"]
        table = tables[name]
        psth = "".join(
            f"| {row['psth'][s]['rates_r2']:.3f} ({row['psth'][s]['accuracy']:.3f}) "
            for s in SIGMAS
        )
        lines.append(
            f"| {name} | {' × '.join(map(str, row['shape']))} | {row['n_conditions']} "
            f"| {row['condition_mean_r2']:.3f} {psth}"
            f"| {_table_rates(table, 'lfads_spikes')} | {_table_rates(table, 'ladder')} |"
        )
    return "\n".join(lines + _by_tenth(rows, tables))


def _tenths(name: str, scores: list[float], overall: float) -> str:
    return f"| {name} | " + " | ".join(f"{x:.2f}" for x in scores) + f" | {overall:.3f} |"


def _by_tenth(rows: list[dict], tables: dict[str, dict]) -> list[str]:
    """Rates R² on each tenth of the validation trials: the oracle, the best condition PSTH and
    every model of the calcium table whose row recorded them."""
    lines = [
        "",
        "### Rates R² per tenth of the trial",
        "",
        "The same validation trials, scored on each tenth of their bins (`metrics.r2_by_segment`) "
        "against the true rates' variance in that tenth. Models: the calcium table's rows that "
        "recorded it (older rows did not). The last row is no score: the effective number of "
        "dimensions of the true rates in each tenth, (Σλ)²/Σλ² over their covariance's "
        "eigenvalues.",
    ]
    for row in rows:
        best = max(SIGMAS, key=lambda s: row["psth"][s]["rates_r2"])
        lines += [
            "",
            f"**{row['dataset']}**",
            "",
            "| rates from | " + " | ".join(f"{i}/10" for i in range(1, 11)) + " | all |",
            "|---|" + "---|" * 11,
            _tenths(
                "condition mean (oracle)",
                row["condition_mean_r2_by_tenth"],
                row["condition_mean_r2"],
            ),
            _tenths(
                f"condition PSTH σ = {best:g}",
                row["psth"][best]["rates_r2_by_tenth"],
                row["psth"][best]["rates_r2"],
            ),
        ]
        table = tables[row["dataset"]]
        for method in calcium_synthetic.METHODS:
            scores = table.get(method, {})
            if "rates_r2_by_tenth" in scores:
                label = f"{method} ({scores['date'][:16]})"
                lines.append(_tenths(label, scores["rates_r2_by_tenth"], scores["rates_r2"]))
        lines.append(
            "| *true rates' dimension (participation ratio)* | "
            + " | ".join(f"{x:.1f}" for x in row["dimension_by_tenth"])
            + f" | {row['dimension']:.1f} |"
        )
    return lines


def main() -> None:
    torch.set_num_threads(1)
    rows = [run(name) for name in calcium_synthetic.CONFIGS]
    write_json("condition_ceiling", {"rows": rows})
    update_section("condition_ceiling", _markdown(rows))


if __name__ == "__main__":
    main()

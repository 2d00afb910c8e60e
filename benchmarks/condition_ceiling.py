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


def condition_mean_r2(data) -> float:
    """R² of the validation rates against the mean true rates of their condition's training
    trials."""
    labels, means = baselines.condition_average(data.train.rates, data.conditions[data.train_idx])
    lookup = torch.searchsorted(labels, data.conditions[data.valid_idx])
    return metrics.r2_score(data.valid.rates, means[lookup])


def run(name: str) -> dict:
    make_data, recipe = calcium_synthetic.CONFIGS[name]["data"]
    data = make_data(**recipe)
    valid_conditions = data.conditions[data.valid_idx]
    psth = {}
    for sigma in SIGMAS:
        rates, chosen = baselines.condition_psth(data, sigma=sigma).predict(data.valid.counts)
        psth[sigma] = dict(
            rates_r2=metrics.r2_score(data.valid.rates, rates),
            accuracy=float((chosen.flatten() == valid_conditions).float().mean()),
        )
    row = dict(
        dataset=name,
        shape=tuple(data.counts.shape),
        n_conditions=len(torch.unique(data.conditions)),
        condition_mean_r2=condition_mean_r2(data),
        psth=psth,
    )
    print(name, row["condition_mean_r2"], psth, flush=True)
    return row


def _table_rates(table: dict, method: str) -> str:
    scores = table.get(method, {})
    return f"{scores['rates_r2']:.3f}" if "rates_r2" in scores else "–"


def _markdown(rows: list[dict]) -> str:
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
        table = read_json(f"calcium_synthetic_{name}")
        psth = "".join(
            f"| {row['psth'][s]['rates_r2']:.3f} ({row['psth'][s]['accuracy']:.3f}) "
            for s in SIGMAS
        )
        lines.append(
            f"| {name} | {' × '.join(map(str, row['shape']))} | {row['n_conditions']} "
            f"| {row['condition_mean_r2']:.3f} {psth}"
            f"| {_table_rates(table, 'lfads_spikes')} | {_table_rates(table, 'ladder')} |"
        )
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    rows = [run(name) for name in calcium_synthetic.CONFIGS]
    write_json("condition_ceiling", {"rows": rows})
    update_section("condition_ceiling", _markdown(rows))


if __name__ == "__main__":
    main()

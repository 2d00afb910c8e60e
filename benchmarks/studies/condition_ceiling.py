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
in the trial the models fall short of what the condition explains. The record keeps the calcium
benchmark's rows it is set beside (``metrics.calcium``, read from its records when this runs).

Regenerate (one record, ``benchmarks/records/condition_ceiling/all.json``)::

    .venv/bin/python -m benchmarks.studies.condition_ceiling
"""

from __future__ import annotations

import torch

from benchmarks.records import command, read_records, write_record
from pyro_circuits import metrics
from pyro_circuits.baselines import condition_average, condition_psth
from pyro_circuits.catalog import CALCIUM_CONFIGS

STUDY = "condition_ceiling"
SIGMAS = (4.0, 8.0, 16.0)  # bins


def condition_mean_rates(data) -> torch.Tensor:
    """Each validation trial's rates read as the mean true rates of its condition's training
    trials."""
    labels, means = condition_average(data.train.rates, data.conditions[data.train_idx])
    return means[torch.searchsorted(labels, data.conditions[data.valid_idx])]


def participation_ratio(values: torch.Tensor) -> float:
    """The effective number of dimensions of [..., features] ``values`` (leading axes
    flattened): (Σλ)² / Σλ² over the eigenvalues λ of their covariance; d for d equal
    variances, 1 for one."""
    flat = values.reshape(-1, values.shape[-1]).double()
    variances = torch.linalg.svdvals(flat - flat.mean(0)) ** 2
    return float(variances.sum() ** 2 / (variances**2).sum())


def run(name: str) -> dict:
    data = CALCIUM_CONFIGS[name].data.make()
    valid_conditions = data.conditions[data.valid_idx]
    psth = {}
    for sigma in SIGMAS:
        rates, chosen = condition_psth(data, sigma=sigma).predict(data.valid.counts)
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


def calcium_rows() -> dict[str, dict[str, dict]]:
    """The calcium benchmark's rows this study is set beside, from its records: per data kind
    and model, the date, rates R² and (where recorded) rates R² per tenth."""
    out: dict[str, dict[str, dict]] = {}
    for record in read_records("calcium_synthetic"):
        name, method = record["variant"].split("/")
        scores = record["metrics"]
        if "rates_r2" in scores:
            entry = {"date": record["date"], "rates_r2": scores["rates_r2"]}
            if "rates_r2_by_tenth" in scores:
                entry["rates_r2_by_tenth"] = scores["rates_r2_by_tenth"]
            out.setdefault(name, {})[method] = entry
    return out


def main() -> None:
    torch.set_num_threads(1)
    names = list(CALCIUM_CONFIGS)
    rows = [run(name) for name in names]
    path = write_record(
        STUDY,
        "all",
        command(f"benchmarks.studies.{STUDY}"),
        {"datasets": names, "sigmas": list(SIGMAS)},
        {"rows": rows, "calcium": calcium_rows()},
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

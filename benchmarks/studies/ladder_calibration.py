"""How much of the ladder's rates error a per-cell scale and offset would recover.

The calcium_synthetic table scores rates by R² per cell (1 − SSE / SST), so rates of the right
shape but the wrong scale or offset lose R². This trains the calcium benchmark's ladder
(``benchmarks.calcium_data``: its config,
``--minutes`` of one core) and scores its validation rates: as the table does (posterior mean
of 20 guide draws) and with 200 draws; after each cell's own affine map fitted on the training
trials (:func:`pyro_circuits.metrics.calibrated_r2`, what a calibration could at most recover);
and as the squared Pearson correlation of all entries pooled, which the hierarchical-LFADS
reference's later evaluation script computes. It also reports the share of the squared error
that is each cell's mean offset, the ratio of the mean estimated rate to the mean true one, and
the rates R² on the training trials (10 draws), whose excess over the validation R² is what the
deep level fits of its own trials' noise.

Regenerate (one record per data kind, ``benchmarks/records/ladder_calibration/<kind>.json``)::

    .venv/bin/python -m benchmarks.studies.ladder_calibration --dataset lorenz --minutes 60 --warmup 1500
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import calcium_data
from benchmarks.records import write_record
from pyro_circuits import metrics

STUDY = "ladder_calibration"
DRAWS = (20, 200)  # the table's posterior draws, and ten times as many


def rate_scores(truth_train, estimate_train, truth_valid, estimate_valid) -> dict:
    """The validation rates scored four ways, and the training rates' R² (module docstring);
    arrays [trials, time, cells]."""
    truth, estimate = (np.asarray(a, dtype=np.float64) for a in (truth_valid, estimate_valid))
    cells = truth.shape[-1]
    error = (estimate - truth).reshape(-1, cells)
    offset = error.mean(0)
    return {
        "r2": metrics.r2_score(truth, estimate),
        "calibrated_r2": metrics.calibrated_r2(estimate_train, truth_train, estimate, truth),
        "offset_share": float((offset**2).sum() / (error**2).mean(0).sum()),
        "mean_ratio": float(estimate.mean() / truth.mean()),
        "pooled_pearson_r2": float(np.corrcoef(truth.ravel(), estimate.ravel())[0, 1] ** 2),
        "train_r2": metrics.r2_score(truth_train, estimate_train),
    }


def run(name: str, minutes: float, warmup: int, seed: int) -> dict:
    prepared = calcium_data.prepare(name, seed)
    data, fluor = prepared.data, prepared.fluor
    fit = calcium_data.fit_ladder(name, prepared, minutes, seed, warmup)
    post_train = fit.posterior_mean(fluor[data.train_idx], num_samples=10, seed=seed)
    result = {"minutes": fit.wall_time / 60, "epochs": len(fit.history)}
    for draws in DRAWS:
        post = fit.posterior_mean(fluor[data.valid_idx], num_samples=draws, seed=seed)
        result[str(draws)] = rate_scores(
            data.train.rates, post_train["rates"], data.valid.rates, post["rates"]
        ) | {
            "latents_r2": metrics.latent_r2(
                post_train["factors"], data.train.latents, post["factors"], data.valid.latents
            )
        }
    return result


def main() -> None:
    parser = calcium_data.ladder_study_parser(__doc__.splitlines()[0], warmup=1500)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = write_record(
        STUDY,
        args.dataset,
        calcium_data.study_command(STUDY, args, "--minutes", args.minutes),
        {
            "dataset": args.dataset,
            "budget_minutes": args.minutes,
            "warmup_steps": args.warmup,
            "seed": args.seed,
            "draws": list(DRAWS),
        },
        run(args.dataset, args.minutes, args.warmup, args.seed),
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

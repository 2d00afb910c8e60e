"""How much of the ladder's rates error a per-cell scale and offset would recover.

The calcium_synthetic table scores rates by R² per cell (1 − SSE / SST), so rates of the right
shape but the wrong scale or offset lose R². This trains a calcium_synthetic ladder (its config,
``--minutes`` of one core) and scores its validation rates: as the table does (posterior mean
of 20 guide draws) and with 200 draws; after each cell's own affine map fitted on the training
trials (:func:`pyro_circuits.metrics.calibrated_r2`, what a calibration could at most recover);
and as the squared Pearson correlation of all entries pooled, which the hierarchical-LFADS
reference's later evaluation script computes. It also reports the share of the squared error
that is each cell's mean offset, the ratio of the mean estimated rate to the mean true one, and
the rates R² on the training trials (10 draws), whose excess over the validation R² is what the
deep level fits of its own trials' noise.

Regenerate::

    .venv/bin/python -m benchmarks.ladder_calibration --dataset lorenz --minutes 60 --warmup 1500
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import calcium_synthetic
from benchmarks._report import machine, read_all_json, update_section, write_json
from pyro_circuits import metrics

COMMAND = ".venv/bin/python -m benchmarks.ladder_calibration"
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
    prepared = calcium_synthetic.prepare(name, seed)
    data, fluor = prepared.data, prepared.fluor
    fit = calcium_synthetic.fit_ladder(name, prepared, minutes, seed, warmup)
    post_train = fit.posterior_mean(fluor[data.train_idx], num_samples=10, seed=seed)
    result = {
        "dataset": name,
        "minutes": fit.wall_time / 60,
        "epochs": len(fit.history),
        "warmup_steps": warmup,
        "seed": seed,
        "date": calcium_synthetic._now(),
        "machine": machine(),
    }
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


def _markdown(results: list[dict]) -> str:
    lines = [
        "## Calcium ladder: rates calibration",
        "",
        f"Regenerate: `{COMMAND} --dataset D --minutes M --warmup W` "
        "(`benchmarks/ladder_calibration.py`). Validation trials. R²: the calcium table's, per "
        "cell; calibrated: after each cell's own affine map fitted on the training trials; "
        "offset share: the part of the squared error that is each cell's mean offset; mean "
        "ratio: mean estimated rate over mean true rate; pooled r²: squared Pearson correlation "
        "of all entries (the reference's `infer_latent.py`); train R²: the rates R² on the training "
        "trials (10 draws), against which the validation R² shows overfitting.",
        "",
        "| data set, run | draws | latents R² | rates R² | calibrated | offset share | mean ratio "
        "| pooled r² | train R² |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        run_label = (
            f"{r['dataset']}, {r['minutes']:.1f} min, {r['epochs']} epochs, warm-up "
            f"{r['warmup_steps']}, seed {r['seed']}, {r['date']}"
        )
        for draws in DRAWS:
            s = r[str(draws)]
            lines.append(
                f"| {run_label} | {draws} | {s['latents_r2']:.3f} | {s['r2']:.3f} | "
                f"{s['calibrated_r2']:.3f} | {s['offset_share']:.3f} | {s['mean_ratio']:.3f} | "
                f"{s['pooled_pearson_r2']:.3f} | {s['train_r2']:.3f} |"
            )
    machines = sorted({r["machine"] for r in results})
    return "\n".join(lines + ["", *(f"{m}." for m in machines)])


def main() -> None:
    parser = calcium_synthetic.ladder_study_parser(__doc__.splitlines()[0], warmup=1500)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    write_json(
        f"ladder_calibration_{args.dataset}",
        run(args.dataset, args.minutes, args.warmup, args.seed),
    )
    results = read_all_json("ladder_calibration_")
    update_section("ladder_calibration", _markdown(results))


if __name__ == "__main__":
    main()

"""Hyper-parameter search of LFADS on the Lorenz data (``pyro_circuits.tune``, Ray Tune + ASHA).

The data are the LFADS benchmark's Lorenz set (:data:`pyro_circuits.catalog.LFADS_CONFIGS`,
``benchmarks/lfads_synthetic.py``). A random search of :func:`space` (the learning rate, the KL
warm-up, the L2 penalty, coordinated dropout and dropout, around the catalogue's Lorenz values;
the sizes are the catalogue's) runs ``--trials`` trials of at most ``--epochs`` epochs on a
local Ray of 2 CPUs, ASHA stopping the weaker trials from ``--grace`` epochs on; the first trial
takes the catalogue's values of those settings (``start``), the others are drawn. The
catalogue's Lorenz settings themselves (the default configuration) are also trained on their
own with the same epoch budget, the same data, seed and scoring. Both are scored on the validation trials' held-out neurons:
co-bps of the rates of the guide's means at the best epoch (what the search maximises) and of
the sample-averaged posterior (50 draws) of that epoch's fit. One record,
``benchmarks/records/tune_lfads/lorenz.json``; regenerate::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.tune_lfads

Target: the best configuration's validation co-bps at least the default configuration's.
"""

from __future__ import annotations

import argparse
import os
import time

import ray
import torch

from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.catalog import LFADS_CONFIGS
from pyro_circuits.tune import tune

BENCHMARK = "tune_lfads"
DEFAULTS = {"trials": 10, "epochs": 16, "grace": 4, "seed": 0}


def _sampled_co_bps(fit, data, seed: int) -> float:
    """Validation co-bps of the sample-averaged posterior rates (50 draws)."""
    valid = data.valid
    rates = fit.posterior_mean(valid.counts, seed=seed)["rates"]
    return metrics.co_bps(rates, valid.counts, data.heldout, data.dt)


def space() -> dict:
    """The search space: a neighbourhood of the catalogue's Lorenz settings, the sizes fixed.
    :func:`pyro_circuits.tune.default_space` (any sizes, warm-ups far shorter) is wider than a
    budget of a few trials of a few epochs explores."""
    from ray import tune as ray_tune

    return {
        "lr": ray_tune.loguniform(5e-3, 2e-2),
        "kl_warmup": ray_tune.choice([1000, 1500, 3000]),
        "l2_scale": ray_tune.loguniform(100.0, 2000.0),
        "cd_rate": ray_tune.uniform(0.2, 0.5),
        "dropout": ray_tune.uniform(0.0, 0.15),
    }


def _defaults(config) -> dict:
    """The catalogue's values of the searched settings."""
    options = config.model | config.guide | config.train
    return {key: options[key] for key in space()}


def _describe(domain) -> str:
    """A Ray Tune domain as the call that makes it, e.g. ``loguniform(0.001, 0.03)``."""
    if hasattr(domain, "categories"):
        return f"choice({list(domain.categories)})"
    kind = type(domain.get_sampler()).__name__.strip("_").lower()
    return f"{kind}({domain.lower:g}, {domain.upper:g})"


def _summary(result, data, seed: int, minutes: float) -> dict:
    return {
        "co_bps": result.best,
        "sampled_co_bps": _sampled_co_bps(result.fit, data, seed),
        "epochs": len(result.fit.history),
        "config": result.config,
        "minutes": minutes,
    }


def run(trials: int, epochs: int, grace: int, seed: int, progress: bool) -> dict:
    """The search and the default configuration; the record's configuration and metrics."""
    config = LFADS_CONFIGS["lorenz"]
    data = config.data.make()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        searched = tune(
            data,
            space(),
            base=config,
            num_samples=trials,
            max_epochs=epochs,
            grace_period=grace,
            start=[_defaults(config)],
            seed=seed,
            progress=progress,
        )
        search_minutes = (time.perf_counter() - start) / 60
        start = time.perf_counter()
        default = tune(
            data,
            {"lr": config.train["lr"]},
            base=config,
            num_samples=1,
            max_epochs=epochs,
            scheduler="fifo",
            seed=seed,
            progress=progress,
        )
        default_minutes = (time.perf_counter() - start) / 60
    finally:
        ray.shutdown()
    best = _summary(searched, data, seed, search_minutes)
    reference = _summary(default, data, seed, default_minutes)
    table = searched.trials.drop(columns="error").sort_values("co_bps", ascending=False)
    configuration = {
        "data": str(config.data),
        "n_train": len(data.train_idx),
        "n_valid": len(data.valid_idx),
        "heldout": len(data.heldout),
        "base": config.as_dict(),
        "space": {key: _describe(domain) for key, domain in space().items()},
        "trials": trials,
        "max_epochs": epochs,
        "scheduler": "asha",
        "grace_period": grace,
        "ray_cpus": 2,
        "start": _defaults(config),
        "seed": seed,
    }
    result = {
        "best": best,
        "default": reference,
        "gain_co_bps": best["co_bps"] - reference["co_bps"],
        "target_met": best["co_bps"] >= reference["co_bps"],
        "best_is_start": best["config"] == _defaults(config),
        "trials": table.to_dict(orient="records"),
        "load_average": list(os.getloadavg()),  # the CPUs may be shared with other jobs
    }
    return {"configuration": configuration, "metrics": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=DEFAULTS["trials"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--grace", type=int, default=DEFAULTS["grace"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--notes", help="notes stored with the record (e.g. shared CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args.trials, args.epochs, args.grace, args.seed, not args.no_progress)
    options: list[object] = []
    for key, value in DEFAULTS.items():
        if getattr(args, key) != value:
            options += [f"--{key}", getattr(args, key)]
    path = write_record(
        BENCHMARK,
        "lorenz",
        "OMP_NUM_THREADS=1 " + command(f"benchmarks.{BENCHMARK}", *options),
        result["configuration"],
        result["metrics"],
        notes=args.notes,
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`", flush=True)


if __name__ == "__main__":
    main()

"""Hyper-parameter search of LFADS on the Lorenz data (``pyro_circuits.tune``, Ray Tune).

The data are the LFADS benchmark's Lorenz set (:data:`pyro_circuits.catalog.LFADS_CONFIGS`,
``benchmarks/lfads_synthetic.py``). A search of :func:`space` (the learning rate, the KL
warm-up, the L2 penalty, coordinated dropout and dropout, around the catalogue's Lorenz values;
the sizes are the catalogue's) runs ``--trials`` trials of at most ``--epochs`` epochs on a
local Ray of 2 CPUs; the first trial takes the catalogue's values of those settings
(``start``), the others are drawn. ``--scheduler asha``: random search, ASHA stopping the weaker
trials from ``--grace`` epochs on (variant ``lorenz``); ``--scheduler pbt``: the trials are one
population of synchronous population-based training, every ``--grace`` epochs the worst quarter
continuing the best quarter's states with perturbed settings (variant ``lorenz_pbt``).

The catalogue's Lorenz settings themselves (the default configuration) are trained on their own
with the same epoch budget, data and scoring, at ``--seed`` (the search's seed) and at the next
seed (the scale of the seed noise), in two processes before the search. Every run is scored on
the validation trials' held-out neurons: co-bps of the rates of the guide's means at its best
epoch (what the search maximises) and of the sample-averaged posterior (50 draws) of that
epoch's fit. The search's result is judged on its best *searched* trial: any trial but the
seeded default's own (a drawn one, or under PBT one continuing another's state with perturbed
settings). Records ``benchmarks/records/tune_lfads/<variant>.json``; regenerate::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.tune_lfads
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.tune_lfads --scheduler pbt --trials 10

Target: the best searched configuration's validation co-bps at least the default's.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import ray
import torch

from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.catalog import LFADS_CONFIGS
from pyro_circuits.svi import Callback, SVIFit
from pyro_circuits.tune import score, train_config, tune

BENCHMARK = "tune_lfads"
DEFAULTS = {"trials": 10, "epochs": 16, "grace": 4, "seed": 0, "scheduler": "asha"}
VARIANTS = {"asha": "lorenz", "pbt": "lorenz_pbt"}


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


class _BestEpoch(Callback):
    """The validation co-bps after each epoch (as a search's trial reports it) and the
    parameters of the best epoch."""

    def __init__(self, data) -> None:
        self.data, self.co_bps, self.epoch, self.states = data, -math.inf, 0, None

    def on_epoch_end(self, loop, record, monitored) -> bool:
        value = score(SVIFit(loop.model, loop.guide), self.data)
        if value > self.co_bps:
            self.co_bps, self.epoch = value, record["epoch"] + 1
            self.states = copy.deepcopy((loop.model.state_dict(), loop.guide.state_dict()))
        return False


def _default_run(seed: int, epochs: int) -> dict:
    """The default configuration trained as a search's trial is, at ``seed`` (one process)."""
    torch.set_num_threads(1)
    config = LFADS_CONFIGS["lorenz"]
    data = config.data.make()
    start, best = time.perf_counter(), _BestEpoch(data)
    fit = train_config(data, {"lr": config.train["lr"]}, base=config, max_epochs=epochs,
                       seed=seed, callbacks=[best], progress=False)  # fmt: skip
    fit.model.load_state_dict(best.states[0])
    fit.guide.load_state_dict(best.states[1])
    return {
        "seed": seed,
        "co_bps": best.co_bps,
        "sampled_co_bps": _sampled_co_bps(fit, data, seed),
        "epochs": best.epoch,
        "config": _defaults(config),
        "minutes": (time.perf_counter() - start) / 60,
    }


def _default_runs(seeds: list[int], epochs: int) -> list[dict]:
    """:func:`_default_run` at each seed, in parallel processes."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(seeds), mp_context=context) as pool:
        return list(pool.map(_default_run, seeds, [epochs] * len(seeds)))


def _reports(folder: Path) -> pd.DataFrame:
    """Every epoch's report of every trial of the search stored under ``folder``."""
    frames = []
    for progress in folder.glob("*/*/progress.csv"):
        frame = pd.read_csv(progress)
        frames.append(frame.assign(folder=str(progress.parent)))
    return pd.concat(frames, ignore_index=True)


def _policy(folder: Path, trial_id: str) -> list:
    """Population-based training's record of a trial's lineage: one entry per exploitation
    (the trial, the trial it continued, their epochs, the old and the new settings)."""
    paths = list(folder.glob(f"*/pbt_policy_{trial_id}.txt"))
    if not paths:
        return []
    return [json.loads(line) for line in paths[0].read_text().splitlines() if line.strip()]


def _best_searched(folder: Path, data, seed: int) -> dict:
    """The best epoch of any trial but the seeded default's own (trial ``..._00000``): its
    co-bps, the settings it trained with at that epoch and its lineage under PBT."""
    reports = _reports(folder)
    searched = reports[~reports["trial_id"].str.endswith("_00000")]
    row = searched.loc[searched["co_bps"].idxmax()]
    checkpoint = Path(row["folder"]) / row["checkpoint_dir_name"]
    fit = SVIFit.load(checkpoint / "fit.pt")
    loop = torch.load(checkpoint / "loop.ckpt", weights_only=False)
    return {
        "co_bps": float(row["co_bps"]),
        "sampled_co_bps": _sampled_co_bps(fit, data, seed),
        "epochs": int(row["epoch"]),
        "trial": str(row["trial_id"]),
        "config": {key: loop["tune_config"][key] for key in space()},
        "lineage": _policy(folder, str(row["trial_id"])),
    }


def _search(data, config, args) -> tuple:
    """The search on a local Ray of 2 CPUs: its result, its best searched trial, minutes."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tune-lfads-") as folder:
            start = time.perf_counter()
            result = tune(data, space(), base=config, num_samples=args.trials,
                          max_epochs=args.epochs, scheduler=args.scheduler,
                          grace_period=args.grace, start=[_defaults(config)], seed=args.seed,
                          storage_path=folder, progress=not args.no_progress)  # fmt: skip
            minutes = (time.perf_counter() - start) / 60
            searched = _best_searched(Path(folder), data, args.seed)
    finally:
        ray.shutdown()
    return result, searched | {"minutes": minutes}, minutes


def _configuration(data, config, args) -> dict:
    return {
        "data": str(config.data),
        "n_train": len(data.train_idx),
        "n_valid": len(data.valid_idx),
        "heldout": len(data.heldout),
        "base": config.as_dict(),
        "space": {key: _describe(domain) for key, domain in space().items()},
        "trials": args.trials,
        "max_epochs": args.epochs,
        "scheduler": args.scheduler,
        "grace_period": args.grace,
        "ray_cpus": 2,
        "start": _defaults(config),
        "seed": args.seed,
        "default_seeds": [args.seed, args.seed + 1],
    }


def run(args) -> dict:
    """The default configuration at two seeds, then the search; the record's configuration
    and metrics."""
    config = LFADS_CONFIGS["lorenz"]
    data = config.data.make()
    default, second = _default_runs([args.seed, args.seed + 1], args.epochs)
    result, searched, minutes = _search(data, config, args)
    best = {
        "co_bps": result.best,
        "sampled_co_bps": _sampled_co_bps(result.fit, data, args.seed),
        "epochs": len(result.fit.history),
        "config": result.config,
        "minutes": minutes,
    }
    table = result.trials.drop(columns="error").sort_values("co_bps", ascending=False)
    metrics_ = {
        "best": best,
        "searched": searched,
        "default": default,
        "default_next_seed": second,
        "seed_noise_co_bps": abs(default["co_bps"] - second["co_bps"]),
        "gain_co_bps": searched["co_bps"] - default["co_bps"],
        "target_met": searched["co_bps"] >= default["co_bps"],
        "best_is_start": best["config"] == _defaults(config),
        "trials": table.to_dict(orient="records"),
        "load_average": list(os.getloadavg()),  # the CPUs may be shared with other jobs
    }
    return {"configuration": _configuration(data, config, args), "metrics": metrics_}


def _exploit(entry: list, keys) -> str:
    """One line of a PBT policy log (Ray Tune's ``pbt_policy_<trial>.txt``) in words."""
    trial, source, epoch, source_epoch, old, new = entry
    changes = ", ".join(f"{key} {old[key]:.4g} -> {new[key]:.4g}" for key in keys)
    return (
        f"after epoch {epoch} trial '{trial}' continued trial '{source}''s state of epoch "
        f"{source_epoch} with {changes}"
    )


def _notes(result: dict, extra: str | None) -> str:
    """What the search found, in words, with ``extra`` (e.g. that the CPUs were shared)."""
    conf, m = result["configuration"], result["metrics"]
    searched, default = m["searched"], m["default"]
    settings = ", ".join(f"{key}={value:.4g}" for key, value in searched["config"].items())
    text = (
        f"The best searched trial ({searched['trial']}, the seeded default's own trial excluded) "
        f"scored {searched['co_bps']:.4f} validation co-bps at epoch {searched['epochs']} "
        f"against the default's {default['co_bps']:.4f} at seed {default['seed']} "
        f"({m['default_next_seed']['co_bps']:.4f} at seed {m['default_next_seed']['seed']}); "
        f"its settings at that epoch: {settings}."
    )
    if conf["scheduler"] == "pbt":
        steps = "; ".join(_exploit(entry, searched["config"]) for entry in searched["lineage"])
        text += (
            " Under population-based training these are the last of a schedule (perturbation "
            f"interval {conf['grace_period']} epochs): "
            + (steps or "the trial was never exploited, so its drawn settings held throughout")
            + "."
        )
    return text if not extra else f"{text} {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in ("trials", "epochs", "grace", "seed"):
        parser.add_argument(f"--{key}", type=int, default=DEFAULTS[key])
    parser.add_argument("--scheduler", choices=sorted(VARIANTS), default=DEFAULTS["scheduler"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--notes", help="notes stored with the record (e.g. shared CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args)
    options: list[object] = []
    for key, value in DEFAULTS.items():
        if getattr(args, key) != value:
            options += [f"--{key}", getattr(args, key)]
    path = write_record(
        BENCHMARK,
        VARIANTS[args.scheduler],
        "OMP_NUM_THREADS=1 " + command(f"benchmarks.{BENCHMARK}", *options),
        result["configuration"],
        result["metrics"],
        notes=_notes(result, args.notes),
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`", flush=True)


if __name__ == "__main__":
    main()

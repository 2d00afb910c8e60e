"""The step time of LFADS training on the Lightning Trainer against a plain-torch loop.

Regenerate: ``.venv/bin/python -m benchmarks.svi_step_time``

On the Lorenz benchmark's configuration (:data:`pyro_circuits.catalog.LFADS_CONFIGS`
``["lorenz"]``: its data, networks, batch size, learning rate, KL and L2 warm-ups), one torch
thread, ``--rounds`` times (which side goes first alternates): ``--epochs`` epochs of
:func:`pyro_circuits.svi.train` (Pyro's ELBO, the package's hooks, the Lightning Trainer) and as
many epochs of a plain-torch loop over the same trial orders (the same ELBO written by hand,
``benchmarks.lfads_synthetic._torch_loss``, the L2 penalty and its warm-up, Adam, gradient-norm
clipping; the KL warm-up, a scalar factor, is left out). Each side's step time is the interval
between the ends of consecutive optimiser steps (everything a step costs: batching, hooks, the
Trainer's own work), and the figure is the median over all rounds; the issue's target is a
ratio of at most 1.3. Coordinated dropout is off on both sides (the hand-written loss has
none), and neither side validates. For context, the forward and backward pass alone of one
batch is timed too (``benchmarks.lfads_synthetic._pyro_overhead``: Pyro's ELBO against the
hand-written one, alternately).

Then a short run of the full configuration (coordinated dropout, validation on a tenth of the
training trials) writes a TensorBoard log to ``benchmarks/output/svi_step_time_tensorboard/``
(a ``version_<n>`` folder per run).
One record per run of this script (``benchmarks/records/svi_step_time/<date>-<commit>.json``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch
from lightning.pytorch.loggers import TensorBoardLogger

from benchmarks.lfads_synthetic import _pyro_overhead, _torch_loss
from benchmarks.records import ROOT, command, current_commit, now, write_record
from pyro_circuits.catalog import LFADS_CONFIGS
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import Callback, train, trained_parameters
from pyro_circuits.svi.elbo import recurrent_l2
from pyro_circuits.svi.schedules import ramp

BENCHMARK = "svi_step_time"
TARGET = 1.3
#: The TensorBoard log of the short run (a folder per run of the script, ``version_<n>``).
LOG_DIR = ROOT / "benchmarks" / "output" / "svi_step_time_tensorboard"


class StepClock(Callback):
    """The seconds between the ends of consecutive optimiser steps of a :func:`train` run."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._last: float | None = None

    def on_train_begin(self, loop) -> None:
        self._last = None

    def on_step_end(self, loop, loss) -> None:
        clock = time.perf_counter()
        if self._last is not None:
            self.intervals.append(clock - self._last)
        self._last = clock

    def settings(self) -> None:
        return None  # changes nothing of the training


def torch_epochs(model, guide, counts, options: dict, epochs: int, seed: int) -> list[float]:
    """``epochs`` epochs of the plain-torch loop (the trial orders :func:`train` uses); the
    intervals between the ends of consecutive steps."""
    params = trained_parameters(model, guide)
    optimizer = torch.optim.Adam(params, lr=options["lr"])
    model.train()
    guide.train()
    intervals, last, step = [], None, 0
    for epoch in range(epochs):
        order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed + epoch))
        for idx in order.split(options["batch_size"]):
            l2 = options["l2_scale"] * ramp(step, options["l2_warmup"])
            loss = _torch_loss(model, guide, counts[idx]) + l2 * recurrent_l2((model, guide))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 200.0)
            optimizer.step()
            step += 1
            clock = time.perf_counter()
            if last is not None:
                intervals.append(clock - last)
            last = clock
    return intervals


def measure(epochs: int, rounds: int, seed: int) -> dict:
    """Both sides' step times, ``rounds`` alternations of ``epochs`` epochs each."""
    config = LFADS_CONFIGS["lorenz"]
    data = config.data.make()
    counts = data.train.counts
    options = dict(config.train, cd_rate=0.0)
    options.pop("patience")
    torch.manual_seed(seed)
    model = LFADS(counts.shape[-1], dt=data.dt, **config.model).init_readout(counts)
    guide = LFADSEncoder(model, observed=data.heldin, **config.guide)

    def lightning() -> list[float]:
        clock = StepClock()
        train(copy.deepcopy(model), copy.deepcopy(guide), counts, max_epochs=epochs, seed=seed,
              callbacks=[clock], progress=False, **options)  # fmt: skip
        return clock.intervals

    def plain() -> list[float]:
        return torch_epochs(
            copy.deepcopy(model), copy.deepcopy(guide), counts, options, epochs, seed
        )

    times: dict[str, list[float]] = {"lightning": [], "torch": []}
    for round_ in range(rounds):  # which side goes first alternates too
        sides = [("lightning", lightning), ("torch", plain)]
        for name, side in sides[:: 1 if round_ % 2 == 0 else -1]:
            times[name] += side()
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "forward_backward": _pyro_overhead(model, guide, counts[: options["batch_size"]]),
        "lightning_step_s": medians["lightning"],
        "torch_step_s": medians["torch"],
        "ratio": medians["lightning"] / medians["torch"],
        "within_target": medians["lightning"] / medians["torch"] <= TARGET,
        "steps_timed": {name: len(values) for name, values in times.items()},
        "n_trials": len(counts),
    }


def tensorboard_run(epochs: int, seed: int) -> dict:
    """A short run of the full Lorenz configuration logged to TensorBoard under
    :data:`LOG_DIR`; its last record and the event file's path."""
    config = LFADS_CONFIGS["lorenz"]
    data = config.data.make()
    counts = data.train.counts
    n_fit = int(0.9 * len(counts))
    torch.manual_seed(seed)
    model = LFADS(counts.shape[-1], dt=data.dt, **config.model).init_readout(counts[:n_fit])
    guide = LFADSEncoder(model, observed=data.heldin, **config.guide)
    logger = TensorBoardLogger(LOG_DIR, name="")  # a new version_<n> folder per run
    fit = train(model, guide, counts[:n_fit], valid_counts=counts[n_fit:], max_epochs=epochs,
                seed=seed, logger=logger, progress=False,
                **config.train)  # fmt: skip
    (events,) = Path(logger.log_dir).glob("events.out.tfevents.*")
    last = fit.history[-1]
    return {
        "event_file": str(events.relative_to(ROOT)),
        "epochs": len(fit.history),
        "last_loss": last["loss"],
        "last_valid_loss": last["valid_loss"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--log-epochs", type=int, default=2, help="epochs of the logged run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notes", default="", help="prose stored with the record")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    metrics = measure(args.epochs, args.rounds, args.seed)
    print(metrics, flush=True)
    metrics["tensorboard"] = tensorboard_run(args.log_epochs, args.seed)
    metrics["load_1min_before"] = round(load, 2)
    metrics["load_1min_after"] = round(os.getloadavg()[0], 2)
    date, commit = now(), current_commit()
    write_record(
        BENCHMARK,
        f"{date.removesuffix('+00:00')}-{commit}",
        command(f"benchmarks.{BENCHMARK}", "--epochs", args.epochs, "--rounds", args.rounds),
        {
            "config": "lorenz",
            "epochs": args.epochs,
            "rounds": args.rounds,
            "log_epochs": args.log_epochs,
            "seed": args.seed,
            "target_ratio": TARGET,
            "threads": 1,
        },
        metrics,
        notes=args.notes or None,
        commit=commit,
        date=date,
    )


if __name__ == "__main__":
    main()

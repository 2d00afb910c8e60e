"""Why the ladder's deep level learned nothing, and what makes it learn (Lorenz fluorescence).

400 training / 100 validation trials of the calcium_synthetic Lorenz recipe (sizes of its
``lorenz`` config, warm-up, hold and ramp 300 steps, batch 64, no early stopping). Two parts:

* ``encoder_<input>``: LFADS scoring the **true spikes** (Poisson) while its encoder reads
  ``spikes``, the raw ``fluorescence`` or its AR(1) ``innovation`` F_t − (1 − dt/τ) F_{t−1}.
  This isolates what the dynamics-level encoder can read.
* ``ladder_<variant>``: the ladder model (σ fixed at 0.2) with ``cut`` (the default: the spike
  level reads detached factors, so only the Poisson tie and the deep KL train the deep model) or
  ``end_to_end`` (``train_deep_through_spikes=True``); validation R² every ``--chunk`` epochs.

Regenerate (each part is one record, ``benchmarks/records/ladder_deep_level/<part>.json``)::

    .venv/bin/python -m benchmarks.studies.ladder_deep_level encoder_spikes   # also
    .venv/bin/python -m benchmarks.studies.ladder_deep_level ladder_cut       # encoder_fluorescence,
    # encoder_innovation, ladder_end_to_end
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.checks import check_counts
from pyro_circuits.datasets import lorenz
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.calcium import CalciumFluorescence, fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import Staged, train

STUDY = "ladder_deep_level"
ENCODER_INPUTS = ("spikes", "fluorescence", "innovation")
LADDER_VARIANTS = {"cut": False, "end_to_end": True}
PARTS = [f"encoder_{name}" for name in ENCODER_INPUTS] + [f"ladder_{v}" for v in LADDER_VARIANTS]
DEEP = dict(ic_dim=64, gen_dim=64, fac_dim=3, dropout=0.05)
TRAIN = dict(batch_size=64, l2_scale=250.0, lr=1e-2, seed=0, progress=False)
WARMUP = 300


class _SpikesModel(LFADS):
    """LFADS scoring the spike half of [spikes | evidence]; its encoder reads the other half."""

    def forward(self, data, inputs=None, **options):
        spikes = data[..., : self.n_neurons]
        super().check_data(spikes, inputs)
        return super().forward(spikes, inputs, **options)

    def check_data(self, data, inputs=None) -> None:
        check_counts(data, "data", integer=False)  # the spikes are checked in forward

    def encoder_input(self, data):
        return data[..., self.n_neurons :]


def _data():
    data = lorenz(n_neurons=30, seed=0)
    _, fluor = fluorescence_from_spikes(data.counts, dt=data.dt, seed=0, tau=0.4, sigma=0.2)
    return data, fluor, data.train_idx[:400], data.valid_idx[:100]


def encoder_input(name: str, epochs: int) -> dict:
    data, fluor, fit_idx, valid_idx = _data()
    evidence = {
        "spikes": data.counts.float(),
        "fluorescence": fluor,
        "innovation": CalciumFluorescence(30, dt=data.dt, tau=0.4).innovation(fluor),
    }[name]
    both = torch.cat([data.counts.float(), evidence], -1)
    torch.manual_seed(0)
    model = _SpikesModel(30, dt=data.dt, **DEEP).init_readout(data.counts[fit_idx])
    guide = LFADSEncoder(model, enc_dim=64, dropout=0.05)
    start = time.perf_counter()
    fit = train(
        model,
        guide,
        both[fit_idx],
        max_epochs=epochs,
        kl_warmup=WARMUP,
        l2_warmup=WARMUP,
        **TRAIN,
    )
    post = fit.posterior_mean(both[valid_idx], num_samples=10, seed=0)
    return {
        "part": f"encoder_{name}",
        "steps": fit.history[-1]["step"],
        "minutes": (time.perf_counter() - start) / 60,
        "rates_r2": metrics.r2_score(data.rates[valid_idx], post["rates"]),
    }


def ladder(variant: str, epochs: int, chunk: int) -> dict:
    data, fluor, fit_idx, valid_idx = _data()
    torch.manual_seed(0)
    model = CalciumLFADS(
        30,
        dt=data.dt,
        calcium=dict(tau=0.4, sigma=0.2, learn=()),
        z_dim=64,
        train_deep_through_spikes=LADDER_VARIANTS[variant],
        **DEEP,
    ).init_readout(fluor[fit_idx] * data.dt / 0.4)
    guide = LadderEncoder(model, deep=dict(enc_dim=64, dropout=0.05), enc_dim=32, con_dim=32)
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as folder:
        for stop in range(chunk, epochs + 1, chunk):  # each call resumes from the checkpoint
            fit = train(
                model,
                guide,
                fluor[fit_idx],
                max_epochs=stop,
                kl_warmup=WARMUP,
                staged=Staged(hold=WARMUP, ramp=WARMUP),
                checkpoint=Path(folder) / "ladder.ckpt",
                **TRAIN,
            )
            post = fit.posterior_mean(fluor[valid_idx], num_samples=5, seed=0)
            rows.append(
                {
                    "step": fit.history[-1]["step"],
                    "minutes": (time.perf_counter() - start) / 60,
                    "spikes_r2": metrics.r2_score(data.counts[valid_idx], post["spikes"]),
                    "fluor_r2": metrics.r2_score(fluor[valid_idx], post["calcium"]),
                    "rates_r2": metrics.r2_score(data.rates[valid_idx], post["rates"]),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return {"part": f"ladder_{variant}", "trajectory": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--epochs", type=int, default=320, help="epochs of 7 steps")
    parser.add_argument("--chunk", type=int, default=80, help="ladder epochs between R² reads")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kind, name = args.part.split("_", 1)
    result = (
        encoder_input(name, args.epochs)
        if kind == "encoder"
        else ladder(name, args.epochs, args.chunk)
    )
    options = [args.part]
    if (args.epochs, args.chunk) != (320, 80):
        options += ["--epochs", args.epochs, "--chunk", args.chunk]
    path = write_record(
        STUDY,
        args.part,
        command(f"benchmarks.studies.{STUDY}", *options),
        {"part": args.part, "epochs": args.epochs, "chunk": args.chunk},
        {k: v for k, v in result.items() if k != "part"},
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

"""EPI on the rank-2 RNN stable-amplification property across network sizes (paper Fig. 2A/B).

Regenerate: ``.venv/bin/python -m benchmarks.epi_rank2 --sizes 2 5 10 25 50 --seeds 1 2 --epochs 10``

Settings are the paper's (Methods, "EPI details for RNNs"), those of ``MODELS["rank2_rnn"]`` of
:mod:`pyro_circuits.catalog`: real NVP with 3 coupling stages of 2 × 100 units, c0 = 1e3,
N = 200, β = 4, 500 iterations per epoch, N_test = 200, raw (unstandardised) constraints as in
the paper; at most ``--epochs`` epochs, stopping at the first converged one. Times include the
Gaussian initialisation (as the paper's do); simulation counts exclude it (as the paper's do).
The sweep is one record, ``benchmarks/records/epi_rank2/paper-settings.json``, written after
every run (``--resume`` keeps its rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from benchmarks.records import command, read_records, write_record
from pyro_circuits import epi
from pyro_circuits.catalog import MODELS

BENCHMARK, VARIANT = "epi_rank2", "paper-settings"


def first_within(trace, prop, threshold: float = 0.5) -> int | None:
    """Simulations at the first logged step whose minibatch ‖E f − μ‖₂ is below ``threshold``."""
    means = [f"R {name}" for name in prop.constraint_names if name.startswith("E[")]
    distance = np.sqrt((trace[means] ** 2).sum(axis=1))
    hits = trace["simulations"][distance < threshold]
    return int(hits.iloc[0]) if len(hits) else None


def run(n: int, seed: int, epochs: int) -> dict:
    entry = MODELS["rank2_rnn"]
    model, prop = entry.build(n), entry.property()
    config = dataclasses.replace(entry.config, epochs=epochs, stop_early=True)
    start = time.perf_counter()
    result = epi(model, prop, flow=entry.flow, config=config, seed=seed, progress=False)
    wall = time.perf_counter() - start
    predictive = result.predictive(2000, seed=0)
    return {
        "n": n,
        "dim": 4 * n,
        "seed": seed,
        "converged": result.converged,
        "epoch": result.epoch,
        "simulations": result.simulations,
        "simulations_to_mean_within_0.5": first_within(result.trace, prop),
        "wall_time_s": wall,
        "entropy": result.selected_entropy,
        "mean_real_lambda": predictive["real_lambda"].mean().item(),
        "mean_sym_lambda": predictive["sym_lambda"].mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 25, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep rows already recorded")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    done = {}
    if args.resume:
        for record in read_records(BENCHMARK):
            if record["variant"] == VARIANT:
                done = {(r["n"], r["seed"]): r for r in record["metrics"]["rows"]}
    for n in args.sizes:
        for seed in args.seeds:
            if (n, seed) not in done:
                done[(n, seed)] = run(n, seed, args.epochs)
                print(done[(n, seed)], flush=True)
            rows = sorted(done.values(), key=lambda r: (r["n"], r["seed"]))
            sizes = sorted({r["n"] for r in rows})
            write_record(  # after every run, so a partial sweep is kept
                BENCHMARK,
                VARIANT,
                command(
                    f"benchmarks.{BENCHMARK}",
                    "--sizes",
                    *sizes,
                    "--seeds",
                    *args.seeds,
                    "--epochs",
                    args.epochs,
                ),
                {
                    "sizes": sizes,
                    "seeds": list(args.seeds),
                    "epochs": args.epochs,
                    "config": repr(
                        dataclasses.replace(MODELS["rank2_rnn"].config, stop_early=True)
                    ),
                },
                {"rows": rows},
            )
    print("docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

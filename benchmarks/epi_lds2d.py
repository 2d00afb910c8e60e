"""EPI on the 2-D linear system (paper Fig. 1): convergence, entropy, and the shape of q.

Regenerate: ``.venv/bin/python -m benchmarks.epi_lds2d --seeds 0 1 2 3 4``

Uses the settings of ``pyro-circuits epi lds2d`` (the demo; ``MODELS["lds2d"]`` of
:mod:`pyro_circuits.catalog`). Checks the issue's acceptance figures on each seed: the
convergence test, std of (a11 + a22)/2 within 20 % of 0.25, and each of the two modes
(a12 > 0 > a21, a12 < 0 < a21) carrying at least 25 % of the mass. The seeds are one record,
``benchmarks/records/epi_lds2d/demo-settings.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.records import command, write_record
from pyro_circuits import epi
from pyro_circuits.catalog import MODELS

BENCHMARK = "epi_lds2d"


def shape_of_q(result, n: int = 20_000) -> dict:
    draws = result.sample(n, seed=0)
    half_trace = (draws["a11"] + draws["a22"]) / 2
    return {
        "std_half_trace": half_trace.std().item(),
        "mode_a12_pos": ((draws["a12"] > 0) & (draws["a21"] < 0)).float().mean().item(),
        "mode_a12_neg": ((draws["a12"] < 0) & (draws["a21"] > 0)).float().mean().item(),
    }


def run(seed: int) -> dict:
    entry = MODELS["lds2d"]
    start = time.perf_counter()
    result = epi(
        entry.build(0),
        entry.property(),
        flow=entry.flow,
        config=entry.config,
        seed=seed,
        progress=False,
    )
    wall = time.perf_counter() - start
    table = result.check()
    row = {
        "seed": seed,
        "converged": result.converged,
        "epoch": result.epoch,
        "entropy": result.selected_entropy,
        "simulations": result.simulations,
        "wall_time_s": wall,
        "achieved": table.to_dict(orient="records"),
        **shape_of_q(result),
    }
    row["pass"] = bool(
        row["converged"]
        and table["converged"].all()
        and abs(row["std_half_trace"] - 0.25) <= 0.05
        and min(row["mode_a12_pos"], row["mode_a12_neg"]) >= 0.25
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run(seed) for seed in args.seeds]
    for row in rows:
        print(row, flush=True)
    path = write_record(
        BENCHMARK,
        "demo-settings",
        command(f"benchmarks.{BENCHMARK}", "--seeds", *args.seeds),
        {"seeds": list(args.seeds), "config": str(MODELS["lds2d"].config)},
        {"rows": rows},
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

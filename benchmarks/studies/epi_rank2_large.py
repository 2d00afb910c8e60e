"""Why does EPI on the rank-2 RNN at n = 250 come within 0.5 of μ and then collapse?

In the Fig. 2 re-run (`compare_rank2`, variants ``fair_epi250*``) EPI at n = 250 met the
distance criterion in epoch 2, never passed the moment test, ended with its draws on the
bounds of the support and stopped on a non-finite gradient. This study runs the same EPI
(``MODELS["rank2_rnn"]``'s settings, 10 epochs × 500 steps of batch 200 after 1,000
initialisation steps) and keeps what the comparison's row does not: each epoch's penalty c,
entropy, mean and variance violations and p-values, the optimisation trace (every 50 steps:
entropy, loss and ‖R‖), why the run stopped, and the fraction of the final flow's parameter
draws within 1e-3 of a bound. ``--max-penalty`` caps the penalty's growth
(``EPIConfig.max_penalty``) to test whether that growth sets off the collapse.

Regenerate (about 15 minutes alone on one core; ``benchmarks/records/epi_rank2_large/n250_seed2.json``)::

    .venv/bin/python -m benchmarks.studies.epi_rank2_large
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.records import changed_flags, command, write_record
from pyro_circuits.catalog import MODELS
from pyro_circuits.epi import epi

STUDY = "epi_rank2_large"


def run(n: int, seed: int, epochs: int, iterations: int, init: int, max_penalty) -> dict:
    """One EPI run and its per-epoch and per-step record."""
    entry = MODELS["rank2_rnn"]
    config = dataclasses.replace(
        entry.config,
        epochs=epochs,
        iterations=iterations,
        init_iterations=init,
        stop_early=True,
        max_penalty=max_penalty,
    )
    result = epi(
        entry.build(n), entry.property(), config=config, flow=entry.flow, seed=seed, progress=False
    )
    with torch.no_grad():
        draws = result.sample(2000, seed=0)
    flat = torch.cat([v.reshape(2000, -1) for v in draws.values()], dim=1)
    trace = result.trace
    residuals = trace[[c for c in trace.columns if c.startswith("R ")]]
    norms = (residuals**2).sum(axis=1) ** 0.5
    return {
        "n": n,
        "seed": seed,
        "config": repr(config),
        "converged": result.converged,
        "stopped": result.stopped,
        "selected_epoch": int(result.epoch),
        "wall_time": result.wall_time,
        "at_bounds": float((flat.abs() > 1 - 1e-3).float().mean()),
        "epochs": result.history.to_dict("records"),
        "trace": [
            {
                "epoch": int(row.epoch),
                "step": int(row.step),
                "entropy": float(row.entropy),
                "loss": float(row.loss),
                "R_norm": float(norms.loc[i]),
            }
            for i, row in trace.iterrows()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--init", type=int, default=1000)
    parser.add_argument(
        "--max-penalty", type=float, default=0.0, help="cap on the penalty c (0: none, the paper)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cap = args.max_penalty or None
    metrics = run(args.n, args.seed, args.epochs, args.iterations, args.init, cap)
    for row in metrics["epochs"]:
        print({k: row[k] for k in ("epoch", "c", "entropy", "R_norm2", "converged")}, flush=True)
    print({k: metrics[k] for k in ("converged", "stopped", "at_bounds", "wall_time")})
    write_record(
        STUDY,
        f"n{args.n}" + (f"_cap{args.max_penalty:g}" if cap else "") + f"_seed{args.seed}",
        command(f"benchmarks.studies.{STUDY}", *changed_flags(parser, args)),
        vars(args),
        metrics,
    )


if __name__ == "__main__":
    main()

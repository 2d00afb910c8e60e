"""EPI on the rank-2 RNN stable-amplification property across network sizes (paper Fig. 2A/B).

Regenerate: ``.venv/bin/python -m benchmarks.epi_rank2 --sizes 2 5 10 25 50 100 --seeds 1 2``

Settings are the paper's (Methods, "EPI details for RNNs"): real NVP with 3 coupling stages of
2 × 100 units, c0 = 1e3, N = 200, β = 4, 500 iterations per epoch, N_test = 200, raw
(unstandardised) constraints as in the paper; at most
``--epochs`` epochs, stopping at the first converged one. Times include the Gaussian
initialisation (as the paper's do); simulation counts exclude it (as the paper's do).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._report import machine, read_json, update_section, write_json
from pyro_circuits import EPIConfig, FlowConfig, epi
from pyro_circuits.models import Rank2RNN

# Paper, §3 of the reference: seed-1 EPI traces (simulations to ‖E f − μ‖ < 0.5; first converged epoch).
REFERENCE = {
    2: (30_000, 4),
    5: (10_000, 2),
    10: (0, 5),
    25: (40_000, 4),
    50: (50_000, 4),
    100: (60_000, 2),
}


def first_within(trace, prop, threshold: float = 0.5) -> int | None:
    """Simulations at the first logged step whose minibatch ‖E f − μ‖₂ is below ``threshold``."""
    means = [f"R {name}" for name in prop.constraint_names if name.startswith("E[")]
    distance = np.sqrt((trace[means] ** 2).sum(axis=1))
    hits = trace["simulations"][distance < threshold]
    return int(hits.iloc[0]) if len(hits) else None


def run(n: int, seed: int, epochs: int) -> dict:
    model, prop = Rank2RNN(n), Rank2RNN.stable_amplification()
    config = EPIConfig(
        batch_size=200,
        epochs=epochs,
        iterations=500,
        c0=1e3,
        test_batch_size=200,
        stop_early=True,
        standardize=False,
    )
    start = time.perf_counter()
    result = epi(model, prop, flow=FlowConfig(units=100), config=config, seed=seed, progress=False)
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


def table(rows: list[dict]) -> str:
    lines = [
        "| n | dim z | seed | converged | epoch | simulations | sims to ‖E f − μ‖ < 0.5 | wall time (s) | entropy (nats) | paper (seed 1): sims to < 0.5, converged epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = REFERENCE.get(r["n"])
        paper = f"{ref[0]:,}, k={ref[1]}" if ref else "—"
        lines.append(
            f"| {r['n']} | {r['dim']} | {r['seed']} | {'yes' if r['converged'] else 'no'} | {r['epoch']} | "
            f"{r['simulations']:,} | {r['simulations_to_mean_within_0.5']} | {r['wall_time_s']:.0f} | "
            f"{r['entropy']:.1f} | {paper} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 25, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--resume", action="store_true", help="keep rows already in the JSON output"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    done = (
        {(r["n"], r["seed"]): r for r in read_json("epi_rank2").get("rows", [])}
        if args.resume
        else {}
    )
    for n in args.sizes:
        for seed in args.seeds:
            if (n, seed) not in done:
                done[(n, seed)] = run(n, seed, args.epochs)
                print(done[(n, seed)], flush=True)
            report(sorted(done.values(), key=lambda r: (r["n"], r["seed"])), args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    """Write the JSON and the docs section (after every run, so partial sweeps are kept)."""
    write_json("epi_rank2", {"machine": machine(), "rows": rows})
    sizes = sorted({r["n"] for r in rows})
    command = f"python -m benchmarks.epi_rank2 --sizes {' '.join(map(str, sizes))} --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}"
    update_section(
        "epi_rank2",
        f"""## EPI: rank-2 RNN stable amplification across sizes

`{command}` — {machine()}

Paper settings (3 coupling stages × 2 × 100 units, N = 200, c0 = 1e3, β = 4, 500 Adam steps per
epoch, N_test = 200, raw constraint units), at most {args.epochs} epochs, stopping at the first converged epoch
(hypothesis test on means and variances, α = 0.05 Bonferroni). Wall time includes the Gaussian
initialisation (1000 steps); simulation counts exclude it and the test batches.

{table(rows)}
""",
    )


if __name__ == "__main__":
    main()

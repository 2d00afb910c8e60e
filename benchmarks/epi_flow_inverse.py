"""An EPI step on the rank-2 RNN with zuko's LU layers against the package's batched inverse.

Regenerate: ``.venv/bin/python -m benchmarks.epi_flow_inverse``

For ``rank2_rnn(n)`` with the catalogue's batch, flow and loss (``MODELS["rank2_rnn"]`` of
:mod:`pyro_circuits.catalog`) and one torch thread, times one EPI step (draws from the flow,
the model, the augmented Lagrangian, its backward pass and the Adam step) two ways, alternating
step by step on one flow and one optimiser so that neither the machine's load nor the flow's
state favours a way:

* ``zuko``: the flow's LU layers are zuko's ``LULinearTransform``, whose inverse solves each
  draw as its own right-hand side against factors broadcast over the batch;
* ``package``: :class:`pyro_circuits.epi.lu.MatrixLULinearTransform`, one solve for the batch.

After the timed steps, both ways draw from the same flow with the same base draws; the largest
deviation of their draws and log-densities is recorded. The ratio is zuko's median step time over
the package's. One record per run (``benchmarks/records/epi_flow_inverse/<date>-<commit>.json``).
"""

from __future__ import annotations

import argparse
import os

import torch
from zuko.transforms import LULinearTransform

from benchmarks.epi_overhead import alternate
from benchmarks.records import command, current_commit, now, write_record
from pyro_circuits.catalog import MODELS
from pyro_circuits.epi import EPIGuide
from pyro_circuits.epi.fit import epi_loss
from pyro_circuits.epi.lu import MatrixLULinearTransform
from pyro_circuits.sites import CircuitProgram

BENCHMARK = "epi_flow_inverse"
WAYS = {"zuko": LULinearTransform, "package": MatrixLULinearTransform}
#: Timed steps per size (times ``--scale``): zuko's way takes seconds a step at n = 250.
STEPS = {10: 40, 50: 20, 100: 10, 250: 4}


def lu_layers(guide: EPIGuide) -> list:
    """The flow's lazy LU layers (whose ``f`` builds the transform)."""
    return [
        t
        for t in guide.q.flow.transform.transforms
        if getattr(t, "f", None) in (LULinearTransform, MatrixLULinearTransform)
    ]


def use(guide: EPIGuide, way: str) -> None:
    for layer in lu_layers(guide):
        layer.f = WAYS[way]


def deviation(guide: EPIGuide, n: int) -> float:
    """Largest |difference| of the two ways' draws (and log q) from the same base draws."""
    out = {}
    for way in WAYS:
        use(guide, way)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            theta, log_q = guide.q.rsample_and_log_prob(n)
        out[way] = torch.cat([theta.flatten(), log_q])
    return (out["zuko"] - out["package"]).abs().max().item()


def time_size(n: int, steps: int, warmup: int = 1, seed: int = 0) -> dict:
    """Median wall and CPU milliseconds of one EPI step each way, alternating."""
    entry = MODELS["rank2_rnn"]
    model, config = entry.build(n), entry.config
    guide = EPIGuide(CircuitProgram(model), flow=entry.flow, seed=seed)
    loss = epi_loss(entry.property(), config, seed)
    optimizer = torch.optim.Adam(guide.parameters(), lr=config.lr)

    def step(way: str) -> torch.Tensor:
        use(guide, way)
        return loss(model, guide)

    median, median_cpu = alternate(list(WAYS), step, optimizer, steps, warmup)
    largest = deviation(guide, config.batch_size)  # after the steps moved the LU factors
    return {
        "n": n,
        "dim": 4 * n,
        "batch_size": config.batch_size,
        "steps_timed": steps,
        "median_ms": median,
        "median_cpu_ms": median_cpu,
        "ratio": median["zuko"] / median["package"],
        "ratio_cpu": median_cpu["zuko"] / median_cpu["package"],
        "max_abs_deviation": largest,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the timed steps")
    parser.add_argument("--notes", default="", help="prose stored with the record")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    rows = []
    for n in args.sizes:
        steps = max(2, round(STEPS.get(n, 10) * args.scale))
        rows.append(time_size(n, steps))
        print(rows[-1], flush=True)
    write_record(
        BENCHMARK,
        f"{now()[:10]}-{current_commit()}",
        command(
            "benchmarks.epi_flow_inverse",
            *(["--sizes", *args.sizes] if args.sizes != list(STEPS) else []),
            *(["--scale", args.scale] if args.scale != 1.0 else []),
        ),
        {"sizes": args.sizes, "scale": args.scale, "threads": 1},
        {"rows": rows, "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]},
        notes=args.notes or None,
    )


if __name__ == "__main__":
    main()

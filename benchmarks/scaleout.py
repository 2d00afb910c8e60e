"""Scale-out through the executor seam: 1 Ray worker against 2, in one run.

Regenerate (on an otherwise idle machine):
``.venv/bin/python -m benchmarks.scaleout --simulations 20000 --epi-epochs 4``

Two pieces of work, each timed without an executor (in this process), on a local Ray instance
with 1 CPU (1 worker) and on one with 2 CPUs (2 workers), both through
``pyro_circuits.parallel.RayExecutor``:

* simulation: STG prior draws simulated for NPE (``sbi.bridge.simulate``, chunks of
  ``--chunk``); target speed-up of 2 workers over 1: ≥ 1.7;
* seeds: a 2-seed EPI run of the 2-D linear system (the demo's settings with ``--epi-epochs``
  epochs of ``--epi-iterations`` steps); target ≥ 1.6.

Every worker and this process use 1 torch thread. Each Ray instance's workers are started (and
import the package) before the clock; Ray's start-up is recorded apart. The results of the three
runs are checked to be identical (the determinism guarantee). Records:
``benchmarks/records/scaleout/``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import wait
from dataclasses import replace

import torch

from benchmarks.records import command, write_record
from pyro_circuits import epi
from pyro_circuits.catalog import MODELS
from pyro_circuits.models import STG
from pyro_circuits.parallel import RayExecutor
from pyro_circuits.sbi import Simulator
from pyro_circuits.sbi.bridge import sbi_prior, simulate
from pyro_circuits.sites import CircuitProgram

BENCHMARK = "scaleout"
TARGETS = {"simulation": 1.7, "epi_seeds": 1.6}
NOTES_SHARED = (
    "Measured while other jobs shared the 2 cores, at small sizes, to check that the benchmark "
    "runs: these times and ratios are not the benchmark's figures."
)


def _timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def simulation_work(simulations: int, chunk: int, seed: int = 0):
    """``run(executor)``: the simulations of ``simulations`` STG prior draws."""
    prop = STG.intermediate_hub_frequency()
    simulator = Simulator(CircuitProgram(STG()), prop.names)
    theta = sbi_prior(simulator.space).sample((simulations,))

    def run(executor):
        return simulate(simulator, theta, seed=seed, chunk_size=chunk, executor=executor)

    return run


def epi_work(epochs: int, iterations: int, seeds: list[int]):
    """``run(executor)``: the restarts table of a multi-seed EPI run of the 2-D linear system."""
    entry = MODELS["lds2d"]
    config = replace(entry.config, epochs=epochs, iterations=iterations)

    def run(executor):
        result = epi(
            entry.build(0),
            entry.property(),
            flow=entry.flow,
            config=config,
            seed=seeds,
            executor=executor,
            progress=False,
        )
        return result.restarts

    return run


def _start_workers(executor, workers: int, rounds: int = 3, seconds: float = 4.0) -> None:
    """Start every Ray worker before the clock (each imports the package once): rounds of
    ``workers`` tasks sleeping at once; while one worker is busy, Ray starts another."""
    for _ in range(rounds):
        wait([executor.submit(time.sleep, seconds) for _ in range(workers)])


def _time_all(works: dict, executor) -> dict:
    """``{name: (seconds, output)}`` of every work on ``executor``."""
    return {name: _timed(lambda run=run: run(executor)) for name, run in works.items()}


def _on_ray(works: dict, cpus: int) -> tuple[float, dict]:
    """Ray's start-up time and :func:`_time_all` on a local Ray instance of ``cpus`` CPUs."""
    startup, executor = _timed(lambda: RayExecutor(num_cpus=cpus, include_dashboard=False))
    with executor:
        _start_workers(executor, cpus)
        return startup, _time_all(works, executor)


def _same(a, b) -> bool:
    return torch.equal(a, b) if torch.is_tensor(a) else a.equals(b)


def _metrics(name: str, runs: dict, startup: dict) -> dict:
    (inline, reference), (one, out_one), (two, out_two) = (runs[k][name] for k in runs)
    speedup = one / two
    metrics = {
        "seconds_inline": inline,
        "seconds_1_worker": one,
        "seconds_2_workers": two,
        "speedup": speedup,
        "speedup_vs_inline": inline / two,
        "target": TARGETS[name],
        "met": speedup >= TARGETS[name],
        "identical_results": _same(reference, out_one) and _same(reference, out_two),
        "ray_startup_seconds": startup,
    }
    if name == "epi_seeds":
        metrics["restarts"] = reference.to_dict(orient="records")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--epi-epochs", type=int, default=4)
    parser.add_argument("--epi-iterations", type=int, default=1000)
    parser.add_argument("--shared", action="store_true", help="the cores were shared")
    args = parser.parse_args()
    torch.set_num_threads(1)
    works = {
        "simulation": simulation_work(args.simulations, args.chunk),
        "epi_seeds": epi_work(args.epi_epochs, args.epi_iterations, seeds=[0, 1]),
    }
    startup, runs = {}, {"inline": _time_all(works, None)}
    for workers in (1, 2):
        startup[workers], runs[f"ray_{workers}"] = _on_ray(works, workers)
    configurations = {
        "simulation": {"model": "STG", "simulations": args.simulations, "chunk": args.chunk},
        "epi_seeds": {"model": "lds2d", "seeds": [0, 1], "epochs": args.epi_epochs,
                      "iterations": args.epi_iterations},
    }  # fmt: skip
    cli = ["--simulations", args.simulations, "--chunk", args.chunk, "--epi-epochs",
           args.epi_epochs, "--epi-iterations", args.epi_iterations]  # fmt: skip
    for name, configuration in configurations.items():
        metrics = _metrics(name, runs, startup)
        print(name, metrics, flush=True)
        path = write_record(
            BENCHMARK,
            name,
            command(f"benchmarks.{BENCHMARK}", *cli, *(["--shared"] if args.shared else [])),
            {**configuration, "workers": [1, 2], "torch_threads_per_worker": 1},
            metrics,
            notes=NOTES_SHARED if args.shared else None,
        )
        print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

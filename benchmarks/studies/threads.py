"""How many torch intra-op threads suit each workload, on an idle machine and on a loaded one?

Three workloads, each timed with 1 thread and with one per core, on the idle machine and while
one busy-loop process per other core runs (the load a shared machine adds):

* ``epi``: an EPI run on ``lds2d`` (the catalogue's batch of 500, 200 Adam steps, no test);
* ``simulation``: the STG simulated for 400 conductance draws (300 Euler steps, no gradient);
* ``lfads``: 10 SVI steps of LFADS on the Lorenz data (the catalogue's sizes, batch 64).

Regenerate (a few minutes; one record, ``benchmarks/records/threads/all.json``)::

    .venv/bin/python -m benchmarks.studies.threads
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from benchmarks.records import command, write_record
from pyro_circuits.catalog import LFADS_CONFIGS
from pyro_circuits.epi import EPIConfig, epi
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LDS2D, LFADS, STG
from pyro_circuits.svi import train

STUDY = "threads"
BUSY = "while True: pass"


def epi_run() -> None:
    config = EPIConfig(batch_size=500, epochs=1, iterations=200, init_iterations=0, test_batches=2)
    epi(LDS2D(), LDS2D.oscillation(), config=config, progress=False)


def simulation_run() -> None:
    model, g = STG(), torch.Generator().manual_seed(0)
    g_el, g_syn = 4 + 4 * torch.rand(400, generator=g), 0.01 + 3.99 * torch.rand(400, generator=g)
    with torch.no_grad():
        model.simulate(g_el, g_syn, torch.randn(400, model.steps, 5, generator=g))


def lfads_run(counts: torch.Tensor) -> None:
    config = LFADS_CONFIGS["lorenz"]
    model = LFADS(counts.shape[-1], **config.model)
    train(model, LFADSEncoder(model, **config.guide), counts, batch_size=64, max_epochs=1,
          progress=False)  # fmt: skip


def timed(run, threads: int, repeats: int = 3) -> float:
    """The median wall time (s) of ``repeats`` runs with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    cores = os.cpu_count() or 1
    counts = LFADS_CONFIGS["lorenz"].data.make().train.counts[:640]
    workloads = {"epi": epi_run, "simulation": simulation_run, "lfads": lambda: lfads_run(counts)}
    rows = []
    for load in ("idle", "loaded"):
        others = cores - 1 if load == "loaded" else 0
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(others)]
        try:
            for name, run in workloads.items():
                times = {n: timed(run, n) for n in sorted({1, cores})}
                rows.append({"workload": name, "load": load, "seconds": times,
                             "load_1min": os.getloadavg()[0]})  # fmt: skip
                print(rows[-1], flush=True)
        finally:
            for process in busy:
                process.kill()
    path = write_record(STUDY, "all", command(f"benchmarks.studies.{STUDY}"),
                        {"cores": cores, "busy_processes_when_loaded": cores - 1}, {"rows": rows})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

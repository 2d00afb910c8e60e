"""Wall time and peak memory of a short ``pyro-circuits epi`` run on the built-in circuits whose
simulators hold the most per draw (the noise of every trial at every step).

Each model runs once in a child process (``python -m pyro_circuits.cli epi MODEL --epochs E
--iterations I --quiet --out …``, one torch thread), and its peak resident memory is the
child's. ``--checkout DIR`` runs the package of another checkout of this repository with this
virtualenv (a ``git worktree`` of an earlier commit, for a before/after); a child killed by the
out-of-memory killer is recorded as such, with its time to the kill. One record per model and
commit: ``benchmarks/records/cli_footprint/<model>-<commit>.json``.

Usage::

    .venv/bin/python -m benchmarks.cli_footprint
    git worktree add /tmp/before 0c29f48
    .venv/bin/python -m benchmarks.cli_footprint --checkout /tmp/before
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import ROOT, changed_flags, command, current_commit, write_record

BENCHMARK = "cli_footprint"
MODELS = ("v1_sssn", "superior_colliculus")


def run(checkout: Path, model: str, epochs: int, iterations: int) -> dict:
    """One child run's wall time, peak memory (GB), exit status and last lines of output."""
    env = os.environ | {"PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-W", "ignore", "-m", "pyro_circuits.cli", "epi", model]
    argv += ["--epochs", str(epochs), "--iterations", str(iterations), "--quiet"]
    with tempfile.TemporaryDirectory() as out, open(Path(out) / "log", "w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen(
            [*argv, "--out", out], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest's
        wall = time.perf_counter() - start
        returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        lines = log.read().strip().splitlines()
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2),
        "returncode": returncode,
        "outcome": outcome(returncode, lines),
        "output": lines[-4:],
    }


def outcome(returncode: int, lines: list[str]) -> str:
    """How the child ended, with the error it raised where it raised one."""
    if returncode == 0:
        return "finished"
    if returncode == -9:
        return "killed (SIGKILL: out of memory)"
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return f"failed (exit {returncode}): {raised[-1] if raised else 'no error line'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="checkout whose package runs")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--notes", default=None, help="what else ran on the machine")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    commit = current_commit(checkout)
    regenerate = command(f"benchmarks.{BENCHMARK}", *changed_flags(parser, args))
    for model in args.models:
        metrics = run(checkout, model, args.epochs, args.iterations)
        path = write_record(
            BENCHMARK,
            f"{model}-{commit}",
            regenerate,
            {"model": model, "epochs": args.epochs, "iterations": args.iterations},
            metrics,
            notes=args.notes,
            commit=commit,
        )
        print(f"{model}: {metrics['wall_s']} s, {metrics['peak_rss_gb']} GB, {metrics['outcome']}")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

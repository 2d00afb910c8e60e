"""The README's first example, timed as a user runs it: a fresh Python process, imports included.

Regenerate: ``.venv/bin/python -m benchmarks.readme_example --repeats 3``

Runs the first ```python block of ``README.md`` (plus one line printing the run's epoch and
verdict) in a new interpreter in a temporary folder, ``--repeats`` times, and records each run's
wall time and CPU time (user + system of the child process), the one-minute load average
before each run (the cores may be shared with other work), and the converged epoch. The issue's
target is a wall time under 30 s. One record per run of this script
(``benchmarks/records/readme_example/<date>-<commit>.json``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.records import ROOT, command, current_commit, now, write_record

BENCHMARK = "readme_example"
TARGET_S = 30.0
#: Appended to the example: the result's epoch and verdict, for the record.
VERDICT = '\nprint("readme-example:", result.epoch, result.converged)\n'


def first_python_block(text: str) -> str:
    """The code of the first ```python block of Markdown ``text``.

    Example:
        >>> first_python_block("a\\n```bash\\nls\\n```\\n```python\\nx = 1\\n```\\n")
        'x = 1\\n'
    """
    match = re.search(r"^```python[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError("no ```python block in the text")
    return match.group(1)


def run_once(code: str) -> dict:
    """One run of ``code`` in a fresh interpreter: wall and CPU seconds, load, epoch, verdict."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", code + VERDICT],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the README example failed:\n{done.stderr[-3000:]}")
    epoch, converged = re.search(r"readme-example: (\S+) (\S+)", done.stdout).groups()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "load_1min": round(load, 2),
        "epoch": int(epoch),
        "converged": converged == "True",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of the example")
    parser.add_argument("--notes", default="", help="prose stored with the record")
    args = parser.parse_args(argv)
    code = first_python_block((ROOT / "README.md").read_text())
    runs = [run_once(code) for _ in range(args.repeats)]
    for run in runs:
        print(run, flush=True)
    wall = statistics.median(r["wall_s"] for r in runs)
    date, commit = now(), current_commit()
    write_record(
        BENCHMARK,
        f"{date.removesuffix('+00:00')}-{commit}",
        command(f"benchmarks.{BENCHMARK}", "--repeats", args.repeats),
        {"repeats": args.repeats, "target_s": TARGET_S, "example": code},
        {
            "median_wall_s": wall,
            "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "under_target": wall < TARGET_S,
            "runs": runs,
        },
        notes=args.notes or None,
        commit=commit,
        date=date,
    )


if __name__ == "__main__":
    main()

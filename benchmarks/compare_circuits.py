"""``pyro-circuits compare`` on the STG and the superior colliculus (issue #6): EPI, NPE and
SMC-ABC side by side from one model, each given 3,000 simulations.

Runs the command line of :data:`CLI` for a model, times it, and records the table the command
writes (its ``comparison.csv``) as ``benchmarks/records/compare_circuits/<model>.json``; the
command's folder (the table, pair plots and predictive scatters) stays beside the record.
Regenerate::

    .venv/bin/python -m benchmarks.compare_circuits stg            # about 1.5 min
    .venv/bin/python -m benchmarks.compare_circuits superior_colliculus   # about 3 min
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.records import RECORDS, ROOT, command, write_record

BENCHMARK = "compare_circuits"
MODELS = {
    "stg": "hub frequency 0.55 ± 0.025 Hz",
    "superior_colliculus": "Pro and Anti accuracy 0.75 ± 0.075",
}
BUDGET, DRAWS = 3000, 500
CLI = "pyro-circuits compare {model} --budget {budget} --draws {draws} --quiet --out {out}"


def _value(text: str):
    """A cell of ``comparison.csv`` as JSON: booleans, integers, floats, empty → null."""
    if text in ("", "nan"):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if text.lstrip("-").isdigit() else number if math.isfinite(number) else None


def run(model: str) -> Path:
    out = RECORDS / BENCHMARK / model
    line = CLI.format(model=model, budget=BUDGET, draws=DRAWS, out=out.relative_to(ROOT))
    executable = Path(sys.executable).with_name("pyro-circuits")
    argv = shlex.split(line)
    if executable.exists():
        argv[0] = str(executable)
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    with open(out / "comparison.csv", newline="") as handle:
        rows = [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    files = sorted(p.relative_to(ROOT).as_posix() for p in out.iterdir() if p.is_file())
    return write_record(
        BENCHMARK,
        model,
        command(f"benchmarks.{BENCHMARK}", model),
        {"cli": line, "budget": BUDGET, "draws": DRAWS, "property": MODELS[model]},
        {"command_wall_time_s": round(wall), "rows": rows},
        artefacts=files,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=list(MODELS))
    for model in parser.parse_args().models:
        print(f"wrote {run(model)}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

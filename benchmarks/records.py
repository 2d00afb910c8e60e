"""Benchmark records: one JSON file per (benchmark, variant) run, under ``benchmarks/records/``.

Every benchmark writes its figures here through :func:`write_record`, and
``python -m benchmarks report`` renders ``docs/benchmarks.md`` from :func:`read_records` alone.
A record is a JSON object with these keys (:data:`KEYS`):

* ``benchmark``: the benchmark (or study) that wrote it, e.g. ``calcium_synthetic``;
* ``variant``: which run of it, e.g. ``chaotic_rnn/ladder`` (never encoded in a file name
  by the benchmark itself; the file name is derived from it);
* ``command``: the command that regenerates it;
* ``commit``: the git commit the figures were measured at (``-dirty``: with uncommitted changes
  to the package or the benchmarks);
* ``machine``: the hardware and software, e.g. ``x86_64, 2 cores, torch 2.13.0+cpu (1 threads),
  Python 3.11.7``;
* ``date``: when it was measured (ISO 8601, UTC);
* ``configuration``: the settings of the run (a dict);
* ``metrics``: its figures (a dict; nested tables allowed).

Optional keys: ``notes`` (prose the report prints with the record), ``artefacts`` (files
beside it, e.g. a trained flow), ``provenance`` (how a record converted from an older format
got its command, commit, date or machine).

This module imports nothing heavy: the report reads records without torch.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "benchmarks" / "records"
PYTHON = ".venv/bin/python"
KEYS = ("benchmark", "variant", "command", "commit", "machine", "date", "configuration", "metrics")
OPTIONAL_KEYS = ("notes", "artefacts", "provenance")

__all__ = [
    "KEYS",
    "RECORDS",
    "command",
    "current_commit",
    "machine",
    "now",
    "read_records",
    "record_path",
    "write_record",
]


def machine() -> str:
    """One line naming the hardware and software the figures are measured on."""
    import torch  # here, not at the top: reading records must not import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )


def now() -> str:
    """The time of a run (UTC, minutes), e.g. ``2026-12-05T08:46+00:00``."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")


def current_commit(checkout: Path = ROOT) -> str:
    """``git rev-parse --short HEAD`` of ``checkout`` (this one by default), with ``-dirty``
    when the package or the benchmarks have uncommitted changes (records themselves excluded);
    ``unknown`` outside a git checkout."""
    try:
        head = _git(checkout, "rev-parse", "--short", "HEAD")
        changed = _git(
            checkout,
            "status",
            "--porcelain",
            "--",
            "pyro_circuits",
            "benchmarks",
            ":!benchmarks/records",
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("-dirty" if changed else "")


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout.strip()


def command(module: str, *args: object) -> str:
    """The command line that runs ``module`` with ``args``, as a record states it:
    ``command("benchmarks.epi_lds2d", "--seeds", 0, 1)`` is
    ``.venv/bin/python -m benchmarks.epi_lds2d --seeds 0 1``."""
    return shlex.join([PYTHON, "-m", module, *(_arg(a) for a in args)])


def changed_flags(parser, args) -> list[object]:
    """The command-line flags of ``args`` whose values differ from ``parser``'s defaults, for
    :func:`command`.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--seeds", type=int, nargs="+", default=[1])
        >>> _ = parser.add_argument("--stop-distance", type=float, default=0.0)
        >>> changed_flags(parser, parser.parse_args(["--seeds", "1", "2"]))
        ['--seeds', 1, 2]
    """
    return [
        item
        for key, value in vars(args).items()
        if value != parser.get_default(key)
        for item in (f"--{key.replace('_', '-')}", *(value if isinstance(value, list) else [value]))
    ]


def _arg(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def slug(variant: str) -> str:
    """The file name (without ``.json``) of ``variant``: ``/`` becomes ``--``, anything but
    letters, digits, ``.``, ``_`` and ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", variant.replace("/", "--")).strip("_") or "_"


def record_path(benchmark: str, variant: str, root: Path = RECORDS) -> Path:
    """Where the record of ``(benchmark, variant)`` lives."""
    return root / benchmark / f"{slug(variant)}.json"


def write_record(
    benchmark: str,
    variant: str,
    command: str,
    configuration: dict,
    metrics: dict,
    *,
    notes: str | None = None,
    artefacts: Iterable[str] = (),
    root: Path = RECORDS,
    commit: str | None = None,
    machine_name: str | None = None,
    date: str | None = None,
) -> Path:
    """Write (or replace) the record of ``(benchmark, variant)`` and return its path.

    ``commit``, ``machine_name`` and ``date`` default to the current commit, this machine
    (:func:`machine`) and now (:func:`now`).
    """
    record: dict[str, Any] = {
        "benchmark": benchmark,
        "variant": variant,
        "command": command,
        "commit": commit or current_commit(),
        "machine": machine_name or machine(),
        "date": date or now(),
        "configuration": configuration,
        "metrics": metrics,
    }
    if notes:
        record["notes"] = notes
    if artefacts := list(artefacts):
        record["artefacts"] = artefacts
    path = record_path(benchmark, variant, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(record))
    return path


def dumps(record: dict) -> str:
    """A record as its file holds it: indented JSON, NaN and infinities as ``null``, tensors,
    arrays and other numbers as plain JSON numbers, exact decimals as written."""
    marks: dict[str, str] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, Decimal):
            mark = f"@decimal{len(marks)}@"
            marks[mark] = str(value)
            return mark
        if isinstance(value, bool | int | str) or value is None:
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if hasattr(value, "tolist"):  # tensors and numpy values
            return plain(value.tolist())
        if hasattr(value, "__float__"):
            return plain(float(value))
        raise TypeError(f"cannot record a {type(value).__name__}: {value!r}")

    text = json.dumps(plain(record), indent=2, ensure_ascii=False, allow_nan=False)
    for mark, literal in marks.items():
        text = text.replace(f'"{mark}"', literal)
    return text + "\n"


def read_records(
    benchmark: str | None = None, *, exact: bool = False, root: Path = RECORDS
) -> list[dict]:
    """Every record (of ``benchmark``), ordered by benchmark and file name.

    ``exact``: read non-integer numbers as :class:`decimal.Decimal`, keeping the digits a
    hand-written record states (``6.990`` stays ``6.990``)."""
    pattern = f"{benchmark}/*.json" if benchmark else "*/*.json"
    parse = {"parse_float": Decimal} if exact else {}
    return [json.loads(path.read_text(), **parse) for path in sorted(root.glob(pattern))]

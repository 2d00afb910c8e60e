"""Shared helpers for benchmark scripts: machine description, JSON output, and docs sections.

Every benchmark owns one section of ``docs/benchmarks.md`` delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers; re-running the script replaces
only its own section, so benchmarks can be regenerated independently.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
OUTPUT = ROOT / "benchmarks" / "output"


def machine() -> str:
    """One line naming the hardware and software the figures were measured on."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def write_json(name: str, payload: dict) -> Path:
    """Write machine-readable results to ``benchmarks/output/<name>.json``."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def read_json(name: str) -> dict:
    """Results previously written by :func:`write_json` (empty when there are none)."""
    path = OUTPUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read_all_json(prefix: str) -> list[dict]:
    """Every ``benchmarks/output/<prefix>*.json``, in file-name order."""
    return [json.loads(path.read_text()) for path in sorted(OUTPUT.glob(f"{prefix}*.json"))]


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the ``name`` section of docs/benchmarks.md with ``markdown``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    DOC.write_text(text)

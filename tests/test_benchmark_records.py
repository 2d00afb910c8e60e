"""docs/benchmarks.md is what the benchmark records render, and every record says where its
figures come from. Runs the report as a command (tests never import ``benchmarks``)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "benchmarks" / "records"
DOC = ROOT / "docs" / "benchmarks.md"
KEYS = ("benchmark", "variant", "command", "commit", "machine", "date", "configuration", "metrics")


def _report(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "report", *options],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )


def test_the_docs_are_the_records_rendering():
    check = _report("--check")
    assert check.returncode == 0, check.stderr.decode()
    rendered = _report("--stdout")
    assert rendered.returncode == 0, rendered.stderr.decode()
    assert rendered.stdout == DOC.read_bytes()


RECORD_FILES = sorted(RECORDS.glob("*/*.json"))


def test_there_are_records():
    assert len(RECORD_FILES) > 0


@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_record_has_its_keys(path):
    record = json.loads(path.read_text())
    missing = [key for key in KEYS if key not in record]
    assert not missing, f"{path} lacks {missing}"
    assert record["benchmark"] == path.parent.name
    for key in ("command", "commit", "machine", "date", "variant"):
        assert isinstance(record[key], str) and record[key].strip(), f"{path}: empty {key}"
    assert isinstance(record["configuration"], dict)
    assert isinstance(record["metrics"], dict)
    for artefact in record.get("artefacts", []):
        assert (ROOT / artefact).exists(), f"{path}: artefact {artefact} is missing"

"""Every example runs end to end with tiny settings (Pyro's convention: examples are smoke-tested)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMOKE_ARGUMENTS = {
    "epi_lds2d.py": ["--quick"],
    "lfads_lorenz.py": ["--quick"],
    "superior_colliculus_opto.py": ["--trials", "20"],
    "compare_methods.py": ["--budget", "300", "--out", "{tmp}"],
    "calcium_ladder.py": ["--quick", "--figure", "{tmp}/ladder.png"],
    "real_data_opto.py": ["--quick"],
    "biornn_perturbation.py": ["--quick", "--figure", "{tmp}/biornn.png"],
}


def test_every_example_has_smoke_arguments():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SMOKE_ARGUMENTS)


@pytest.mark.parametrize("name", sorted(SMOKE_ARGUMENTS))
def test_example_runs(name, tmp_path):
    arguments = [a.format(tmp=tmp_path) for a in SMOKE_ARGUMENTS[name]]
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

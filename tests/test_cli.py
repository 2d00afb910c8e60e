"""The pyro-circuits command: built-in and user models, epi and compare."""

import subprocess
import sys

import pytest

from pyro_circuits.cli import main


def test_compare_subcommand_writes_the_table_and_plots(tmp_path, capsys):
    code = main(
        [
            "compare",
            "rank2_rnn",
            "--n",
            "2",
            "--methods",
            "smcabc",
            "--budget",
            "200",
            "--draws",
            "80",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| smcabc | 0 |" in printed
    names = {p.name for p in tmp_path.iterdir()}
    assert {"comparison.csv", "comparison.md", "pairs.png", "predictive.png"} <= names
    assert "smcabc_seed0.nc" in names


def test_models_subcommand_lists_the_table(capsys):
    assert main(["models"]) == 0
    assert "rank2_rnn" in capsys.readouterr().out


USER_MODULE = '''
import pyro
import pyro.distributions as dist
import torch

from pyro_circuits import EmergentProperty
from pyro_circuits.catalog import BuiltinModel
from pyro_circuits.epi import EPIConfig, FlowConfig


def circuit():
    """A Wilson-Cowan pair: E and I rates relax to their fixed point under input 1."""
    w_ee = pyro.sample("w_ee", dist.Uniform(0.0, 1.0))
    w_ei = pyro.sample("w_ei", dist.Uniform(0.0, 2.0))
    e = i = torch.zeros_like(w_ee)
    for _ in range(40):
        e = e + 0.2 * (-e + torch.sigmoid(w_ee * e - w_ei * i + 1.0))
        i = i + 0.2 * (-i + torch.sigmoid(e))
    pyro.deterministic("rate_e", e)


def prop():
    return EmergentProperty(mean={"rate_e": 0.6}, variance={"rate_e": 0.01})


def wilson_cowan():
    tiny = EPIConfig(batch_size=20, epochs=1, iterations=5, test_batches=10, init_iterations=5)
    return BuiltinModel(build=lambda n: circuit, property=prop, config=tiny, flow=FlowConfig(units=8))


def wilson_cowan_pair():
    return circuit, prop()
'''


def _user_package(root):
    package = root / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "circuits.py").write_text(USER_MODULE)


def test_epi_runs_a_model_from_a_users_own_module(tmp_path):
    _user_package(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pyro_circuits.cli", "epi", "mypkg.circuits:wilson_cowan"]
    done = subprocess.run(
        [*command, "--out", str(out), "--quiet"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "rate_e" in done.stdout  # the constraint table of the user's statistic
    assert {"inference_data.nc", "constraints.csv", "pairs.png"} <= {p.name for p in out.iterdir()}


def test_compare_runs_a_users_model_and_property_pair(tmp_path, monkeypatch, capsys):
    _user_package(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["compare", "mypkg.circuits:wilson_cowan_pair", "--methods", "smcabc", "--budget"]
    code = main([*argv, "200", "--draws", "80", "--out", str(tmp_path / "cmp"), "--quiet"])
    assert code == 0
    assert "| smcabc | 0 |" in capsys.readouterr().out


def test_unknown_or_malformed_model_names_are_clear_errors(capsys):
    for name, message in [
        ("nonesuch", "unknown model 'nonesuch'"),
        ("no_such_module_xyz:f", "cannot import module"),
        ("pyro_circuits.catalog:nothing_here", "has no callable"),
    ]:
        with pytest.raises(SystemExit):
            main(["epi", name])
        assert message in capsys.readouterr().err

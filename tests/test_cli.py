"""The pyro-circuits command: built-in and user models, epi and compare."""

import importlib
import logging
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch

from pyro_circuits.cli import about, epi_estimate, main, simulation_estimate
from pyro_circuits.epi import EPIResult


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
    assert "estimated duration: " in done.stdout
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


class _Clock:
    """A fake clock that advances ``tick`` seconds each time it is read."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_epi_estimate_is_steps_and_test_batches_times_their_timed_cost():
    from pyro_circuits.epi import EPIConfig, FlowConfig
    from pyro_circuits.models import LDS2D

    config = EPIConfig(batch_size=20, epochs=3, iterations=7, test_batches=5, init_iterations=0)
    state = torch.get_rng_state()
    seconds = epi_estimate(
        LDS2D(), LDS2D.oscillation(), FlowConfig(units=8), config, seeds=2, clock=_Clock(0.5)
    )
    # Every timed call reads 0.5 s: 2 seeds × (3 epochs × (7 steps + 5 test batches) + 5 tests).
    assert seconds == pytest.approx(2 * (3 * (7 + 5) + 5) * 0.5)
    assert torch.equal(torch.get_rng_state(), state)  # the run's randomness is untouched


def test_simulation_estimate_scales_the_timed_batch_to_the_budget():
    from pyro_circuits.models import LDS2D

    state = torch.get_rng_state()
    seconds = simulation_estimate(LDS2D(), 3000, clock=_Clock(0.25), batch=100)
    assert seconds == pytest.approx(30 * 0.25)
    assert torch.equal(torch.get_rng_state(), state)


def test_durations_read_in_the_unit_that_suits_them():
    assert [about(s) for s in (0.4, 59.0, 61.0, 7200.0)] == [
        "under 1 s",
        "about 59 s",
        "about 1 min",
        "about 2 h",
    ]


def test_epi_command_prints_an_estimate_before_the_run(tmp_path, capsys, monkeypatch):
    _user_package(tmp_path)  # its tiny EPI settings keep the run short
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    checks, check = [], EPIResult.check
    monkeypatch.setattr(EPIResult, "check", lambda *a, **k: checks.append(a) or check(*a, **k))
    argv = ["epi", "mypkg.circuits:wilson_cowan", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("estimated duration: ")
    assert lines[2].startswith("converged: ")  # the estimate came before the run's summary
    assert len(checks) == 1  # the printed and the written table are one test's
    written = pd.read_csv(tmp_path / "out" / "constraints.csv")
    assert lines[3].split()[0] == "statistic"
    assert [line.split()[0] for line in lines[4 : 4 + len(written)]] == list(written["statistic"])


def _chatty_compare(model, prop, methods, **kwargs):
    """A comparison during which sbi's own code speaks as it does in a run: its epoch counter
    (a print without a newline), a root-logger warning and a warning from an sbi module."""
    import pandas as pd
    from sbi.inference.trainers.base import NeuralInference
    from sbi.utils.sbiutils import clamp_and_warn

    NeuralInference._maybe_show_progress(True, 3)
    clamp_and_warn("quantile", 2.0, 0.0, 1.0)
    warnings.warn_explicit("sbi says", UserWarning, "sbi/inference/x.py", 1, module="sbi.inference")
    row = dict.fromkeys(["converged", "distance", "moment_test", "wall_time", "simulations"], 1)
    return pd.DataFrame([{"method": m, "seed": 0, **row} for m in methods]), {}


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_compare_table_has_no_sbi_lines(
    quiet, tmp_path, capsys, caplog, recwarn, monkeypatch
):
    # The module, not the function of the same name that the package exports.
    monkeypatch.setattr(sys.modules["pyro_circuits.compare"], "compare", _chatty_compare)
    argv = ["compare", "lds2d", "--methods", "npe", "smcabc", "--out", str(tmp_path)]
    assert main(argv + ["--quiet"] * quiet) == 0
    lines = (out := capsys.readouterr().out).splitlines()
    logged = any("clamped" in record.getMessage() for record in caplog.records)
    warned = any("sbi says" in str(w.message) for w in recwarn)
    said = ("Epochs trained" in out, logged, warned)
    assert said == ((False,) * 3 if quiet else (True,) * 3)  # without --quiet sbi does speak
    if quiet:  # the table's lines whole and together (sbi's counter has no newline)
        table = [i for i, line in enumerate(lines) if line.startswith("| method |")]
        assert len(table) == 1
        assert lines[table[0] + 2 : table[0] + 4] == [
            "| npe | 0 | 1 | 1 | 1 | 1 | 1 |",
            "| smcabc | 0 | 1 | 1 | 1 | 1 | 1 |",
        ]
    assert logging.getLogger("sbi").level == logging.NOTSET  # restored after the run
    assert not logging.getLogger().filters


def test_threads_set_for_the_run_and_restored(monkeypatch):
    """``--threads`` sets torch's intra-op threads for the run, checked first, and restores them."""
    from pyro_circuits import cli

    seen = []
    monkeypatch.setattr(cli, "_run_epi", lambda args, entry: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    cli.main(["epi", "lds2d", "--threads", "2"])
    cli.main(["epi", "lds2d"])  # EPI's default: one thread
    assert seen == [2, 1] and torch.get_num_threads() == before
    assert cli.main(["epi", "lds2d", "--threads", "0"]) == 2 and seen == [2, 1]
    assert torch.get_num_threads() == before


def test_threads_reach_the_methods_and_compare_leaves_epi_its_default(monkeypatch):
    """``epi --threads`` reaches ``epi()``; ``compare --threads`` reaches every method through
    ``options["all"]``, and without it EPI keeps its own default (no threads option given)."""
    from pyro_circuits import cli

    comparison = importlib.import_module("pyro_circuits.compare")  # the module, not the function
    calls = []

    def stop(*args, **kwargs):  # what the API was asked, then a quick exit
        calls.append((kwargs.get("threads"), kwargs.get("options"), torch.get_num_threads()))
        raise ValueError("stopped by the test")

    monkeypatch.setattr(cli, "epi_estimate", lambda *args: 0.0)
    monkeypatch.setattr(cli, "simulation_estimate", lambda *args: 0.0)
    monkeypatch.setattr(cli, "epi", stop)
    monkeypatch.setattr(comparison, "compare", stop)
    before = torch.get_num_threads()
    for argv in (["epi", "lds2d", "--threads", "3"], ["epi", "lds2d"]):
        assert cli.main(argv) == 2
    assert [(threads, count) for threads, _, count in calls] == [(3, 3), (1, 1)]
    calls.clear()
    for argv in (["compare", "lds2d", "--threads", "3"], ["compare", "lds2d"]):
        assert cli.main(argv) == 2
    (_, given, count), (_, default, count_default) = calls
    assert given["all"] == {"threads": 3} and count == 3
    assert "all" not in default and "threads" not in default["epi"]
    assert count_default == before and torch.get_num_threads() == before

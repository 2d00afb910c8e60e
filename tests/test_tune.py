"""Hyper-parameter search on Ray Tune (pyro_circuits.tune): one tiny search on a local Ray of
2 CPUs, shared by the module; the checkpoints' resume path; the errors raised before any work."""

import ast
import copy
import math
import sys

import pytest
import torch

ray = pytest.importorskip("ray")
from ray import tune as ray_tune  # noqa: E402

from pyro_circuits import tune as tune_module  # noqa: E402
from pyro_circuits.datasets import lorenz  # noqa: E402
from pyro_circuits.svi import Callback  # noqa: E402
from pyro_circuits.tune import score, train_config, tune  # noqa: E402

TINY = {"ic_dim": 4, "fac_dim": 3, "enc_dim": 8}
SPACE = {"lr": ray_tune.loguniform(1e-3, 1e-2), "gen_dim": ray_tune.choice([8, 16]), **TINY}
EPOCHS = 2
START = {"lr": 2e-3}  # the first trial's learning rate; its gen_dim is drawn


@pytest.fixture(scope="module")
def data():
    return lorenz(n_conditions=4, n_trials=5, n_bins=20, n_heldout=4)


@pytest.fixture(scope="module")
def search(data, tmp_path_factory):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield tune(
            data,
            SPACE,
            num_samples=3,
            max_epochs=EPOCHS,
            storage_path=tmp_path_factory.mktemp("tune"),
            start=[START],
            progress=False,
        )
    finally:
        ray.shutdown()


class _Capture(Callback):
    """The model's and guide's parameters at the end of each epoch, and the loop's checkpoint."""

    def __init__(self, config):
        self.states, self.checkpoints, self.config = [], [], config

    def on_epoch_end(self, loop, record, monitored):
        self.states.append(copy.deepcopy((loop.model.state_dict(), loop.guide.state_dict())))
        self.checkpoints.append(copy.deepcopy(loop.checkpoint()) | {"tune_config": self.config})
        return False


def test_the_table_has_every_trial_with_its_drawn_settings(search):
    trials = search.trials
    assert len(trials) == 3
    assert trials["lr"].between(1e-3, 1e-2).all()
    assert set(trials["gen_dim"]) <= {8, 16}
    assert (trials[list(TINY)] == list(TINY.values())).all().all()
    assert trials["epochs"].between(1, EPOCHS).all()
    assert ((trials["status"] == "completed") == (trials["epochs"] == EPOCHS)).all()
    assert set(trials["status"]) <= {"completed", "stopped"}
    assert all(math.isfinite(value) for value in trials["co_bps"])
    assert (trials["lr"] == START["lr"]).sum() == 1


def test_the_best_fit_scores_the_tables_best(search, data):
    best_row = search.trials.loc[search.trials["co_bps"].idxmax()]
    assert search.best == best_row["co_bps"]
    assert search.config == {key: best_row[key] for key in SPACE}
    assert score(search.fit, data) == pytest.approx(search.best, abs=1e-9)


def test_the_best_checkpoint_holds_the_trained_parameters(search, data):
    """Retraining the best settings without Ray gives, at the checkpoint's epoch, the parameters
    the checkpoint restored, so the restored fit predicts as the trained one did."""
    epochs = len(search.fit.history)
    capture = _Capture(search.config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a trial
    try:
        retrained = train_config(
            data, search.config, max_epochs=epochs, callbacks=[capture], progress=False
        )
    finally:
        torch.set_num_threads(threads)
    retrained.model.load_state_dict(capture.states[-1][0])
    retrained.guide.load_state_dict(capture.states[-1][1])
    counts = data.valid.counts
    ours = search.fit.posterior_mean(counts, num_samples=3, seed=1)["rates"]
    theirs = retrained.posterior_mean(counts, num_samples=3, seed=1)["rates"]
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_resuming_from_a_checkpoint_continues_the_same_training(data):
    """What a trial does with Ray Tune's checkpoint (fault tolerance, population-based training):
    1 epoch, then resumed for a second, equals 2 epochs in one go."""
    config = {"lr": 3e-3, "gen_dim": 8, "cd_rate": 0.2, **TINY}
    straight, first = _Capture(config), _Capture(config)
    train_config(data, config, max_epochs=2, callbacks=[straight], progress=False)
    train_config(data, config, max_epochs=1, callbacks=[first], progress=False)
    resumed = _Capture(config)
    hooks = [tune_module._Resume(first.checkpoints[-1], config), resumed]
    fit = train_config(data, config, max_epochs=2, callbacks=hooks, progress=False)
    assert len(fit.history) == 2 and len(resumed.states) == 1
    for ours, theirs in zip(resumed.states[-1], straight.states[-1], strict=True):
        for name, value in ours.items():
            torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)


def test_resuming_another_trials_checkpoint_takes_this_trials_learning_rate(data):
    config = {"lr": 3e-3, "gen_dim": 8, **TINY}
    first = _Capture(config)
    train_config(data, config, max_epochs=1, callbacks=[first], progress=False)
    mutated = config | {"lr": 1e-3}
    fit = train_config(
        data,
        mutated,
        max_epochs=2,
        callbacks=[tune_module._Resume(first.checkpoints[-1], mutated)],
        progress=False,
    )
    assert fit.history[0]["lr"] == 3e-3 and fit.history[1]["lr"] == 1e-3


def test_importing_the_module_does_not_import_ray():
    body = ast.parse(open(tune_module.__file__).read()).body
    names = {alias.name for node in body if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in body if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "ray" for name in names)


def test_without_ray_the_error_names_the_extra(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pyro_circuits\[ray\]"):
        tune(data, {"lr": 1e-3})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"space": {"learning_rate": 1e-3}}, ValueError, "unknown settings"),
        ({"space": {}}, ValueError, "at least one setting"),
        ({"space": [("lr", 1e-3)]}, TypeError, "space must be a dict"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"max_epochs": -1}, ValueError, "max_epochs"),
        ({"metric": "r2"}, ValueError, "metric"),
        ({"scheduler": "hyperband"}, ValueError, "scheduler"),
        ({"scheduler": "pbt", "space": {"gen_dim": ray_tune.choice([8, 16])}}, ValueError, "pbt"),
        ({"max_concurrent": 3, "num_cpus": 2}, ValueError, "max_concurrent"),
        ({"seed": -1}, ValueError, "seed"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"base": {"lr": 1e-3}}, TypeError, "base"),
        ({"start": {"lr": 1e-3}}, TypeError, "start"),
        ({"start": [{"gen_dim": 8}]}, ValueError, "not in space"),
        ({"start": [{"lr": 1e-3}] * 3, "num_samples": 2}, ValueError, "start gives 3"),
    ],
)
def test_bad_arguments_are_errors_before_any_work(data, kwargs, error, match):
    kwargs = {"space": {"lr": ray_tune.loguniform(1e-3, 1e-2)}} | kwargs
    started = ray.is_initialized()
    with pytest.raises(error, match=match):
        tune(data, **kwargs)
    assert ray.is_initialized() == started


def test_data_without_held_out_neurons_cannot_be_scored_on_co_bps():
    data = lorenz(n_conditions=2, n_trials=3, n_bins=10)
    with pytest.raises(ValueError, match="held-out neurons"):
        tune(data, {"lr": 1e-3})
    with pytest.raises(ValueError, match="validation trials"):
        train_config(data.train, {"lr": 1e-3})

"""Hyper-parameter search on Ray Tune (pyro_circuits.tune): one tiny LFADS search and one tiny
calcium-ladder search on a local Ray of 2 CPUs, shared by the module; the checkpoints' resume
path; the errors raised before any work."""

import ast
import copy
import math
import sys

import pytest
import torch

ray = pytest.importorskip("ray")
from ray import tune as ray_tune  # noqa: E402

from pyro_circuits import metrics, tune_models  # noqa: E402
from pyro_circuits import tune as tune_module  # noqa: E402
from pyro_circuits.catalog import CALCIUM_CONFIGS  # noqa: E402
from pyro_circuits.datasets import lorenz  # noqa: E402
from pyro_circuits.guides import LadderEncoder  # noqa: E402
from pyro_circuits.models import CalciumLFADS  # noqa: E402
from pyro_circuits.models.calcium import fluorescence_from_spikes  # noqa: E402
from pyro_circuits.svi import Callback, Staged  # noqa: E402
from pyro_circuits.tune import score, search_keys, train_config, tune  # noqa: E402

TINY = {"ic_dim": 4, "fac_dim": 3, "enc_dim": 8}
SPACE = {"lr": ray_tune.loguniform(1e-3, 1e-2), "gen_dim": ray_tune.choice([8, 16]), **TINY}
EPOCHS = 2
START = {"lr": 2e-3}  # the first trial's learning rate; its gen_dim is drawn
#: A tiny ladder on the catalogue's Lorenz calcium settings.
LADDER = CALCIUM_CONFIGS["lorenz"].replace(
    deep=dict(ic_dim=4, gen_dim=8, fac_dim=3, co_dim=0),
    deep_guide=dict(enc_dim=8),
    ladder=dict(z_dim=4),
    ladder_guide=dict(enc_dim=8, con_dim=8),
    batch_size=8,
)
LADDER_SPACE = {
    "lr": ray_tune.loguniform(1e-3, 1e-2),
    "ladder_step_dim": ray_tune.choice([2, 4]),
    "staged_hold": 2,
    "staged_ramp": 2,
}


@pytest.fixture(scope="module")
def data():
    return lorenz(n_conditions=4, n_trials=5, n_bins=20, n_heldout=4)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def search(cluster, data, tmp_path_factory):
    return tune(
        data,
        SPACE,
        num_samples=3,
        max_epochs=EPOCHS,
        storage_path=tmp_path_factory.mktemp("tune"),
        start=[START],
        progress=False,
    )


@pytest.fixture(scope="module")
def calcium(data):
    """``data``'s fluorescence in the catalogue's recipe."""
    return fluorescence_from_spikes(data.counts, dt=data.dt, seed=0, **LADDER.fluorescence)[1]


@pytest.fixture(scope="module")
def ladder_search(cluster, data, calcium):
    return tune(data, LADDER_SPACE, base=LADDER, fluorescence=calcium, num_samples=2,
                max_epochs=EPOCHS, scheduler="fifo", progress=False)  # fmt: skip


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


def test_a_ladder_search_returns_the_best_ladder_as_score_scores_it(ladder_search, data, calcium):
    """The ladder's default metric is the validation ELBO of the fluorescence; the best trial's
    fit is a ladder of the base's sizes with its drawn settings, scoring what the table says."""
    result = ladder_search
    assert result.metric == "elbo" and len(result.trials) == 2
    assert (result.trials["status"] == "completed").all() and (result.trials["epochs"] == 2).all()
    assert set(result.trials["ladder_step_dim"]) <= {2, 4}
    assert isinstance(result.fit.model, CalciumLFADS)
    assert isinstance(result.fit.guide, LadderEncoder)
    assert result.fit.model.z_dim == LADDER.ladder["z_dim"]
    assert result.fit.guide.step_features[0].out_features == result.config["ladder_step_dim"]
    assert result.best == result.trials["elbo"].max()
    assert score(result.fit, data, fluorescence=calcium) == pytest.approx(result.best, rel=1e-6)


class _Schedules(Callback):
    """The Staged schedules of the loop."""

    def on_train_begin(self, loop):
        self.staged = [hook for hook in loop.hooks if isinstance(hook, Staged)]


def test_a_ladder_trains_on_the_fluorescence_with_the_searched_stages(data, calcium):
    """train_config of a ladder: the stage lengths and the ladder encoder's options named in
    the settings reach the schedule and the guide; bits/spike scores the fit's rates of the
    validation fluorescence against the true spikes."""
    config = {"lr": 3e-3, "staged_hold": 3, "staged_ramp": 5, "ladder_step_dim": 3}
    schedules = _Schedules()
    fit = train_config(data, config, base=LADDER, fluorescence=calcium, max_epochs=1,
                       callbacks=[schedules], progress=False)  # fmt: skip
    assert len(fit.history) == 1 and fit.guide.step_features[0].out_features == 3
    assert [(hook.hold, hook.ramp) for hook in schedules.staged] == [(3, 5)]
    rates = fit.posterior_mean(calcium[data.valid_idx], push_mean=True)["rates"]
    expected = metrics.bits_per_spike(rates, data.valid.counts, data.dt)
    assert score(fit, data, "bits_per_spike", calcium) == pytest.approx(expected, rel=1e-6)


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
        ({"space": {"learning_rate": 1e-3}}, ValueError, "unknown to a lfads search"),
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


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": "co_bps"}, ValueError, "does not apply to the calcium ladder"),
        ({"fluorescence": None}, ValueError, "needs the fluorescence"),
        ({"fluorescence": torch.zeros(2, 3, 4)}, ValueError, "fluorescence must have data's"),
        ({"space": {"ladder_enc_dim": 8, "observed": [0]}}, ValueError, "unknown to a ladder"),
        ({"base": None, "fluorescence": None, "space": {"z_dim": 4}}, ValueError, "unknown to a"),
        ({"base": None}, ValueError, "fluorescence is for a calcium ladder"),
    ],
)
def test_bad_ladder_combinations_are_errors_before_any_work(data, calcium, kwargs, error, match):
    kwargs = {"space": {"lr": ray_tune.loguniform(1e-3, 1e-2)}, "base": LADDER,
              "fluorescence": calcium} | kwargs  # fmt: skip
    started = ray.is_initialized()
    with pytest.raises(error, match=match):
        tune(data, **kwargs)
    assert ray.is_initialized() == started


def test_ladder_settings_go_to_their_level_over_the_catalogues():
    """As the catalogue builds the ladder: ``dropout`` is the deep level's (model and encoder),
    unprefixed encoder names the deep encoder's, ``ladder_`` ones the ladder encoder's."""
    config = {"dropout": 0.1, "enc_dim": 16, "ladder_enc_dim": 4, "z_dim": 3, "staged_hold": 7}
    groups = tune_models.options("ladder", LADDER, config | {"lr": 1e-3})
    assert groups["deep"]["dropout"] == groups["deep_guide"]["dropout"] == 0.1
    assert groups["deep_guide"]["enc_dim"] == 16 and groups["ladder_guide"]["enc_dim"] == 4
    assert groups["ladder_guide"]["con_dim"] == LADDER.ladder_guide["con_dim"]
    assert groups["ladder"] == {"z_dim": 3}
    assert groups["staged"] == {"hold": 7, "ramp": Staged().ramp}
    assert groups["train"]["lr"] == 1e-3 and groups["train"]["l2_scale"] == LADDER.l2_scale
    assert groups["deep"]["gen_dim"] == LADDER.deep["gen_dim"]


def test_search_keys_name_each_kinds_settings():
    lfads, ladder = set(search_keys()), set(search_keys("ladder"))
    assert lfads < ladder
    assert {"z_dim", "ladder_enc_dim", "ladder_con_dim", "staged_hold", "staged_ramp"} <= ladder
    assert not {"observed", "calcium", "deep", "staged", "model"} & ladder
    with pytest.raises(ValueError, match="kind"):
        search_keys("gaussian")


@pytest.mark.slow
def test_population_based_training_runs_the_whole_population_in_turns(cluster, data, tmp_path):
    """Four members taking turns on 2 CPUs: each reaches the last epoch, the worst continue
    the best's states, and the table reads every member's reports (Ray Tune's own history is
    emptied when a paused member restarts)."""
    space = {"lr": ray_tune.loguniform(1e-3, 1e-2), "gen_dim": 8, **TINY}
    result = tune(data, space, num_samples=4, max_epochs=3, scheduler="pbt", grace_period=1,
                  storage_path=tmp_path, progress=False)  # fmt: skip
    trials = result.trials
    assert len(trials) == 4 and (trials["epochs"] == 3).all()
    assert (trials["status"] == "completed").all()
    assert trials["co_bps"].notna().all() and result.best == trials["co_bps"].max()
    exploits = next(tmp_path.glob("*/pbt_global.txt")).read_text().splitlines()
    assert exploits  # the bottom quarter (1 of 4) continued another member at epochs 1 and 2

"""Issue 46, "Nothing silently wrong": one test per defect the issue lists, each failing on the
code before the issue (the input was silently accepted, or gave a wrong result) and passing now.

The perturbation handlers' cases (target lists, gain range, NaN gain, misspelt site) are tested
with the handlers, in ``tests/test_perturb.py``.
"""

import dataclasses
import pickle
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_circuits.datasets import SpikeData
from pyro_circuits.epi import EPIConfig, FlowConfig, epi
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.metrics import bits_per_spike, co_bps
from pyro_circuits.models import LDS2D, LFADS
from pyro_circuits.property import EmergentProperty
from pyro_circuits.results import Saved
from pyro_circuits.svi import SVIFit, refine, train

TINY_EPI = EPIConfig(batch_size=20, epochs=2, iterations=3, test_batches=10, init_iterations=2)


def tiny_fit_parts(seed=0):
    torch.manual_seed(seed)
    model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
    return model, LFADSEncoder(model, enc_dim=4)


@pytest.fixture(scope="module")
def counts():
    return torch.poisson(torch.ones(8, 10, 3), generator=torch.Generator().manual_seed(0))


def quick(counts, **options):
    model, guide = tiny_fit_parts()
    return train(model, guide, counts, max_epochs=2, batch_size=4, progress=False, **options)


# --- SVI training: settings that were accepted and gave NaN or nonsense ---------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("lr", float("inf")),
        ("clip_norm", float("nan")),
        ("lr_decay", -1.0),
        ("lr_decay", 1.0),
        ("l2_scale", -0.5),
        ("patience", -1),
        ("max_time", -1.0),
        ("kl_warmup", -1),
    ],
)
def test_training_settings_out_of_range_are_errors_naming_them(counts, option, value):
    with pytest.raises(ValueError, match=option):
        quick(counts, **{option: value})


def test_a_misspelt_validation_site_is_an_error_not_a_zero_loss(counts):
    with pytest.raises(ValueError, match="bogus"):
        quick(counts, valid_counts=counts[:2], valid_sites=["bogus"])
    fit = quick(counts, valid_counts=counts[:2], valid_sites=["counts"])
    assert all(h["valid_loss"] > 0 for h in fit.history)


def test_numpy_and_int64_counts_train_like_float_tensors(counts):
    reference = quick(counts, seed=3)
    for same in (counts.numpy().astype(np.int64), counts.long(), counts.double()):
        fit = quick(same, seed=3)
        assert [h["loss"] for h in fit.history] == [h["loss"] for h in reference.history]


def test_non_finite_gradients_stop_training_naming_the_parameter(counts):
    model, guide = tiny_fit_parts()
    calls = []

    def poison_from_the_third_step(grad):  # epoch 0 has two steps of 4 trials
        calls.append(1)
        return grad * float("nan") if len(calls) > 2 else grad

    hook = model.readout.weight.register_hook(poison_from_the_third_step)
    with pytest.warns(UserWarning, match="model.readout.weight"):
        fit = train(model, guide, counts, max_epochs=3, batch_size=4, progress=False)
    hook.remove()
    assert "gradient" in fit.diverged and "step 2 (epoch 1)" in fit.diverged
    assert fit.best_epoch == 0 and len(fit.history) == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model, guide = tiny_fit_parts()
    hook = model.readout.weight.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(FloatingPointError, match="model.readout.weight.*step 0"):
        train(model, guide, counts, max_epochs=2, batch_size=4, progress=False)
    hook.remove()


def test_refine_stops_at_a_non_finite_loss_keeping_a_finite_guide(counts):
    fit = quick(counts)
    with pytest.warns(UserWarning, match="refine stopped at step 1: the (loss|gradient)"):
        refined = refine(fit, counts, steps=5, lr=1e30, progress=False)
    assert all(torch.isfinite(p).all() for p in refined.guide.parameters())
    with pytest.raises(ValueError, match="lr"):
        refine(fit, counts, lr=float("inf"), progress=False)


# --- Checkpoints that know their run -------------------------------------------------------


def test_a_checkpoint_of_another_run_is_an_error_unless_overwrite(counts, tmp_path):
    path = tmp_path / "fit.ckpt"
    quick(counts, checkpoint=path)
    with pytest.raises(ValueError, match="another run: its data differ"):
        quick(counts + 1, checkpoint=path)
    with pytest.raises(ValueError, match="settings differ"):
        quick(counts, checkpoint=path, lr=0.5)
    fresh = quick(counts + 1, checkpoint=path, overwrite=True)
    assert [h["epoch"] for h in fresh.history] == [0, 1]
    resumed = quick(counts + 1, checkpoint=path)  # the same run now: resumes, nothing to do
    assert resumed.history == fresh.history


def test_garbage_or_truncated_checkpoints_are_clear_errors_and_strays_are_removed(counts, tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        quick(counts, checkpoint=path)
    quick(counts, checkpoint=path, overwrite=True)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        quick(counts, checkpoint=path)
    stray = tmp_path / ".fit.ckpt.abc123.tmp"
    stray.write_bytes(b"half")
    quick(counts, checkpoint=path, overwrite=True)
    assert not stray.exists()


def test_an_unwritable_checkpoint_folder_is_an_error_before_training(counts, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not a writable folder"):
        quick(counts, checkpoint=blocker / "fit.ckpt")


# --- Metrics --------------------------------------------------------------------------------


def test_metrics_reject_nan_rates_instead_of_scoring_them():
    counts = np.random.default_rng(0).poisson(1.0, size=(4, 10, 3)).astype(float)
    rates = np.full_like(counts, 10.0)
    rates[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="rates contains NaN"):
        bits_per_spike(rates, counts, 0.1)
    with pytest.raises(ValueError, match="rates contains NaN"):
        co_bps(rates, counts, [0], 0.1)


# --- SpikeData ------------------------------------------------------------------------------


def test_boolean_masks_select_trials_instead_of_becoming_indices_0_and_1():
    counts = torch.arange(5.0).reshape(5, 1, 1).expand(5, 2, 1).contiguous()
    mask = torch.tensor([False, True, True, True, False])
    data = SpikeData(counts, dt=0.01, train_idx=mask, valid_idx=~mask)
    assert data.train.counts[:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert data.valid.counts[:, 0, 0].tolist() == [0.0, 4.0]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(counts=torch.zeros(0, 5, 3)), "at least one trial"),
        (dict(train_idx=[0, 1, 2], valid_idx=[2, 3]), "share trials"),
        (dict(rates=-torch.ones(4, 5, 3)), "rates must be non-negative"),
        (dict(rates=torch.full((4, 5, 3), float("nan"))), "rates contains NaN"),
        (dict(valid_idx=[7]), "valid_idx must index 4"),
        (dict(dt=float("nan")), "dt must be a finite number"),
    ],
)
def test_spike_data_rejects_what_it_used_to_accept(options, message):
    options = {"counts": torch.ones(4, 5, 3), "dt": 0.01, **options}
    with pytest.raises(ValueError, match=message):
        SpikeData(**options)


def test_spike_data_takes_numpy_counts_and_a_0d_array_dt():
    data = SpikeData(np.ones((4, 5, 3), dtype=np.int64), dt=np.array(0.01))
    assert data.counts.dtype == torch.get_default_dtype() and data.dt == 0.01


def test_all_nan_fluorescence_is_an_error_before_training():
    from pyro_circuits.guides import LadderEncoder
    from pyro_circuits.models import CalciumLFADS

    model = CalciumLFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
    with pytest.raises(ValueError, match="all NaN"):
        train(model, LadderEncoder(model), torch.full((4, 6, 3), float("nan")), progress=False)


# --- EPI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(test_batches=1), "test_batches"),
        (dict(test_batch_size=0), "test_batch_size"),
        (dict(c0=float("inf")), "c0"),
        (dict(beta=float("nan")), "beta"),
    ],
)
def test_epi_settings_that_could_never_converge_are_errors(option, message):
    with pytest.raises(ValueError, match=message):
        EPIConfig(**option)


def _integer_statistic():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    pyro.deterministic("n", (a > 0).long())


def test_epi_rejects_an_integer_statistic():
    prop = EmergentProperty({"n": 1.0}, {"n": 1.0})
    with pytest.raises(ValueError, match="not floating-point"):
        epi(_integer_statistic, prop, config=TINY_EPI, progress=False)


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _nan_gradient_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    pyro.deterministic("f", _NaNGradient.apply(a))


def test_epi_stops_at_a_non_finite_gradient_with_a_verdict():
    prop = EmergentProperty({"f": 0.0}, {"f": 0.3})
    with pytest.warns(UserWarning, match="EPI stopped: the gradient"):
        result = epi(_nan_gradient_model, prop, config=TINY_EPI, progress=False)
    assert "epoch 1, step 0" in result.stopped
    assert result.epoch == 0 and isinstance(result.converged, bool)
    assert all(torch.isfinite(p).all() for p in result.guide.parameters())
    table = result.check(batches=10, batch_size=20)
    assert table["achieved mean"].notna().all()


def _huge_statistic_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    pyro.deterministic("f", 1e8 * (a + 2.0))


def test_epi_says_when_the_gradient_norm_overflows_with_every_entry_finite():
    # a finite loss (~1e33) whose gradient entries are finite but whose norm overflows float32
    prop = EmergentProperty({"f": 0.0}, {"f": 1.0})
    config = dataclasses.replace(TINY_EPI, standardize=False, init_iterations=0)
    with pytest.warns(UserWarning, match="EPI stopped: the norm of the flow's gradient overflowed"):
        result = epi(_huge_statistic_model, prop, config=config, progress=False)
    assert "[]" not in result.stopped and "epoch 1, step 0" in result.stopped


@pytest.mark.parametrize(
    "mean, variance, error",
    [
        ({"f": "1.0"}, {"f": 1.0}, TypeError),
        ({"f": None}, {"f": 1.0}, TypeError),
        ({"f": 0.0}, {"f": float("inf")}, ValueError),
        ({"f": 0.0}, {"f": 1e-45}, ValueError),
    ],
)
def test_emergent_property_rejects_non_numbers_and_unusable_variances(mean, variance, error):
    with pytest.raises(error, match="f"):
        EmergentProperty(mean, variance)


_PARAM_SEEN = []


def _param_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    w = pyro.param("w", torch.tensor(1.0))
    _PARAM_SEEN.append(float(w))
    pyro.deterministic("f", a * w)


def test_a_models_pyro_param_does_not_leak_between_fits():
    pyro.clear_param_store()
    pyro.param("w", torch.tensor(5.0))  # left by an earlier fit or by the user
    prop = EmergentProperty({"f": 0.0}, {"f": 0.3})
    _PARAM_SEEN.clear()
    epi(_param_model, prop, config=TINY_EPI, progress=False)
    assert _PARAM_SEEN[-1] == 1.0  # its own initial value, in a store of the run's own
    assert float(pyro.param("w")) == 5.0  # the caller's store is left as it was
    pyro.clear_param_store()


# --- Saves that cannot destroy a good file; results that know their model -----------------


class _Box(Saved):
    def __init__(self, model):
        self.model = model


def test_a_failing_save_leaves_the_previous_file_intact(tmp_path):
    path = _Box(LDS2D()).save(tmp_path / "box.pt")
    before = path.read_bytes()
    bad = _Box(LDS2D())
    bad.payload = lambda: None  # not picklable
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        bad.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.pt"]


def test_a_model_that_cannot_be_imported_again_is_an_error_at_save_time(tmp_path):
    with pytest.raises(ValueError, match="cannot be imported again"):
        _Box(lambda: None).save(tmp_path / "box.pt")

    def closure():
        pass

    with pytest.raises(ValueError, match="closure"):
        _Box(closure).save(tmp_path / "box.pt")
    assert not (tmp_path / "box.pt").exists()


def test_loading_after_the_model_code_changed_warns(tmp_path):
    path = _Box(LDS2D()).save(tmp_path / "box.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _Box.load(path)  # unchanged: no warning
    saved = torch.load(path, weights_only=False)
    saved._origin["source_hash"] = "0" * 16  # as if saved from other code
    torch.save(saved, path)
    with pytest.warns(UserWarning, match="changed since"):
        _Box.load(path)


def test_garbage_or_truncated_result_files_are_clear_errors(tmp_path):
    path = tmp_path / "fit.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable saved result"):
        SVIFit.load(path)
    _Box(LDS2D()).save(path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="not a readable saved result"):
        _Box.load(path)


def test_compare_checks_its_output_folder_before_running(tmp_path):
    from pyro_circuits.compare import compare

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="out .* not a writable folder"):
        compare(LDS2D(), LDS2D.oscillation(), ["smcabc"], budget=500, out=blocker / "x")
    with pytest.raises(ValueError, match="moment_batches"):
        compare(LDS2D(), LDS2D.oscillation(), ["smcabc"], budget=500, moment_batches=0)


def test_an_unreachable_property_is_not_converged_for_smcabc_too():
    from pyro_circuits.sbi import SMCABC

    unreachable = EmergentProperty({"real_lambda": 50.0, "imag_lambda": 0.0},
                                   {"real_lambda": 0.01, "imag_lambda": 0.01})  # fmt: skip
    result = SMCABC(LDS2D(), unreachable, simulations=400, particles=40, progress=False)
    assert not result.check(batches=10, batch_size=40)["converged"].any()


_CALLS = []


def _counted_model():
    _CALLS.append(1)
    theta = pyro.sample("theta", dist.Uniform(-3.0, 3.0))
    pyro.deterministic("f", theta)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(estimator_kwargs={"hiden_features": 8}), "estimator_kwargs key .*'hiden_features'"),
        (dict(estimator_kwargs={"x_dist": None}, density_estimator="maf"), "'x_dist'"),
        (dict(density_estimator="zuko_mf"), "density_estimator .*did you mean 'zuko_maf'"),
    ],
)
def test_npe_unknown_estimator_kwargs_are_an_error_before_any_simulation(options, message):
    from pyro_circuits.sbi import NPE

    _CALLS.clear()
    prop = EmergentProperty({"f": 0.0}, {"f": 1.0})
    with pytest.raises(ValueError, match=message):
        NPE(_counted_model, prop, simulations=50, check_samples=0, progress=False, **options)
    assert not _CALLS  # sbi only warned (or failed after the simulations)


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_an_unreachable_property_is_not_converged_for_npe_too():
    from pyro_circuits.sbi import NPE

    unreachable = EmergentProperty({"real_lambda": 50.0, "imag_lambda": 0.0},
                                   {"real_lambda": 0.01, "imag_lambda": 0.01})  # fmt: skip
    result = NPE(LDS2D(), unreachable, simulations=200, check_samples=0, progress=False,
                 estimator_kwargs={"hidden_features": 8, "num_transforms": 1},
                 train_kwargs={"max_num_epochs": 3})  # fmt: skip
    assert not result.check(batches=10, batch_size=40)["converged"].any()


@pytest.mark.filterwarnings("ignore:Precision loss occurred")
def test_epi_entropy_of_an_unreachable_property_agrees_with_log_prob_of_its_draws():
    # Pushed towards an unreachable eigenvalue, the flow saturates the priors' bounds: its
    # bookkeeping then said H = -3.7e6 nats while log_prob of its draws gave about -3600.
    unreachable = EmergentProperty({"real_lambda": 50.0, "imag_lambda": 0.0},
                                   {"real_lambda": 0.01, "imag_lambda": 0.01})  # fmt: skip
    config = EPIConfig(batch_size=50, epochs=2, iterations=50, test_batches=10,
                       init_iterations=20, lr=1e-2)  # fmt: skip
    with pytest.warns(UserWarning, match="entropy re-estimated as −mean log_prob"):
        result = epi(LDS2D(), unreachable, config=config, flow=FlowConfig(units=8), progress=False)
    assert not result.converged
    draws = result.sample(2000, seed=1)
    reference = -result.log_prob(draws).mean().item()
    assert np.isfinite(result.history["entropy"]).all()
    assert result.entropy() == result.selected_entropy == result.history["entropy"].iloc[-1]
    assert abs(result.entropy() - reference) < 0.05 * abs(reference)
    with pytest.warns(UserWarning, match="entropy re-estimated"):
        fresh = result.entropy(2000, seed=1)
    assert fresh == pytest.approx(reference, rel=1e-5)


# --- The command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "EPIConfig.epochs"),
        (["--c0", "nan"], "EPIConfig.c0"),
        (["--max-penalty", "-1"], "EPIConfig.max_penalty"),  # below c0
        (["--n", "-2"], "--n"),
    ],
)
def test_cli_semantic_errors_are_one_line_and_status_2(argv, message, tmp_path, capsys):
    from pyro_circuits.cli import main

    code = main(["epi", "lds2d", "--out", str(tmp_path / "out"), "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(ValueError, match=message):
        main(["epi", "lds2d", "--out", str(tmp_path / "out"), "--quiet", "--debug", *argv])


def test_cli_checks_the_output_folder_before_the_run(tmp_path, capsys):
    from pyro_circuits.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["epi", "lds2d", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "not a writable folder" in capsys.readouterr().err

"""SVI on a Lightning Trainer: bit-identical to the loop's steps and epoch ends called by hand,
deterministic for a seed, resumable, with Lightning loggers and callbacks and one device."""

import csv
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pyro
import pytest
import torch
from lightning.pytorch import Callback as LightningCallback
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from pyro_circuits.datasets import lorenz
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models import LFADS, BioRNN
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import Callback, ProgressBar, Staged, SVIFit, fit_circuit, train
from pyro_circuits.svi.elbo import Validation
from pyro_circuits.svi.lightning import resolve_device
from pyro_circuits.svi.local import local_params
from pyro_circuits.svi.loop import Loop
from pyro_circuits.svi.training import _hooks

ROOT = Path(__file__).resolve().parents[2]
DATA = lorenz(n_conditions=4, n_trials=4, n_neurons=5, n_bins=12, base_rate=20.0, seed=1)


def lfads(seed=0):
    torch.manual_seed(seed)
    model = LFADS(5, ic_dim=2, gen_dim=4, fac_dim=2, co_dim=1)
    return model, LFADSEncoder(model, enc_dim=4, ci_dim=2, con_dim=2)


def ladder(seed=0):
    torch.manual_seed(seed)
    model = CalciumLFADS(4, z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2, co_dim=1)
    guide = LadderEncoder(model, enc_dim=5, con_dim=5, deep=dict(enc_dim=5, ci_dim=5, con_dim=5))
    return model, guide


def fluorescence():
    spikes = torch.poisson(torch.full((8, 12, 4), 0.5), generator=torch.Generator().manual_seed(0))
    return fluorescence_from_spikes(spikes, seed=0)[1]


def replay(model, guide, counts, *, valid=None, max_epochs, batch_size, seed, **options):
    """The ground truth: :func:`train`'s loop and hooks, its steps and epoch ends called in a
    plain Python loop over the orders ``randperm`` gives with ``seed + epoch``."""
    hooks = _hooks(
        options.get("cd_rate", 0.0),
        options.get("kl_warmup", 0),
        0.0,
        0,
        options.get("staged"),
        options.get("average_decay"),
        options.get("patience"),
    )
    validation = None if valid is None else Validation(valid, None, None, batch_size)
    loop = Loop(model, guide, counts, hooks=[*hooks, ProgressBar(disable=True)],
                validation=validation, batch_size=batch_size, max_epochs=max_epochs, seed=seed)  # fmt: skip
    with local_params(model, guide):
        pyro.set_rng_seed(seed)
        for hook in loop.hooks:
            hook.on_train_begin(loop)
        for epoch in range(max_epochs):
            model.train()
            guide.train()
            order = torch.randperm(
                len(counts), generator=torch.Generator().manual_seed(seed + epoch)
            )
            epoch_loss = 0.0
            for idx in order.split(batch_size):
                epoch_loss += loop.step(idx, epoch).item() * len(idx) / len(counts)
            if loop.end_epoch(epoch, epoch_loss):
                break
        fit = SVIFit(model, guide, loop.state["history"], loop.state["elapsed"], loop.diverged)
        for hook in reversed(loop.hooks):
            hook.on_train_end(loop, fit)
    return fit


def untimed(history):
    return [{key: value for key, value in record.items() if key != "time"} for record in history]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


CASES = {
    "lfads": (lfads, DATA.train.counts, dict()),
    "validated, dropout, KL warm-up, patience, average": (
        lfads,
        DATA.train.counts,
        dict(valid=DATA.valid.counts, cd_rate=0.3, kl_warmup=3, patience=2, average_decay=0.9),
    ),
    "calcium ladder, staged": (ladder, fluorescence(), dict(staged=Staged(hold=2, ramp=2))),
}


@pytest.mark.parametrize("case", CASES)
def test_lightning_run_is_bit_identical_to_the_steps_called_by_hand(case):
    build, counts, options = CASES[case]
    settings = dict(max_epochs=3, batch_size=3, seed=4)
    model, guide = build()
    options = dict(options)
    valid = options.pop("valid", None)
    fit = train(model, guide, counts, valid_counts=valid, progress=False, **settings, **options)
    if "staged" in options:
        options["staged"] = Staged(hold=2, ramp=2)  # a fresh schedule for the replay
    ref_model, ref_guide = build()
    reference = replay(ref_model, ref_guide, counts, valid=valid, **settings, **options)
    assert untimed(fit.history) == untimed(reference.history)
    assert_same_state(model, ref_model)
    assert_same_state(guide, ref_guide)
    if "average_decay" in options:
        for a, b in zip(fit.averaged_state, reference.averaged_state, strict=True):
            assert all(torch.equal(a[key], b[key]) for key in a)


def test_same_seed_same_fit_and_another_seed_another():
    def run(seed):
        model, guide = lfads()
        fit = train(model, guide, DATA.train.counts, max_epochs=2, batch_size=4, cd_rate=0.2,
                    seed=seed, progress=False)  # fmt: skip
        return model, untimed(fit.history)

    (a, history_a), (b, history_b), (_, history_c) = run(1), run(1), run(2)
    assert history_a == history_b and history_a != history_c
    assert_same_state(a, b)


def test_a_resumed_run_continues_at_its_saved_epoch_with_its_steps_logged(tmp_path):
    options = dict(batch_size=4, cd_rate=0.2, kl_warmup=3, seed=3, progress=False)
    model, guide = lfads()
    straight = train(model, guide, DATA.train.counts, max_epochs=4, **options)
    path = tmp_path / "fit.ckpt"
    train(*lfads(), DATA.train.counts, max_epochs=2, checkpoint=path, **options)
    resumed_model, resumed_guide = lfads(seed=99)  # every weight comes from the checkpoint
    resumed = train(resumed_model, resumed_guide, DATA.train.counts, max_epochs=4,
                    checkpoint=path, logger="csv", log_dir=tmp_path / "logs", **options)  # fmt: skip
    assert untimed(resumed.history) == untimed(straight.history)
    assert_same_state(resumed_model, model)
    assert_same_state(resumed_guide, guide)
    rows = read_metrics(tmp_path / "logs")
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [
        (h["epoch"], h["step"]) for h in straight.history[2:]
    ]


def read_metrics(folder) -> list[dict]:
    (path,) = folder.glob("csv/version_*/metrics.csv")
    with open(path) as file:
        return list(csv.DictReader(file))


def test_csv_logger_writes_the_history(tmp_path):
    model, guide = lfads()
    fit = train(model, guide, DATA.train.counts, valid_counts=DATA.valid.counts, max_epochs=3,
                batch_size=4, logger="csv", log_dir=tmp_path, progress=False)  # fmt: skip
    rows = read_metrics(tmp_path)
    assert [float(r["loss"]) for r in rows] == [h["loss"] for h in fit.history]
    assert [float(r["valid_loss"]) for r in rows] == [h["valid_loss"] for h in fit.history]
    assert [float(r["lr"]) for r in rows] == [h["lr"] for h in fit.history]
    assert [int(r["step"]) for r in rows] == [h["step"] for h in fit.history]


def test_tensorboard_logger_writes_the_losses_beside_the_csv_one(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, guide = lfads()
    fit = train(model, guide, DATA.train.counts, max_epochs=3, batch_size=4,
                logger=["tensorboard", "csv"], log_dir=tmp_path, progress=False)  # fmt: skip
    assert [float(r["loss"]) for r in read_metrics(tmp_path)] == [h["loss"] for h in fit.history]
    (events,) = tmp_path.glob("tensorboard/version_*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    scalars = accumulator.Scalars("loss")
    assert [s.step for s in scalars] == [h["step"] for h in fit.history]
    assert [s.value for s in scalars] == pytest.approx([h["loss"] for h in fit.history], rel=1e-6)


def test_fit_circuit_logs_its_history(tmp_path):
    data = (torch.rand(8, 20, 10, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    model = BioRNN(n_exc=4, n_inh=1, n_steps=20, stim_step=5, seed=0)
    fit = fit_circuit(model, data, data, [model.area_mask(0)], dt=2.0, steps=4, batch_size=4,
                      logger="csv", log_dir=tmp_path, progress=False)  # fmt: skip
    rows = read_metrics(tmp_path)
    assert [float(r["loss"]) for r in rows] == [h["loss"] for h in fit.history]
    assert [float(r["valid_loss"]) for r in rows] == [h["valid_loss"] for h in fit.history]


class Steps(LightningCallback):
    """Lightning's count of optimiser steps, read when training ends."""

    def on_train_end(self, trainer, pl_module) -> None:
        self.global_step = trainer.global_step


def test_lightning_callbacks_stop_training_and_see_every_step(tmp_path):
    # any improvement under 1e9 is none: the first epoch is the best, the second stops
    stopping = EarlyStopping(monitor="valid_loss", patience=1, min_delta=1e9)
    steps, monitor = Steps(), LearningRateMonitor(logging_interval="epoch")
    logger = CSVLogger(tmp_path, name="csv")
    model, guide = lfads()
    fit = train(model, guide, DATA.train.counts, valid_counts=DATA.valid.counts, max_epochs=10,
                batch_size=4, callbacks=[stopping, steps, monitor], logger=logger,
                progress=False)  # fmt: skip
    assert [h["epoch"] for h in fit.history] == [0, 1]
    assert stopping.stopped_epoch == 1
    assert steps.global_step == fit.history[-1]["step"]
    rows = read_metrics(tmp_path)
    assert [float(r["lr-Adam"]) for r in rows if r["lr-Adam"]] == [0.01, 0.01]


def test_lightning_model_checkpoint_saves_the_epoch_the_fit_restores(tmp_path):
    saving = ModelCheckpoint(dirpath=tmp_path, monitor="valid_loss", save_top_k=1)
    model, guide = lfads()
    fit = train(model, guide, DATA.train.counts, valid_counts=DATA.valid.counts, max_epochs=4,
                batch_size=4, callbacks=[saving], progress=False)  # fmt: skip
    best = min(fit.history, key=lambda h: h["valid_loss"])
    assert saving.best_model_score.item() == pytest.approx(best["valid_loss"], rel=1e-6)
    assert f"step={best['step']}" in saving.best_model_path  # global_step counts optimiser steps
    saved = torch.load(saving.best_model_path, weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():  # the package's early stopping restored it
        assert torch.equal(saved[f"model.{key}"], value), key


class Interrupt(Callback):
    def on_step_end(self, loop, loss) -> None:
        if loop.steps == 2:
            os.kill(os.getpid(), signal.SIGINT)

    def settings(self):
        return None


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_the_signal_handler(tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    path = tmp_path / "fit.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(*lfads(), DATA.train.counts, max_epochs=3, batch_size=4, checkpoint=path,
              callbacks=[Interrupt()], progress=False)  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not path.exists()  # interrupted in the first epoch: nothing saved yet


TERMINATED = """
import os, signal, torch
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import Callback, train

class Terminate(Callback):
    def on_step_end(self, loop, loss):
        if loop.steps == 2:
            os.kill(os.getpid(), signal.SIGTERM)

model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
train(model, LFADSEncoder(model, enc_dim=4), torch.ones(8, 5, 3), batch_size=4, max_epochs=3,
      callbacks=[Terminate()], progress=False)
print("returned")
"""


@pytest.mark.slow  # a fresh Python process: its imports take most of the time
@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_ends_the_process_by_the_signal():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", TERMINATED], env=env, capture_output=True)
    assert done.returncode == -signal.SIGTERM, done.stderr.decode()[-2000:]
    assert b"returned" not in done.stdout


def test_a_run_is_quiet_and_writes_nothing_unasked(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        train(*lfads(), DATA.train.counts, max_epochs=1, batch_size=4, progress=False)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("lightning")] == []
    assert lightning_log.level == level
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(devices=2), ValueError, "one process on one device"),
        (dict(devices=[0, 1]), ValueError, "one process on one device"),
        (dict(accelerator="tpu"), ValueError, "accelerator must be one of"),
        (dict(device="cpu", accelerator="cuda"), ValueError, "disagree"),
        (dict(device="cpu", devices=[1]), ValueError, "disagree"),
        (dict(accelerator="cpu", devices=[1]), ValueError, "index 0"),
        (dict(device="tpu:0"), ValueError, "device must name a torch device"),
        (dict(logger="wandb"), ValueError, "logger must be"),
        (dict(logger=["csv", 3]), ValueError, "logger must be"),
        (dict(log_dir="logs"), ValueError, "log_dir"),
        (dict(callbacks=[object()]), TypeError, "callbacks must be"),
    ],
)
def test_bad_devices_loggers_and_callbacks_are_rejected_before_any_work(
    kwargs, error, message, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    model, guide = lfads()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=message):
        train(model, guide, DATA.train.counts, max_epochs=1, progress=False, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "device, accelerator, devices",
    [(None, None, None), ("cpu", None, None), ("cpu", "auto", [0]), (None, "cpu", 1)],
)
def test_device_and_accelerator_name_one_device(device, accelerator, devices):
    assert resolve_device(device, accelerator, devices) == torch.device("cpu")


def test_auto_accelerator_prefers_cuda_then_mps_then_cpu():
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device(accelerator="auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_a_cuda_device_is_rejected():
    with pytest.raises(ValueError, match="CUDA"):
        train(*lfads(), DATA.train.counts, accelerator="gpu", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_accelerator_cuda_trains_on_the_gpu():
    model, guide = lfads()
    fit = train(model, guide, DATA.train.counts, max_epochs=1, batch_size=4, accelerator="cuda",
                devices=[0], progress=False)  # fmt: skip
    assert next(model.parameters()).device == torch.device("cuda", 0)
    assert fit.posterior_mean(DATA.valid.counts, num_samples=2)["rates"].is_cuda

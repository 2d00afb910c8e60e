"""The SVI loop's epochs on a PyTorch Lightning ``Trainer``.

:class:`SVIModule` is a ``LightningModule`` around a running
:class:`~pyro_circuits.svi.loop.Loop` (its model and guide registered as submodules, so the
Trainer moves them to its device) with manual optimisation: each ``training_step`` is the loop's
own :meth:`~pyro_circuits.svi.loop.Loop.step` on a batch of trial indices (the hooks' keywords,
scalings and penalties, backward, clipping, the non-finite checks, Adam), stepped through
Lightning's optimiser wrapper so ``trainer.global_step`` counts the optimiser steps of the
Trainer's run (a resumed run's from its resumption; the records' ``step``, all); each epoch ends
with the loop's :meth:`~pyro_circuits.svi.loop.Loop.end_epoch` (validation, learning-rate
schedule, history record, the hooks' ``on_epoch_end``), whose record is logged to the Trainer's
loggers at step = optimiser steps and handed to Lightning callbacks as ``callback_metrics``.
:class:`EpochBatches` gives the trial order of every epoch exactly as the loop defines it, so a
run is bit-identical to calling ``step`` and ``end_epoch`` by hand, and a resumed run continues
at its saved epoch. :func:`run_epochs` builds the Trainer: one device (the data's), the package's
own checkpoint and progress bar instead of Lightning's (a ``ModelCheckpoint`` among the
callbacks writes Lightning checkpoints too), Lightning's start-up messages silenced
for the run only, Ctrl+C raising ``KeyboardInterrupt`` as it always did (Lightning alone
would exit the process and ignore further interrupts), and SIGTERM ending the process by the
signal between two steps (Lightning alone would exit with status 0).

Lightning callbacks (``lightning.pytorch.callbacks``: ``EarlyStopping``, ``LearningRateMonitor``,
``ModelCheckpoint``...) run alongside the package's hooks, which stay where Lightning's
equivalents would drop a guarantee:

* the package's :class:`~pyro_circuits.svi.callbacks.EarlyStopping`, not Lightning's: no epoch
  counts as best before the hooks' warm-up ends (Lightning's has no warm-up), the best epoch is
  restored in memory when training ends and kept when training diverges (Lightning's only stops;
  restoring needs a ``ModelCheckpoint`` file written at every improvement), and its best and
  patience live in the package's checkpoint, so a resumed run stops where an uninterrupted one
  would;
* :class:`~pyro_circuits.svi.callbacks.MovingAverage`, not Lightning's ``WeightAveraging``:
  that callback deep-copies the whole ``LightningModule`` (here the loop and its data), replaces
  the trained parameters by their average when training ends (the fit keeps both here), and
  keeps its average in Lightning's checkpoint rather than the package's, so a resumed run
  would lose it;
* :class:`~pyro_circuits.svi.callbacks.Checkpoint` and
  :class:`~pyro_circuits.svi.callbacks.ProgressBar`: the checkpoint carries the run's
  fingerprint, the RNG state and the hooks' entries and is written atomically.

Example:
    >>> batches = EpochBatches(5, batch_size=2, seed=0)
    >>> batches.set_epoch(1)
    >>> [b.tolist() for b in batches] == [
    ...     b.tolist() for b in torch.randperm(5, generator=torch.Generator().manual_seed(1)).split(2)]
    True
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import warnings
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pyro_circuits.checks import torch_device
from pyro_circuits.svi.callbacks import Callback

__all__ = [
    "EpochBatches",
    "SVIModule",
    "loggers",
    "resolve_device",
    "run_epochs",
    "split_callbacks",
]

#: Lightning's start-up notes and advice that do not apply to one-process SVI on index batches.
_QUIET = (
    r".*does not have many workers.*",
    r".*number of training batches.*logging interval.*",
    r".*`LightningModule.configure_optimizers`.*",
    r".*Tensor Cores.*",
    r".*module\(s\) in eval mode at the start of training.*",  # each epoch sets train mode
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's own use of torch
)


class EpochBatches(torch.utils.data.Sampler):
    """Batches of the indices of ``n_trials`` trials: in epoch ``e`` the order ``torch.randperm``
    gives with the seed ``seed + offset + e``, ``batch_size`` at a time. Lightning calls
    :meth:`set_epoch` with its own epoch count, which starts at 0 in a resumed run; ``offset``
    is the epochs done before.

    Example:
        >>> len(EpochBatches(5, batch_size=2, seed=0))
        3
    """

    def __init__(self, n_trials: int, batch_size: int, seed: int, offset: int = 0) -> None:
        self.n_trials, self.batch_size, self.seed, self.offset = n_trials, batch_size, seed, offset
        self.epoch = offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.offset + epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.n_trials, generator=generator).split(self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.n_trials / self.batch_size)


class SVIModule(pl.LightningModule):
    """A ``LightningModule`` running a :class:`~pyro_circuits.svi.loop.Loop`'s steps and epoch
    ends (manual optimisation with the loop's own Adam and clipping); an epoch cut short by a
    diverged step is neither ended nor recorded, as in the loop."""

    def __init__(self, loop) -> None:
        super().__init__()
        self.loop = loop
        self.model, self.guide = loop.model, loop.guide
        self.automatic_optimization = False
        self._epoch_loss, self._cut = 0.0, False

    def configure_optimizers(self):
        return self.loop.optimizer

    def on_train_epoch_start(self) -> None:
        self.loop.model.train()
        self.loop.guide.train()
        self._epoch_loss = 0.0

    def training_step(self, idx: torch.Tensor, batch_idx: int) -> None:
        loop = self.loop
        loss = loop.step(idx, loop.state["epoch"], optimizer=self.optimizers())
        if loss is None:
            loop.state["elapsed"] = loop.elapsed()
            self._cut = self.trainer.should_stop = True
            return
        self._epoch_loss += loss.item() * len(idx) / len(loop.counts)

    def on_train_epoch_end(self) -> None:
        if self._cut:
            return
        loop, history = self.loop, self.loop.state["history"]
        recorded = len(history)
        stop = loop.end_epoch(loop.state["epoch"], self._epoch_loss)
        if len(history) > recorded:
            self._log(history[-1])
        if stop:
            self.trainer.should_stop = True

    def _log(self, record: dict) -> None:
        """The epoch's record (its numbers) as callback metrics and to every logger, at the step
        the loop has reached."""
        metrics = {
            key: int(value) if isinstance(value, bool) else value
            for key, value in record.items()
            if key != "step" and isinstance(value, int | float) and math.isfinite(value)
        }
        self.log_dict(
            {key: float(value) for key, value in metrics.items()}, on_epoch=True, logger=False
        )
        for logger in self.loggers:
            logger.log_metrics(metrics, step=record["step"])
            logger.save()


class _Interrupted(BaseException):
    """Ctrl+C during the Trainer's run, raised past Lightning's interrupt handling."""


@contextlib.contextmanager
def _quiet_and_interruptible():
    """Lightning's info logs and inapplicable advice silenced, and Ctrl+C raising
    :class:`_Interrupted` (not Lightning's exit), for the duration of the block."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    main = threading.current_thread() is threading.main_thread()
    ours = main and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        with warnings.catch_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message)
            for logger in loggers:
                logger.setLevel(logging.WARNING)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_interrupted(signum, frame) -> None:
    raise _Interrupted


#: The accelerators :func:`resolve_device` knows, as Lightning names them ("gpu" is CUDA).
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
_LOGGERS = {"csv": pl.loggers.CSVLogger, "tensorboard": pl.loggers.TensorBoardLogger}


def _device_index(devices) -> int | None:
    """The one device index ``devices`` names (None: any one), or a ValueError."""
    if devices is None or (
        isinstance(devices, int) and not isinstance(devices, bool) and devices == 1
    ):
        return None
    one = isinstance(devices, list | tuple) and len(devices) == 1
    if one and isinstance(devices[0], int) and not isinstance(devices[0], bool) and devices[0] >= 0:
        return devices[0]
    raise ValueError(
        f"devices must be 1 or a one-element list of a device index, got {devices!r}: SVI here"
        " runs in one process on one device (no data-parallel training across devices)"
    )


def resolve_device(device=None, accelerator=None, devices=None) -> torch.device:
    """The one torch device of a run from ``train``'s ``device``, ``accelerator`` and
    ``devices``: ``device`` when given (``accelerator`` and ``devices``, if also given, must
    agree with it), else ``accelerator`` (default ``"cpu"``; ``"auto"``: CUDA, else MPS, else
    CPU) at index ``devices[0]`` when a list names it. A ValueError naming the argument when
    they disagree, name several devices, or name a device this machine lacks.

    Example:
        >>> resolve_device(accelerator="cpu", devices=1)
        device(type='cpu')
    """
    index = _device_index(devices)
    if accelerator is not None and (
        not isinstance(accelerator, str) or accelerator not in ACCELERATORS
    ):
        raise ValueError(f"accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
    named = {"gpu": "cuda"}.get(accelerator, accelerator)
    if device is not None:
        device = torch_device("device", device)
        if named not in (None, "auto", device.type):
            raise ValueError(f"device={str(device)!r} and accelerator={accelerator!r} disagree")
        if index is not None and (device.index or 0) != index:
            raise ValueError(f"device={str(device)!r} and devices={devices!r} disagree")
        kind, index = device.type, device.index if index is None else index
    elif named == "auto":
        mps = getattr(torch.backends, "mps", None)
        kind = (
            "cuda" if torch.cuda.is_available() else "mps" if mps and mps.is_available() else "cpu"
        )
    else:
        kind = named or "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device or accelerator asks for CUDA, which this machine lacks")
        return torch.device("cuda", torch.cuda.current_device() if index is None else index)
    if index not in (None, 0):
        raise ValueError(f"devices={devices!r}: a {kind} run has one device, index 0")
    return torch.device(kind)


def loggers(logger=None, log_dir=None) -> list | bool:
    """The Trainer's loggers from ``train``'s ``logger`` and ``log_dir``: None or False for none;
    ``"csv"`` or ``"tensorboard"`` (written to ``<log_dir>/csv`` or ``<log_dir>/tensorboard``,
    ``log_dir`` by default ``lightning_logs``, in a new ``version_<n>`` folder per run); a
    Lightning ``Logger``; or a list of those.

    Example:
        >>> [type(x).__name__ for x in loggers(["csv"], "logs")]
        ['CSVLogger']
    """
    if log_dir is not None and not isinstance(log_dir, str | os.PathLike):
        raise TypeError(f"log_dir must be a folder path, got {type(log_dir).__name__}")
    if logger is None or logger is False:
        if log_dir is not None:
            raise ValueError("log_dir is where logger='csv' or 'tensorboard' writes; give a logger")
        return False
    chosen = []
    for item in logger if isinstance(logger, list | tuple) else [logger]:
        if isinstance(item, str) and item in _LOGGERS:
            chosen.append(_LOGGERS[item](save_dir=log_dir or "lightning_logs", name=item))
        elif isinstance(item, pl.loggers.Logger):
            chosen.append(item)
        else:
            raise ValueError(
                f"logger must be None, {' or '.join(map(repr, _LOGGERS))}, a Lightning Logger or"
                f" a list of those, got {item!r}"
            )
    return chosen


def split_callbacks(callbacks) -> tuple[list, list]:
    """``callbacks`` split into the package's hooks (:class:`~pyro_circuits.svi.Callback`) and
    Lightning callbacks, each in its order; a TypeError for anything else.

    Example:
        >>> from lightning.pytorch.callbacks import LearningRateMonitor
        >>> hooks, lightning = split_callbacks([Callback(), LearningRateMonitor()])
        >>> len(hooks), type(lightning[0]).__name__
        (1, 'LearningRateMonitor')
    """
    kinds = (Callback, pl.Callback)
    if isinstance(callbacks, kinds) or not all(isinstance(c, kinds) for c in callbacks):
        raise TypeError(
            "callbacks must be a list of pyro_circuits.svi.Callback or lightning.pytorch.Callback"
            f" objects, got {callbacks!r}"
        )
    return [c for c in callbacks if isinstance(c, Callback)], [
        c for c in callbacks if isinstance(c, pl.Callback)
    ]


def trainer_device(device: torch.device) -> tuple[str, int | list[int]]:
    """The Trainer's ``accelerator`` and ``devices`` for one torch device.

    Example:
        >>> trainer_device(torch.device("cuda", 1))
        ('cuda', [1])
    """
    if device.type == "cuda":
        return "cuda", [device.index or 0]
    return device.type, 1


def run_epochs(loop, *, logger=False, callbacks=()) -> None:
    """Run ``loop``'s epochs from its current one to its ``max_epochs`` (or until it stops) on a
    Lightning Trainer on the loop's device, with ``logger`` and the Lightning ``callbacks``."""
    start = loop.state["epoch"]
    if start >= loop.max_epochs:
        return
    n_trials = len(loop.counts)
    batches = EpochBatches(n_trials, loop.batch_size, loop.seed, offset=start)
    # a generator of its own: the loader's base seed is not drawn from the global RNG
    data = torch.utils.data.DataLoader(
        torch.arange(n_trials), batch_size=None, sampler=batches, generator=torch.Generator()
    )
    accelerator, devices = trainer_device(loop.device)
    # Lightning's checkpoints only when asked for: the package's own carries the run's fingerprint
    asked = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    try:
        with _quiet_and_interruptible():
            trainer = pl.Trainer(
                accelerator=accelerator,
                devices=devices,
                max_epochs=loop.max_epochs - start,
                logger=logger,
                callbacks=list(callbacks),
                enable_checkpointing=asked,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                use_distributed_sampler=False,
            )
            trainer.fit(SVIModule(loop), data)
    except _Interrupted:
        raise KeyboardInterrupt from None
    except SIGTERMException:  # Lightning's handler stops at a step's end and raises this
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # its own handler is gone
            signal.raise_signal(signal.SIGTERM)  # ended by the signal, as without Lightning
        raise

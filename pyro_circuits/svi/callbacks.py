"""Hooks into the SVI loop (:class:`~pyro_circuits.svi.loop.Loop`): checkpointing, early stopping
with the best epoch restored, a moving average of the parameters, a time budget and the progress
bar. The schedules (:mod:`~pyro_circuits.svi.schedules`) and coordinated dropout
(:mod:`~pyro_circuits.svi.dropout`) are hooks too.

The loop calls each hook of its list in order, at every point below, and the ends of training in
reverse order (the last hook begun is the first ended):

* ``on_train_begin(loop)`` -- once, after seeding the RNG, before the first epoch;
* ``step_kwargs(loop, counts, inputs)`` -- keyword arguments for model and guide at this step;
* ``scaling(loop)`` -- a context manager (or None) around this step's loss;
* ``penalty(loop)`` -- a term (or None) added to this step's loss;
* ``on_backward(loop)`` -- gradients computed, before clipping and the optimiser step;
* ``on_step_end(loop, loss)`` -- after the optimiser step;
* ``on_epoch_end(loop, record, monitored)`` -- the epoch's history record (a hook may add to
  it) and the loss the learning rate and early stopping follow; True asks training to stop;
* ``checkpoint_state()`` / ``load_checkpoint(saved)`` -- entries of the checkpoint;
* ``on_train_end(loop, fit)`` -- the :class:`~pyro_circuits.svi.SVIFit` about to be returned.

A hook with a ``warmup`` of n steps makes training count no epoch as best, and average no
parameters, before step n.

These hooks are the package's own protocol; :func:`~pyro_circuits.svi.train` also takes
Lightning callbacks, which the Trainer runs (:mod:`~pyro_circuits.svi.lightning` says why
early stopping and the moving average stay hooks).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import pickle
from pathlib import Path

import torch
from torch.optim import swa_utils
from tqdm.auto import tqdm

from pyro_circuits.checks import positive_int, probability, real, writable_dir
from pyro_circuits.results import atomic_save, stray_temporaries

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "MovingAverage", "ProgressBar", "TimeLimit"]


class Callback:
    """A hook into the SVI loop; every method does nothing unless overridden.

    ``loop`` is the running :class:`~pyro_circuits.svi.loop.Loop`: its ``model``, ``guide``,
    ``steps`` (optimiser steps taken), ``state`` (what a checkpoint saves) and ``burn_in`` (the
    longest ``warmup`` of its hooks) are there to read.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> from pyro_circuits.svi import train
        >>> class Losses(Callback):
        ...     def __init__(self):
        ...         self.losses = []
        ...     def on_step_end(self, loop, loss):
        ...         self.losses.append(loss.item())
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> losses = Losses()
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), torch.poisson(torch.ones(8, 10, 3)),
        ...             max_epochs=2, batch_size=4, callbacks=[losses], progress=False)
        >>> len(losses.losses)
        4
    """

    #: Steps of warm-up: no epoch counts as best, and no parameters are averaged, before them.
    warmup: int = 0

    def on_train_begin(self, loop) -> None:
        """Once, before the first epoch (after the RNG is seeded)."""

    def step_kwargs(self, loop, counts, inputs) -> dict:
        """Keyword arguments for the model and the guide at this step."""
        return {}

    def scaling(self, loop) -> contextlib.AbstractContextManager | None:
        """A context manager entered around this step's loss, or None."""
        return None

    def penalty(self, loop) -> torch.Tensor | None:
        """A term added to this step's loss (not to the recorded loss), or None."""
        return None

    def on_backward(self, loop) -> None:
        """The gradients are computed; they are clipped and applied next."""

    def on_step_end(self, loop, loss: torch.Tensor) -> None:
        """After the optimiser step; ``loss`` is the step's -ELBO per trial."""

    def on_epoch_end(self, loop, record: dict, monitored: float) -> bool:
        """After the epoch's record is added to the history; True asks training to stop."""
        return False

    def checkpoint_state(self) -> dict:
        """Entries this hook adds to a checkpoint."""
        return {}

    def load_checkpoint(self, saved: dict) -> None:
        """Resume from a checkpoint's entries (called by :class:`Checkpoint` as it begins)."""

    def on_train_end(self, loop, fit) -> None:
        """After the last epoch, in reverse order of the hooks; ``fit`` is about to be returned."""

    def settings(self) -> dict | None:
        """What a checkpoint's fingerprint records of this hook (its plain attributes), or None
        for a hook that does not change the training (a budget, a bar, the checkpoint)."""
        plain = (bool, int, float, str, tuple, type(None))
        return {
            key: value
            for key, value in sorted(vars(self).items())
            if not key.startswith("_") and isinstance(value, plain)
        }


class MovingAverage(Callback):
    """An exponential moving average of the model's and the guide's parameters
    (``torch.optim.swa_utils``, ``decay`` per step) from the end of the warm-up on, without
    changing the training; buffers are the models' constants and are not averaged. The fit's
    ``averaged_state`` holds it and :meth:`~pyro_circuits.svi.SVIFit.averaged` fits with it.

    Example:
        >>> MovingAverage(0.99).decay
        0.99
    """

    def __init__(self, decay: float) -> None:
        self.decay = probability("average_decay", decay, low_open=True, high_open=True)
        self.average = None

    def on_train_begin(self, loop) -> None:
        self._both = torch.nn.ModuleList([loop.model, loop.guide])
        self.average = swa_utils.AveragedModel(
            self._both, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(self.decay)
        )

    def on_step_end(self, loop, loss) -> None:
        if loop.steps >= loop.burn_in:
            self.average.update_parameters(self._both)

    def checkpoint_state(self) -> dict:
        return {"average": self.average.state_dict()}

    def load_checkpoint(self, saved: dict) -> None:
        if saved.get("average") is not None:
            self.average.load_state_dict(saved["average"])

    def on_train_end(self, loop, fit) -> None:
        if self.average.n_averaged > 0:
            fit.averaged_state = tuple(part.state_dict() for part in self.average.module)


class EarlyStopping(Callback):
    """Keep the parameters of the best epoch past the warm-up (the lowest monitored loss) and
    restore them at the end; with ``patience``, stop after that many epochs past the warm-up
    without a new best. Each history record gets ``best``: True when its epoch became the one
    to restore. Its state (``best``, ``best_params``, ``stale``) lives in the loop's checkpointed
    ``state``.

    If training diverged before any epoch could be kept, it raises a RuntimeError.

    Example:
        >>> EarlyStopping(patience=5).patience
        5
    """

    def __init__(self, patience: int | None = None) -> None:
        self.patience = None if patience is None else positive_int("patience", patience)

    def on_train_begin(self, loop) -> None:
        for key, value in (("best", math.inf), ("best_params", None), ("stale", 0)):
            loop.state.setdefault(key, value)

    def on_epoch_end(self, loop, record, monitored) -> bool:
        state, warm = loop.state, loop.steps >= loop.burn_in
        record["best"] = warm and monitored < state["best"]
        if not warm:
            return False
        if record["best"]:
            state["best"], state["stale"] = monitored, 0
            state["best_params"] = copy.deepcopy((loop.model.state_dict(), loop.guide.state_dict()))
            return False
        state["stale"] += 1
        return self.patience is not None and state["stale"] >= self.patience

    def on_train_end(self, loop, fit) -> None:
        best = loop.state["best_params"]
        if loop.diverged is not None and best is None:
            raise RuntimeError(
                f"training {loop.diverged}, before the {loop.burn_in}-step warm-up ended and any"
                " epoch could be kept; try a smaller lr or clip_norm"
            )
        if best is not None:
            loop.model.load_state_dict(best[0])
            loop.guide.load_state_dict(best[1])


class TimeLimit(Callback):
    """Stop at the end of the first epoch at which ``seconds`` of training have passed.

    Example:
        >>> TimeLimit(60.0).seconds
        60.0
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = real("max_time", seconds, low=0.0)

    def on_epoch_end(self, loop, record, monitored) -> bool:
        return loop.state["elapsed"] >= self.seconds

    def settings(self) -> None:
        return None


class Checkpoint(Callback):
    """Save the loop's full state to ``path`` after every epoch (atomically: a temporary file in
    the same folder, fsynced, then renamed), and resume from it as training begins when it
    exists: model, guide, optimiser, learning-rate schedule, the loop's ``state`` (epoch, step,
    history, ...), the RNG state, and the entries of the other hooks
    (:meth:`Callback.checkpoint_state`).

    The checkpoint holds the run's fingerprint (:meth:`~pyro_circuits.svi.loop.Loop.fingerprint`:
    data, model and guide configuration, settings). Resuming from a checkpoint of another run is
    a ValueError naming what differs, unless ``overwrite=True``, which starts afresh and replaces
    it. A file that is not a readable checkpoint is a ValueError too; temporary files left by a
    write that was killed are removed.

    Hooks that keep entries of their own must come before it in the loop's list.

    Example:
        >>> Checkpoint("fit.ckpt").path.name
        'fit.ckpt'
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"checkpoint must be a file path, got {type(path).__name__}")
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
        self.path, self.overwrite = Path(path), overwrite
        if self.path.is_dir():
            raise ValueError(f"checkpoint {str(self.path)!r} is a folder, not a file path")

    def settings(self) -> None:
        return None

    def read(self, device=None) -> dict:
        """The checkpoint at ``path``; a ValueError when it is not a readable checkpoint."""
        try:
            saved = torch.load(self.path, weights_only=False, map_location=device)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"checkpoint {str(self.path)!r} is not a readable checkpoint (truncated or another"
                f" kind of file): {error}; remove it or pass overwrite=True"
            ) from None
        if not isinstance(saved, dict) or "state" not in saved or "model" not in saved:
            raise ValueError(f"checkpoint {str(self.path)!r} does not hold a training checkpoint")
        return saved

    def on_train_begin(self, loop) -> None:
        for stray in stray_temporaries(self.path):
            stray.unlink(missing_ok=True)
        writable_dir("the checkpoint's folder", self.path.parent)
        if not self.path.exists():
            return
        if self.overwrite:
            return  # started afresh; the first epoch's end replaces the file
        saved = self.read(loop.device)
        stored, current = saved.get("fingerprint", {}), loop.fingerprint()
        differ = [key for key in current if stored.get(key) != current[key]]
        if differ:
            raise ValueError(
                f"checkpoint {str(self.path)!r} was written by another run: its "
                f"{', '.join(differ)} differ from this call's; pass overwrite=True to start "
                "afresh, or another checkpoint path"
            )
        loop.resume(saved)

    def on_epoch_end(self, loop, record, monitored) -> bool:
        atomic_save(self.path, lambda partial: torch.save(loop.checkpoint(), partial))
        return False


class ProgressBar(Callback):
    """A tqdm bar of the steps, or of the seconds under a time budget of ``seconds`` (the epoch
    cap would show an ETA of hours); ``disable`` hides it.

    Example:
        >>> ProgressBar(seconds=10.0, disable=True).seconds
        10.0
    """

    def __init__(self, seconds: float | None = None, *, disable: bool = False) -> None:
        self.seconds, self.disable = seconds, disable

    def settings(self) -> None:
        return None

    def on_train_begin(self, loop) -> None:
        timed = self.seconds is not None
        self.bar = tqdm(
            total=self.seconds if timed else loop.max_epochs * loop.n_batches,
            initial=loop.state["elapsed"] if timed else loop.state["epoch"] * loop.n_batches,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
            if timed
            else None,
            disable=self.disable,
            desc="SVI",
            dynamic_ncols=True,
        )

    def _show_time(self, seconds: float) -> None:
        self.bar.update(min(seconds, self.seconds) - self.bar.n)

    def on_step_end(self, loop, loss) -> None:
        if self.seconds is not None:
            self._show_time(loop.elapsed())
        else:
            self.bar.update()
        self.bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)

    def on_epoch_end(self, loop, record, monitored) -> bool:
        valid = record["valid_loss"]
        self.bar.set_postfix(
            loss=f"{record['loss']:.4g}",
            valid=None if valid is None else f"{valid:.4g}",
            lr=f"{record['lr']:.2g}",
        )
        return False

    def on_train_end(self, loop, fit) -> None:
        if self.seconds is not None:  # the epoch's end, past the last batch, may reach the budget
            self._show_time(loop.state["elapsed"])
        self.bar.close()

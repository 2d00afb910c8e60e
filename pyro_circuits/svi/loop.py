"""The SVI loop: minibatch epochs of small steps, with everything optional done by hooks
(:mod:`~pyro_circuits.svi.callbacks`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyro
import torch

from pyro_circuits.svi.callbacks import Callback
from pyro_circuits.svi.elbo import Validation
from pyro_circuits.svi.fit import SVIFit
from pyro_circuits.svi.local import local_params

__all__ = ["Loop", "Optimiser", "trained_parameters"]


def trained_parameters(model: torch.nn.Module, guide: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters training optimises, each once, in the order of its optimiser's state
    (a checkpoint's ``optimizer`` entry indexes them in this order).

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> guide = LFADSEncoder(model, enc_dim=4)
        >>> len(trained_parameters(model, guide)) == len({*model.parameters(), *guide.parameters()})
        True
    """
    return list({id(p): p for m in (model, guide) for p in m.parameters()}.values())


@dataclass(frozen=True)
class Optimiser:
    """Adam (``betas``, ``eps``: torch's defaults) with gradient-norm clipping at ``clip_norm``;
    the learning rate starts at ``lr`` and is multiplied by ``decay`` after ``patience`` epochs
    without improvement of the monitored loss, down to ``min_lr``.

    Example:
        >>> optimizer, scheduler = Optimiser(lr=0.1).build([torch.nn.Parameter(torch.zeros(2))])
        >>> optimizer.param_groups[0]["lr"]
        0.1
    """

    lr: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_norm: float = 200.0
    decay: float = 0.95
    patience: int = 6
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.clip_norm <= 0:
            raise ValueError(
                f"lr and clip_norm must be positive, got lr={self.lr}, clip_norm={self.clip_norm}"
            )
        if not all(0 <= beta < 1 for beta in self.betas) or self.eps <= 0:
            raise ValueError(
                f"Adam needs betas in [0, 1) and eps > 0, got betas={self.betas}, eps={self.eps}"
            )

    def build(self, params) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ReduceLROnPlateau]:
        """The optimiser of ``params`` and its learning-rate schedule."""
        optimizer = torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.decay, patience=self.patience, min_lr=self.min_lr
        )
        return optimizer, scheduler


class Loop:
    """One run of minibatch SVI of ``model`` and ``guide`` on ``counts`` (and ``inputs``).

    Each epoch visits the trials in the order ``torch.randperm`` gives with the seed
    ``seed + epoch``, ``batch_size`` at a time. Each :meth:`step` minimises the -ELBO per
    training trial (``elbo``, the ``trials`` plate scaling a minibatch to the data set) plus the
    hooks' penalties. After each epoch the learning rate follows the monitored loss: the
    ``validation`` loss when given, else the epoch's mean training loss. A non-finite loss (or
    the model rejecting a non-finite value with ``ValueError``) after the first epoch ends
    training and says why in ``diverged``; in the first epoch it raises. :meth:`run` runs under
    Pyro's ``module_local_params`` setting and returns an :class:`~pyro_circuits.svi.SVIFit`.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> loop = Loop(model, LFADSEncoder(model, enc_dim=4), torch.poisson(torch.ones(8, 10, 3)),
        ...             batch_size=4, max_epochs=2)
        >>> [record["step"] for record in loop.run().history]
        [2, 4]
    """

    def __init__(
        self,
        model,
        guide,
        counts: torch.Tensor,
        inputs: torch.Tensor | None = None,
        *,
        hooks: Sequence[Callback] = (),
        optimiser: Optimiser | None = None,
        elbo: pyro.infer.ELBO | None = None,
        validation: Validation | None = None,
        batch_size: int = 128,
        max_epochs: int = 100,
        seed: int = 0,
    ) -> None:
        self.model, self.guide, self.counts, self.inputs = model, guide, counts, inputs
        self.hooks = list(hooks)
        self.optimiser = optimiser or Optimiser()
        self.elbo = elbo or pyro.infer.Trace_ELBO()
        self.validation = validation
        self.batch_size, self.max_epochs, self.seed = batch_size, max_epochs, seed
        self.params = trained_parameters(model, guide)
        self.optimizer, self.scheduler = self.optimiser.build(self.params)
        #: What a checkpoint saves besides the modules, the optimiser and the RNG.
        self.state = {"epoch": 0, "step": 0, "history": [], "elapsed": 0.0}
        self.diverged: str | None = None
        self._start = time.perf_counter()

    @property
    def device(self) -> torch.device:
        return self.counts.device

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return self.state["step"]

    @property
    def n_batches(self) -> int:
        """Steps per epoch."""
        return math.ceil(len(self.counts) / self.batch_size)

    @property
    def burn_in(self) -> int:
        """The longest warm-up of the hooks, in steps."""
        return max((hook.warmup for hook in self.hooks), default=0)

    def elapsed(self) -> float:
        """Seconds of training, those of a resumed checkpoint included."""
        return time.perf_counter() - self._start

    def run(self) -> SVIFit:
        """Train from the current epoch to ``max_epochs`` or until a hook stops it."""
        with local_params(self.model, self.guide):
            pyro.set_rng_seed(self.seed)  # a resumed checkpoint restores its own RNG state
            for hook in self.hooks:
                hook.on_train_begin(self)
            self._start = time.perf_counter() - self.state["elapsed"]
            for epoch in range(self.state["epoch"], self.max_epochs):
                if self.epoch(epoch):
                    break
            state = self.state
            fit = SVIFit(self.model, self.guide, state["history"], state["elapsed"], self.diverged)
            for hook in reversed(self.hooks):
                hook.on_train_end(self, fit)
        return fit

    def epoch(self, epoch: int) -> bool:
        """One pass over the trials; True when training stops (a hook asks, or it diverged)."""
        self.model.train()
        self.guide.train()
        n_trials = len(self.counts)
        order = torch.randperm(n_trials, generator=torch.Generator().manual_seed(self.seed + epoch))
        epoch_loss = 0.0
        for idx in order.to(self.device).split(self.batch_size):
            loss = self.step(idx, epoch)
            if loss is None:
                self.state["elapsed"] = self.elapsed()
                return True
            epoch_loss += loss.item() * len(idx) / n_trials
        return self.end_epoch(epoch, epoch_loss)

    def step(self, idx: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """One optimiser step on the trials ``idx``: their -ELBO per trial, or None (and
        ``diverged`` set) when it is not finite."""
        counts = self.counts[idx]
        inputs = None if self.inputs is None else self.inputs[idx]
        extra = {}
        for hook in self.hooks:
            extra.update(hook.step_kwargs(self, counts, inputs))
        try:
            loss = self.loss(counts, inputs, **extra)
        except ValueError as error:
            if epoch == 0:  # the data or the model, not the optimisation
                raise
            self.diverged = f"diverged at step {self.steps} (epoch {epoch}): {error}"
            return None
        total = loss
        for penalty in (hook.penalty(self) for hook in self.hooks):
            total = total if penalty is None else total + penalty
        self.optimizer.zero_grad()
        total.backward()
        for hook in self.hooks:
            hook.on_backward(self)
        torch.nn.utils.clip_grad_norm_(self.params, self.optimiser.clip_norm)
        self.optimizer.step()
        self.state["step"] += 1
        for hook in self.hooks:
            hook.on_step_end(self, loss)
        return loss

    def loss(self, counts, inputs=None, **kwargs) -> torch.Tensor:
        """-ELBO per training trial of a batch under the hooks' scalings; a ValueError if it is
        not finite. ``kwargs`` go to the model and the guide."""
        n_trials = len(self.counts)
        with contextlib.ExitStack() as stack:
            for scaling in (hook.scaling(self) for hook in self.hooks):
                if scaling is not None:
                    stack.enter_context(scaling)
            loss = self.elbo.differentiable_loss(
                self.model, self.guide, counts, inputs, n_trials=n_trials, **kwargs
            )
        loss = loss / n_trials
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is {loss.item()}")
        return loss

    def end_epoch(self, epoch: int, epoch_loss: float) -> bool:
        """Validate, step the learning rate, record the epoch; True when a hook stops training."""
        valid = None
        if self.validation is not None:
            self.model.eval()
            self.guide.eval()
            valid = self.validation(self.model, self.guide, self.elbo)
        monitored = epoch_loss if valid is None else valid
        self.scheduler.step(monitored)
        self.state["epoch"] = epoch + 1
        self.state["elapsed"] = self.elapsed()
        record = {
            "epoch": epoch,
            "step": self.steps,
            "loss": epoch_loss,
            "valid_loss": valid,
            "lr": self.optimizer.param_groups[0]["lr"],
            "time": self.state["elapsed"],
        }
        self.state["history"].append(record)
        return any([hook.on_epoch_end(self, record, monitored) for hook in self.hooks])

    def checkpoint(self) -> dict:
        """Everything :meth:`resume` needs to continue exactly where the loop is."""
        saved = {
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state,
            "rng": pyro.util.get_rng_state(),
        }
        for hook in self.hooks:
            saved.update(hook.checkpoint_state())
        return saved

    def resume(self, saved: dict) -> None:
        """Continue from a :meth:`checkpoint`."""
        self.model.load_state_dict(saved["model"])
        self.guide.load_state_dict(saved["guide"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = saved["state"]
        for hook in self.hooks:
            hook.load_checkpoint(saved)
        pyro.util.set_rng_state(saved["rng"])

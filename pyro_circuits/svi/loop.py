"""The SVI loop: minibatch epochs of small steps, with everything optional done by hooks
(:mod:`~pyro_circuits.svi.callbacks`)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyro
import torch

from pyro_circuits.checks import nonnegative_int, positive_float, probability, real
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


def _parameter_names(model: torch.nn.Module, guide: torch.nn.Module) -> list[str]:
    """``model.<name>`` / ``guide.<name>`` of each of :func:`trained_parameters`, in its order."""
    names: dict[int, str] = {}
    for part, module in (("model", model), ("guide", guide)):
        for name, p in module.named_parameters():
            names.setdefault(id(p), f"{part}.{name}")
    return list(names.values())


def _digest(*parts) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        if torch.is_tensor(part):
            part = part.detach().cpu().contiguous()
            hasher.update(f"{part.dtype}{tuple(part.shape)}".encode())
            hasher.update(part.numpy().tobytes())
        else:
            hasher.update(repr(part).encode())
    return hasher.hexdigest()[:16]


def configuration(module) -> dict:
    """What a checkpoint records of a model or guide's configuration: its class, the names and
    shapes of its state, and its plain attributes (sizes, ``dt``, likelihood, prior scales); not
    its parameter values, so fresh weights resume from the same checkpoint.

    Example:
        >>> configuration(torch.nn.Linear(2, 3))["state"]
        [('bias', (3,)), ('weight', (3, 2))]
    """
    plain = (bool, int, float, str, tuple, type(None))
    attributes = {
        key: value
        for key, value in sorted(vars(module).items())
        if not key.startswith("_") and key != "training" and isinstance(value, plain)
    }
    return {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "state": sorted((k, tuple(v.shape)) for k, v in module.state_dict().items()),
        "attributes": attributes,
    }


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
        positive_float("lr", self.lr)
        positive_float("clip_norm", self.clip_norm)
        positive_float("Adam needs adam_eps", self.eps)
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:
            raise TypeError(f"adam_betas must be a pair of numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            probability("Adam needs each of adam_betas", beta, high_open=True)
        probability("lr_decay", self.decay, low_open=True, high_open=True)
        nonnegative_int("lr_patience", self.patience)
        real("lr_min", self.min_lr, low=0.0)

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
    training and says why in ``diverged``; in the first epoch it raises. :meth:`run` drives the
    epochs on a Lightning ``Trainer`` on the data's device (:mod:`~pyro_circuits.svi.lightning`),
    with ``logger`` (Lightning loggers, or False) and the Lightning ``trainer_callbacks``, under
    Pyro's ``module_local_params`` setting, and returns an :class:`~pyro_circuits.svi.SVIFit`.

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
        logger=False,
        trainer_callbacks: Sequence = (),
    ) -> None:
        self.model, self.guide, self.counts, self.inputs = model, guide, counts, inputs
        self.hooks = list(hooks)
        self.optimiser = optimiser or Optimiser()
        self.elbo = elbo or pyro.infer.Trace_ELBO()
        self.validation = validation
        self.batch_size, self.max_epochs, self.seed = batch_size, max_epochs, seed
        #: The Lightning Trainer's loggers and callbacks.
        self.logger, self.trainer_callbacks = logger, list(trainer_callbacks)
        self.params = trained_parameters(model, guide)
        self.param_names = _parameter_names(model, guide)
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
        """Train from the current epoch to ``max_epochs`` or until a hook stops it, on a
        Lightning Trainer (:func:`~pyro_circuits.svi.lightning.run_epochs`)."""
        from pyro_circuits.svi.lightning import run_epochs  # Lightning loads when training runs

        with local_params(self.model, self.guide):
            pyro.set_rng_seed(self.seed)  # a resumed checkpoint restores its own RNG state
            for hook in self.hooks:
                hook.on_train_begin(self)
            self._start = time.perf_counter() - self.state["elapsed"]
            run_epochs(self, logger=self.logger, callbacks=self.trainer_callbacks)
            state = self.state
            fit = SVIFit(self.model, self.guide, state["history"], state["elapsed"], self.diverged)
            for hook in reversed(self.hooks):
                hook.on_train_end(self, fit)
        return fit

    def step(self, idx: torch.Tensor, epoch: int, optimizer=None) -> torch.Tensor | None:
        """One optimiser step on the trials ``idx``: their -ELBO per trial, or None (and
        ``diverged`` set) when it is not finite. ``optimizer`` steps in place of the loop's own
        (Lightning's wrapper of it, which counts the step)."""
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
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.optimiser.clip_norm)
        if not torch.isfinite(norm):  # the parameters are still those of the last finite step
            bad = self._non_finite(p.grad for p in self.params)
            message = f"the gradient of {bad} is not finite at step {self.steps} (epoch {epoch})"
            if epoch == 0:
                raise FloatingPointError(f"training {message}; try a smaller lr or clip_norm")
            self.diverged = f"diverged: {message}"
            return None
        (optimizer or self.optimizer).step()
        self.state["step"] += 1
        for hook in self.hooks:
            hook.on_step_end(self, loss)
        return loss

    def _non_finite(self, tensors) -> list[str]:
        """The names of the parameters whose entry of ``tensors`` holds NaN or inf."""
        return [
            name
            for name, t in zip(self.param_names, tensors, strict=True)
            if t is not None and not bool(torch.isfinite(t).all())
        ]

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
        """Validate, step the learning rate, record the epoch; True when a hook stops training.
        Non-finite parameters or a non-finite validation loss end training as diverged (the
        epoch is not recorded, so neither kept nor checkpointed)."""
        bad = self._non_finite(self.params)
        if bad:
            self.diverged = f"diverged: the parameters {bad} are not finite after epoch {epoch}"
            return True
        valid = None
        if self.validation is not None:
            self.model.eval()
            self.guide.eval()
            valid = self.validation(self.model, self.guide, self.elbo)
            if not math.isfinite(valid):
                self.diverged = f"diverged: the validation loss is {valid} after epoch {epoch}"
                return True
        if not math.isfinite(epoch_loss):
            self.diverged = (
                f"diverged: the epoch's training loss is {epoch_loss} after epoch {epoch}"
            )
            return True
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

    def fingerprint(self) -> dict:
        """What identifies this run in a checkpoint: digests of the data (shape and values),
        the model's and the guide's :func:`configuration`, and the training settings (optimiser,
        batch size, seed, ELBO, validation, the hooks' settings). ``max_epochs`` and the time
        budget are left out, so a run may be resumed for longer."""
        validation = getattr(self, "validation", None)
        valid = None if validation is None else (validation.counts, validation.inputs)
        hooks = [
            (type(hook).__name__, hook.settings())
            for hook in self.hooks
            if hasattr(hook, "settings") and hook.settings() is not None
        ]
        settings = (
            getattr(self, "optimiser", None),
            getattr(self, "batch_size", None),
            getattr(self, "seed", None),
            type(getattr(self, "elbo", None)).__name__,
            getattr(getattr(self, "elbo", None), "num_particles", None),
            None if validation is None else (validation.sites, validation.batch_size),
            hooks,
        )
        if getattr(self, "_data_digest", None) is None:  # hashed once per run, not per epoch
            self._data_digest = _digest(self.counts, getattr(self, "inputs", None), *(valid or ()))
        return {
            "data": self._data_digest,
            "data shape": tuple(self.counts.shape),
            "model": _digest(configuration(self.model)),
            "guide": _digest(configuration(self.guide)),
            "settings": _digest(*settings),
        }

    def checkpoint(self) -> dict:
        """Everything :meth:`resume` needs to continue exactly where the loop is."""
        saved = {
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state,
            "rng": pyro.util.get_rng_state(),
            "fingerprint": self.fingerprint(),
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

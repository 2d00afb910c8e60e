""":func:`train`: SVI of amortised sequential latent-variable models (LFADS and later ones).

The model and guide are callables with the signature ``fn(counts, inputs=None, *,
n_trials=None, **step_kwargs)`` whose per-trial sites live in a ``pyro.plate("trials",
n_trials, subsample=...)``; the hooks' step keywords (``cd_mask`` of
:class:`~pyro_circuits.svi.CoordinatedDropout`) are passed only while those hooks run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import pyro
import torch

from pyro_circuits.checks import (
    as_tensor,
    check_counts,
    nonnegative_int,
    positive_int,
    probability,
    real,
    require_positive_ints,
    seed_int,
)
from pyro_circuits.svi.callbacks import (
    Checkpoint,
    EarlyStopping,
    MovingAverage,
    ProgressBar,
    TimeLimit,
)
from pyro_circuits.svi.dropout import CoordinatedDropout
from pyro_circuits.svi.elbo import Validation, partial_elbo_loss
from pyro_circuits.svi.fit import SVIFit
from pyro_circuits.svi.loop import Loop, Optimiser
from pyro_circuits.svi.schedules import KLWarmup, L2Penalty, Staged
from pyro_circuits.threads import thread_count, torch_threads

__all__ = ["train"]


def train(
    model,
    guide,
    counts: torch.Tensor,
    inputs: torch.Tensor | None = None,
    *,
    valid_counts: torch.Tensor | None = None,
    valid_inputs: torch.Tensor | None = None,
    valid_sites: Sequence[str] | None = None,
    batch_size: int = 128,
    max_epochs: int = 100,
    lr: float = 1e-2,
    lr_decay: float = 0.95,
    lr_patience: int = 6,
    lr_min: float = 1e-5,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    clip_norm: float = 200.0,
    kl_warmup: int = 0,
    l2_scale: float = 0.0,
    l2_warmup: int = 0,
    cd_rate: float = 0.0,
    staged: Staged | None = None,
    patience: int | None = None,
    max_time: float | None = None,
    elbo: pyro.infer.ELBO | None = None,
    checkpoint: str | os.PathLike | None = None,
    overwrite: bool = False,
    average_decay: float | None = None,
    callbacks: Sequence = (),
    seed: int = 0,
    device: str | torch.device | None = None,
    accelerator: str | None = None,
    devices: int | Sequence[int] | None = None,
    logger=None,
    log_dir: str | os.PathLike | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> SVIFit:
    """Fit ``model`` and ``guide`` to spike counts with minibatch SVI (:class:`~.loop.Loop`).

    Loss: -ELBO per training trial (``elbo``, default ``Trace_ELBO()``), the latent sites' KL
    ramping to 1 over ``kl_warmup`` steps (:class:`KLWarmup`), plus ``l2_scale`` ·
    ramp(``l2_warmup``) · ½Σ‖W_hh‖²/Σnumel (:class:`L2Penalty`). Adam (``lr``, ``adam_betas``,
    ``adam_eps``), the gradient norm clipped at ``clip_norm``; the learning rate times
    ``lr_decay`` (down to ``lr_min``) after ``lr_patience`` epochs without improvement of the
    validation -ELBO of ``valid_counts`` (of the ``valid_sites`` if named,
    :func:`partial_elbo_loss`), else of the training loss. The best epoch past the warm-up is
    restored; ``patience`` epochs without a new best, or ``max_time`` seconds, stop training
    (:class:`EarlyStopping`, :class:`TimeLimit`). Diverging after the first epoch stops it with
    a warning, the best parameters kept and ``SVIFit.diverged`` saying why; diverging before
    any epoch could be kept raises. ``cd_rate``: :class:`CoordinatedDropout`; ``staged``:
    :class:`Staged` (which then ramps the L2 penalty); ``checkpoint``: saved after every epoch
    and resumed if it exists and was written by the same run (data, model and guide
    configuration, settings; :class:`Checkpoint`), an error if it was written by another run
    unless ``overwrite=True``; ``average_decay``: :class:`MovingAverage`;
    ``callbacks``: more hooks, run after those and before the checkpoint and the progress bar,
    and Lightning callbacks (``lightning.pytorch.callbacks.EarlyStopping(monitor="valid_loss")``,
    ``LearningRateMonitor``...), given to the Trainer.

    The epochs run on a Lightning ``Trainer`` (:mod:`~pyro_circuits.svi.lightning`), under Pyro's
    ``module_local_params`` setting, restored afterwards. ``logger``: None (default), ``"csv"``,
    ``"tensorboard"`` (written under ``log_dir``, default ``lightning_logs``), a Lightning
    ``Logger`` or a list of them; each epoch's record (loss, valid_loss, lr, ...) is logged at
    step = optimiser steps. ``device`` (default CPU), or ``accelerator`` (``"cpu"``, ``"cuda"``
    or ``"gpu"``, ``"mps"``, ``"auto"``) with ``devices`` (1 or ``[index]``): one device, as
    SVI here runs in one process; the two must agree when both are given. ``threads``: torch
    intra-op threads for the training, restored after it (default None: torch's setting, which
    suits an idle machine; 1 where other work shares the cores; :mod:`pyro_circuits.threads`).

    Every argument is checked before any work (a TypeError or ValueError naming it); counts and
    inputs may be NumPy arrays or integer tensors (converted to the model's float dtype). A
    non-finite loss, gradient or parameter stops training (see above) with ``diverged`` naming
    which, and where.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), torch.poisson(torch.ones(8, 10, 3)),
        ...             max_epochs=3, batch_size=4, progress=False)
        >>> len(fit.history)
        3
    """
    dtype = _float_dtype(model, guide)
    counts, inputs = _check_batch("counts", counts, inputs, dtype)
    if valid_counts is not None:
        valid_counts, valid_inputs = _check_batch("valid_counts", valid_counts, valid_inputs, dtype)
    elif valid_inputs is not None or valid_sites is not None:
        raise ValueError("valid_inputs or valid_sites needs valid_counts")
    if valid_sites is not None:
        if isinstance(valid_sites, str) or not all(isinstance(n, str) for n in valid_sites):
            raise TypeError(f"valid_sites must be a list of site names, got {valid_sites!r}")
        if not valid_sites:
            raise ValueError("valid_sites must name at least one site")
    require_positive_ints(batch_size=batch_size, max_epochs=max_epochs)
    nonnegative_int("kl_warmup", kl_warmup)
    nonnegative_int("l2_warmup", l2_warmup)
    real("l2_scale", l2_scale, low=0.0)
    probability("cd_rate", cd_rate, high_open=True)
    if patience is not None:
        positive_int("patience", patience)
    if max_time is not None:
        real("max_time", max_time, low=0.0)
    if average_decay is not None:
        probability("average_decay", average_decay, low_open=True, high_open=True)
    if staged is not None and not isinstance(staged, Staged):
        raise TypeError(f"staged must be a Staged schedule, got {type(staged).__name__}")
    if elbo is not None and not isinstance(elbo, pyro.infer.ELBO):
        raise TypeError(f"elbo must be a pyro.infer.ELBO, got {type(elbo).__name__}")
    from pyro_circuits.svi import lightning  # Lightning loads when training runs

    callbacks, trainer_callbacks = lightning.split_callbacks(callbacks)
    loggers = lightning.loggers(logger, log_dir)
    device = lightning.resolve_device(device, accelerator, devices)
    seed = seed_int("seed", seed)
    threads = thread_count("threads", threads)
    for name, flag in (("progress", progress), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if not isinstance(adam_betas, tuple | list):
        raise TypeError(f"adam_betas must be a pair of numbers in [0, 1), got {adam_betas!r}")
    adam = Optimiser(lr, tuple(adam_betas), adam_eps, clip_norm, lr_decay, lr_patience, lr_min)
    saving = None if checkpoint is None else Checkpoint(checkpoint, overwrite=overwrite)
    if valid_sites is not None:
        _check_sites(model, guide, valid_counts, valid_inputs, valid_sites)
    hooks = _hooks(cd_rate, kl_warmup, l2_scale, l2_warmup, staged, average_decay, patience)
    hooks += [TimeLimit(max_time)] if max_time is not None else []
    hooks += [*callbacks, *([saving] if saving is not None else [])]
    hooks.append(ProgressBar(max_time, disable=not progress))
    model.to(device)
    guide.to(device)
    to = lambda x: None if x is None else x.to(device)  # noqa: E731
    valid = None
    if valid_counts is not None:
        valid = Validation(to(valid_counts), to(valid_inputs), valid_sites, batch_size)
    loop = Loop(model, guide, to(counts), to(inputs), hooks=hooks, optimiser=adam, elbo=elbo,
                validation=valid, batch_size=batch_size, max_epochs=max_epochs, seed=seed,
                logger=loggers, trainer_callbacks=trainer_callbacks)  # fmt: skip
    with torch_threads(threads):
        fit = loop.run()
    if fit.diverged is not None:
        warnings.warn(
            f"training {fit.diverged}; the parameters of epoch {fit.best_epoch} are kept",
            stacklevel=2,
        )
    return fit


def _float_dtype(model, guide) -> torch.dtype:
    """The float dtype of the modules' parameters (the default one when they have none)."""
    for part in (model, guide):
        if not callable(part):
            raise TypeError(f"model and guide must be callables, got {type(part).__name__}")
    for part in (model, guide):
        for p in getattr(part, "parameters", lambda: [])():
            if p.is_floating_point():
                return p.dtype
    return torch.get_default_dtype()


def _check_sites(model, guide, counts, inputs, sites) -> None:
    """A misspelt validation site is an error before training, not a loss of 0 every epoch:
    :func:`partial_elbo_loss` on one validation trial, without gradient, the modules in eval
    mode and the RNG state restored afterwards (training seeds it anyway)."""
    modes = [(m, m.training) for m in (model, guide) if isinstance(m, torch.nn.Module)]
    rng = pyro.util.get_rng_state()
    try:
        for module, _ in modes:
            module.eval()
        one = None if inputs is None else inputs[:1]
        with torch.no_grad():
            partial_elbo_loss(model, guide, sites, counts[:1], one, n_trials=len(counts))
    finally:
        pyro.util.set_rng_state(rng)
        for module, mode in modes:
            module.train(mode)


def _check_batch(name, counts, inputs, dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Counts (and inputs) checked and in the modules' float dtype; a float tensor of that dtype
    is returned as it is."""
    counts = check_counts(
        counts, name, integer=False, missing=True, convert=True
    )  # NaN: a missing frame
    if counts.dtype != dtype:
        counts = counts.to(dtype)
    if inputs is not None:
        inputs = as_tensor(f"inputs for {name}", inputs, dim=3)
        if inputs.shape[:2] != counts.shape[:2]:
            raise ValueError(
                f"inputs for {name} must be [trials, time, k] with the trials and time of "
                f"{name} {tuple(counts.shape[:2])}, got {tuple(inputs.shape)}"
            )
        if inputs.dtype != dtype:
            inputs = inputs.to(dtype)
    return counts, inputs


def _hooks(cd_rate, kl_warmup, l2_scale, l2_warmup, staged, average_decay, patience) -> list:
    """The schedule, dropout, average and early-stopping hooks of :func:`train`'s options, in
    the order they run (the KL warm-up's scaling outside the staged one's)."""
    hooks = [CoordinatedDropout(cd_rate)] if cd_rate > 0 else []
    hooks.append(KLWarmup(kl_warmup, exclude=staged.sites if staged is not None else ()))
    if staged is not None:
        hooks.append(staged)
    schedule = None if staged is None else staged.deep_scale
    hooks.append(L2Penalty(l2_scale, l2_warmup, schedule))
    if average_decay is not None:
        hooks.append(MovingAverage(average_decay))
    hooks.append(EarlyStopping(patience))
    return hooks

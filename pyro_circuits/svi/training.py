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

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.svi.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    MovingAverage,
    ProgressBar,
    TimeLimit,
)
from pyro_circuits.svi.dropout import CoordinatedDropout
from pyro_circuits.svi.elbo import Validation
from pyro_circuits.svi.fit import SVIFit
from pyro_circuits.svi.loop import Loop, Optimiser
from pyro_circuits.svi.schedules import KLWarmup, L2Penalty, Staged

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
    average_decay: float | None = None,
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
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
    and resumed if it exists (:class:`Checkpoint`); ``average_decay``: :class:`MovingAverage`;
    ``callbacks``: more hooks, run after those and before the checkpoint and the progress bar.
    The loop runs under Pyro's ``module_local_params`` setting, restored afterwards.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), torch.poisson(torch.ones(8, 10, 3)),
        ...             max_epochs=3, batch_size=4, progress=False)
        >>> len(fit.history)
        3
    """
    _check_data(counts, inputs, valid_counts, valid_inputs, valid_sites)
    require_positive_ints(batch_size=batch_size, max_epochs=max_epochs)
    hooks = _hooks(cd_rate, kl_warmup, l2_scale, l2_warmup, staged, average_decay, patience)
    hooks += [TimeLimit(max_time)] if max_time is not None else []
    hooks += [*callbacks, *([Checkpoint(checkpoint)] if checkpoint is not None else [])]
    hooks.append(ProgressBar(max_time, disable=not progress))
    adam = Optimiser(lr, adam_betas, adam_eps, clip_norm, lr_decay, lr_patience, lr_min)
    device = torch.device(device)
    model.to(device)
    guide.to(device)
    to = lambda x: None if x is None else x.to(device)  # noqa: E731
    valid = None
    if valid_counts is not None:
        valid = Validation(to(valid_counts), to(valid_inputs), valid_sites, batch_size)
    loop = Loop(model, guide, to(counts), to(inputs), hooks=hooks, optimiser=adam, elbo=elbo,
                validation=valid, batch_size=batch_size, max_epochs=max_epochs, seed=seed)  # fmt: skip
    fit = loop.run()
    if fit.diverged is not None:
        warnings.warn(
            f"training {fit.diverged}; the parameters of epoch {fit.best_epoch} are kept",
            stacklevel=2,
        )
    return fit


def _check_data(counts, inputs, valid_counts, valid_inputs, valid_sites) -> None:
    _check_batch("counts", counts, inputs)
    if valid_counts is not None:
        _check_batch("valid_counts", valid_counts, valid_inputs)
    elif valid_sites is not None:
        raise ValueError("valid_sites needs valid_counts")


def _check_batch(name, counts, inputs) -> None:
    if not torch.is_tensor(counts) or counts.dim() != 3:
        raise ValueError(f"{name} must be a [trials, time, neurons] tensor")
    if inputs is not None and (not torch.is_tensor(inputs) or inputs.shape[:2] != counts.shape[:2]):
        raise ValueError(f"inputs for {name} must be a [trials, time, k] tensor matching it")


def _hooks(cd_rate, kl_warmup, l2_scale, l2_warmup, staged, average_decay, patience) -> list:
    """The schedule, dropout, average and early-stopping hooks of :func:`train`'s options, in
    the order they run (the KL warm-up's scaling outside the staged one's)."""
    if not 0 <= cd_rate < 1:
        raise ValueError(f"cd_rate must be in [0, 1), got {cd_rate}")
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

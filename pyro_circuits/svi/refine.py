"""A fitted encoder fine-tuned to the trials it reads out (semi-amortised inference).

An encoder maps each trial to its posterior in one pass, and is only as good as that map: the
gap to the best posterior it could give the trial is the amortisation gap. :func:`refine` closes
part of it for the trials at hand. It holds the fitted model fixed and trains a copy of the guide
on those trials' own ELBO, with nothing else about them (no truth, no other trials), and returns
a fit whose posterior reads (:meth:`SVIFit.posterior_mean`, :meth:`SVIFit.sample`) serve those
trials (``docs/lfads.md`` compares the reads on held-out trials).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pyro
import torch
from tqdm.auto import tqdm

from pyro_circuits.checks import (
    as_tensor,
    positive_float,
    require_positive_ints,
    seed_int,
)
from pyro_circuits.svi.fit import SVIFit
from pyro_circuits.svi.local import local_params

__all__ = ["SETTLE", "refine"]

#: The learning rate falls linearly to this share of ``lr`` over the steps, so the guide settles.
SETTLE = 0.01


def refine(
    fit: SVIFit,
    counts: torch.Tensor,
    inputs: torch.Tensor | None = None,
    *,
    steps: int = 100,
    lr: float = 3e-3,
    num_particles: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> SVIFit:
    """A copy of ``fit`` whose guide is trained on the -ELBO per trial of ``counts`` for
    ``steps`` full-batch Adam steps (``num_particles`` vectorised draws each; the learning rate
    falls linearly from ``lr`` to ``SETTLE``·``lr``), dropout off and the model held fixed.

    The copy's posterior is for these trials: read other trials with ``fit`` itself. ``fit`` is
    left unchanged. The steps run under Pyro's ``module_local_params`` setting, restored
    afterwards. A non-finite loss or gradient stops the steps with a warning naming it and the
    step; the guide keeps the parameters of the last finite step.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> from pyro_circuits.svi import train
        >>> counts = torch.poisson(torch.ones(8, 10, 3))
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), counts, max_epochs=2, progress=False)
        >>> refined = refine(fit, counts, steps=5, progress=False)
        >>> refined.posterior_mean(counts, num_samples=3)["rates"].shape
        torch.Size([8, 10, 3])
    """
    if not isinstance(fit, SVIFit):
        raise TypeError(f"fit must be an SVIFit, got {type(fit).__name__}")
    require_positive_ints(steps=steps, num_particles=num_particles)
    positive_float("lr", lr)
    seed = seed_int("seed", seed)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    counts = as_tensor("counts", counts, finite=False)  # trials first; NaN: a missing entry
    if counts.dim() < 1 or counts.shape[0] == 0 or counts.isinf().any() or counts.isnan().all():
        raise ValueError(
            f"counts must be a [trials, ...] array with at least one trial and no inf, not all "
            f"NaN; got shape {tuple(counts.shape)}"
        )
    if inputs is not None:
        inputs = as_tensor("inputs", inputs)
        if inputs.shape[:2] != counts.shape[:2]:
            raise ValueError(
                f"inputs must have the trials and time of counts {tuple(counts.shape[:2])}, "
                f"got {tuple(inputs.shape)}"
            )
    model, guide = copy.deepcopy((fit.model, fit.guide))  # the guide may share the model
    model.eval()
    guide.eval()
    model.requires_grad_(False)
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the guide has no trainable parameters to refine")
    device, dtype = params[0].device, params[0].dtype
    counts = counts.to(device=device, dtype=dtype)
    inputs = None if inputs is None else inputs.to(device=device, dtype=dtype)
    names = [name for name, p in guide.named_parameters() if p.requires_grad]
    pyro.set_rng_seed(seed)
    elbo = pyro.infer.Trace_ELBO(
        num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1
    )
    optimizer = torch.optim.Adam(params, lr=lr)
    settle = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, SETTLE, total_iters=steps)
    bar = tqdm(range(steps), desc="refine", disable=not progress)
    with local_params(model, guide):
        for step in bar:
            optimizer.zero_grad()
            loss = elbo.differentiable_loss(model, guide, counts, inputs) / len(counts)
            if not torch.isfinite(loss):
                _stop(step, f"the loss is {loss.item()}")
                break
            loss.backward()
            bad = [n for n, p in zip(names, params, strict=True) if not _finite(p.grad)]
            if bad:
                _stop(step, f"the gradient of {bad} is not finite")
                break
            optimizer.step()
            settle.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return dataclasses.replace(fit, model=model, guide=guide, averaged_state=None)


def _finite(tensor) -> bool:
    return tensor is None or bool(torch.isfinite(tensor).all())


def _stop(step: int, why: str) -> None:
    """The finite guard: the guide keeps the parameters of the last finite step."""
    warnings.warn(
        f"refine stopped at step {step}: {why}; the guide of the last finite step is kept",
        stacklevel=3,
    )

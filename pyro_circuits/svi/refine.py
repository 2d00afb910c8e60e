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

import pyro
import torch
from tqdm.auto import tqdm

from pyro_circuits.checks import require_positive_ints
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
    afterwards.

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
    require_positive_ints(steps=steps, num_particles=num_particles)
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    model, guide = copy.deepcopy((fit.model, fit.guide))  # the guide may share the model
    model.eval()
    guide.eval()
    model.requires_grad_(False)
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the guide has no trainable parameters to refine")
    device = params[0].device
    counts = counts.to(device)
    inputs = None if inputs is None else inputs.to(device)
    pyro.set_rng_seed(seed)
    elbo = pyro.infer.Trace_ELBO(
        num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1
    )
    optimizer = torch.optim.Adam(params, lr=lr)
    settle = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, SETTLE, total_iters=steps)
    bar = tqdm(range(steps), desc="refine", disable=not progress)
    with local_params(model, guide):
        for _ in bar:
            optimizer.zero_grad()
            loss = elbo.differentiable_loss(model, guide, counts, inputs) / len(counts)
            loss.backward()
            optimizer.step()
            settle.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return dataclasses.replace(fit, model=model, guide=guide, averaged_state=None)

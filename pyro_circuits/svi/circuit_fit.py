"""Fitting circuit models to recorded trials by trial matching (bioRNN, σRNN and ablations).

:func:`fit_circuit` trains a model that simulates trials (``model(n_trials)`` returning activity
``(trials, time, neurons)``, e.g. :class:`~pyro_circuits.models.BioRNN`) to recorded trials with
the trial-matching loss and the PSTH loss of :mod:`~pyro_circuits.svi.trial_matching`, their
gradients balanced 2:1. It reuses the SVI loop (:class:`~pyro_circuits.svi.loop.Loop`) and its
hooks: each step simulates as many trials as a batch of recorded trials; each epoch ends with the
trial-matching loss on the test trials, which early stopping follows (the best epoch is
restored); :class:`Projection` is the post-step hook that keeps the model's constraints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import torch

from pyro_circuits.svi.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from pyro_circuits.svi.loop import Loop, Optimiser
from pyro_circuits.svi.trial_matching import (
    GradientBalance,
    TrialFeatures,
    psth_loss,
    trial_matching_loss,
)
from pyro_circuits.svi.trial_matching import (
    psth as trial_average,
)

__all__ = ["CircuitFit", "Projection", "TrialMatchingLoop", "fit_circuit", "reference_dataset"]


class Projection(Callback):
    """After every optimiser step, call ``loop.model.project(lr)`` (Dale's law, masks, the L½
    proximal step at the current learning rate).

    Example:
        >>> Projection().warmup
        0
    """

    def on_step_end(self, loop, loss) -> None:
        loop.model.project(lr=loop.optimizer.param_groups[0]["lr"])


@dataclass
class CircuitFit:
    """A circuit model fitted by trial matching, with its training history (one record per
    epoch: ``loss``, ``valid_loss`` the test trial-matching loss, ``best``) and wall time."""

    model: torch.nn.Module
    history: list = field(default_factory=list)
    wall_time: float = 0.0
    diverged: str | None = None

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return self.history[-1]["step"] if self.history else 0


class _TestLoss:
    """The monitored loss: hard trial matching of a fixed-noise simulation against the test
    trials (no gradient)."""

    def __init__(self, test: torch.Tensor, features: TrialFeatures, seed: int, n: int) -> None:
        self.test, self.features, self.seed, self.n = test, features, seed, n
        # what the loop's checkpoint fingerprint reads of a validation
        self.counts, self.inputs, self.sites, self.batch_size = test, None, ("trial_matching",), n
        self.generator = torch.Generator()

    def __call__(self, model, guide, elbo) -> float:
        rng = pyro.util.get_rng_state()  # the training's noise stream continues untouched
        with torch.no_grad(), pyro.poutine.block():
            pyro.set_rng_seed(self.seed)
            sim = model(self.n)
        pyro.util.set_rng_state(rng)
        self.generator.manual_seed(self.seed)  # the same subsample of test trials every epoch
        return float(
            trial_matching_loss(
                self.features(sim),
                self.features(self.test),
                method="hard",
                generator=self.generator,
            )
        )


class TrialMatchingLoop(Loop):
    """The SVI loop with the trial-matching objective in place of the ELBO.

    The ``counts`` are the recorded training trials; a step on a batch of them simulates as many
    trials and minimises ``trial_weight·L_trial + L_psth`` (either may be switched off), their
    gradients on the simulated activity balanced by the loop's ``guide``, a
    :class:`~pyro_circuits.svi.trial_matching.GradientBalance` (checkpointed with it).
    """

    def __init__(
        self,
        model,
        data: torch.Tensor,
        features: TrialFeatures,
        *,
        dt: float,
        method: str = "hard",
        trial_matching: bool = True,
        psth: bool = True,
        balance: Sequence[float] = (2.0, 1.0),
        **kwargs,
    ) -> None:
        super().__init__(model, GradientBalance(balance), data, **kwargs)
        self.features, self.dt, self.method = features, dt, method
        self.trial_matching, self.psth = trial_matching, psth
        self._generator = torch.Generator().manual_seed(self.seed)
        self._data_psth = trial_average(data, dt)

    def loss(self, counts, inputs=None, **kwargs) -> torch.Tensor:
        sim = self.model(len(counts))
        for_trials, for_psth = self.guide(sim)
        total = sim.new_zeros(())
        if self.trial_matching:
            total = total + trial_matching_loss(
                self.features(for_trials),
                self.features(counts),
                method=self.method,
                generator=self._generator,
            )
        if self.psth:
            total = total + psth_loss(for_psth, self._data_psth, self.dt)
        if not torch.isfinite(total):
            raise ValueError(f"the loss is {total.item()}")
        return total


def fit_circuit(
    model,
    train: torch.Tensor,
    test: torch.Tensor,
    groups: Sequence[torch.Tensor],
    *,
    dt: float,
    steps: int = 1500,
    batch_size: int = 200,
    lr: float = 1e-3,
    clip_norm: float = 500.0,
    method: str = "hard",
    trial_matching: bool = True,
    psth: bool = True,
    patience: int | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> CircuitFit:
    """Fit ``model`` to the recorded ``train`` trials by trial matching; keep the epoch with the
    lowest trial-matching loss on the ``test`` trials (each epoch: ``2·batch_size`` simulated
    trials, fixed noise, matched to as many test trials).

    Arguments:
        model: a module simulating ``model(n_trials)`` → (trials, time, neurons) with a
            ``project(lr)`` method (the post-step projection).
        train, test: recorded activity (trials, time, neurons), same time and neurons.
        groups: boolean masks over neurons whose population averages are the trial features.
        dt: time step in ms (the filters' width is in ms).
        steps: optimiser steps (rounded up to whole epochs of ``len(train) / batch_size``).
        batch_size: recorded (and simulated) trials per step.
        lr, clip_norm: Adam's learning rate and the gradient-norm clip.
        method: ``"hard"`` (Hungarian) or ``"sinkhorn"`` trial matching.
        trial_matching, psth: which losses to use (the "no TM" ablation: ``trial_matching=False``).
        patience: epochs without a better test loss before stopping (None: never stop early).
        checkpoint: path of a checkpoint to save every epoch and resume from.
        seed: seeds the simulation noise and the trial order (the model's own seed its weights).

    Example:
        >>> from pyro_circuits.models import BioRNN
        >>> data = (torch.rand(8, 20, 10) < 0.05).float()
        >>> model = BioRNN(n_exc=4, n_inh=1, n_steps=20, stim_step=5, seed=0)
        >>> fit = fit_circuit(model, data, data, [model.area_mask(0)], dt=2.0, steps=4,
        ...                   batch_size=4, progress=False)
        >>> fit.steps, len(fit.history)
        (4, 2)
    """
    for name, x in (("train", train), ("test", test)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"{name} must be a (trials, time, neurons) tensor")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test differ: {tuple(train.shape)} vs {tuple(test.shape)}")
    if not callable(getattr(model, "project", None)):
        raise TypeError("model must have a project(lr) method (the post-step projection)")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (name != "seed"):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if method not in ("hard", "sinkhorn"):
        raise ValueError(f"method must be 'hard' or 'sinkhorn', got {method!r}")
    if not (trial_matching or psth):
        raise ValueError("at least one of trial_matching and psth must be on")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be a positive int or None, got {patience!r}")
    features = TrialFeatures(train, groups, dt)
    batch_size = min(batch_size, len(train))
    epochs = math.ceil(steps / math.ceil(len(train) / batch_size))
    hooks: list[Callback] = [Projection(), EarlyStopping(patience)]
    hooks.append(ProgressBar(disable=not progress))
    if checkpoint is not None:
        hooks.append(Checkpoint(checkpoint))
    loop = TrialMatchingLoop(
        model,
        train,
        features,
        dt=dt,
        method=method,
        trial_matching=trial_matching,
        psth=psth,
        hooks=hooks,
        optimiser=Optimiser(lr=lr, clip_norm=clip_norm, patience=10**9),
        validation=_TestLoss(
            test, TrialFeatures(test, groups, dt), seed + 1, min(len(test), 2 * batch_size)
        ),
        batch_size=batch_size,
        max_epochs=epochs,
        seed=seed,
    )
    model.project()
    fit = loop.run()
    return CircuitFit(model, fit.history, fit.wall_time, fit.diverged)


def reference_dataset(
    teacher,
    *,
    n_trials: int = 2000,
    seed: int = 0,
    path: str | None = None,
) -> dict[str, torch.Tensor]:
    """Sample ``n_trials`` trials of a reference circuit with the noise of ``seed`` and split them
    50/50 into ``"train"`` and ``"test"`` (the first half trains); regenerable from the seed, and
    saved with ``torch.save`` to ``path`` when given.

    Example:
        >>> from pyro_circuits.models import reference_circuit
        >>> teacher = reference_circuit("nofb", n_exc=4, n_inh=1, n_steps=20, stim_step=5)
        >>> data = reference_dataset(teacher, n_trials=6, seed=0)
        >>> data["train"].shape, bool((data["test"] == reference_dataset(teacher, n_trials=6,
        ...     seed=0)["test"]).all())
        (torch.Size([3, 20, 10]), True)
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 2:
        raise ValueError(f"n_trials must be an int >= 2, got {n_trials!r}")
    spikes = teacher.simulate(n_trials, seed=seed).detach()
    half = n_trials // 2
    data = {"train": spikes[:half], "test": spikes[half:]}
    if path is not None:
        torch.save({**data, "seed": seed}, path)
    return data

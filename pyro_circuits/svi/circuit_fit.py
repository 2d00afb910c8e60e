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

from pyro_circuits.datasets.conditions import conditions_of
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
from pyro_circuits.threads import thread_count, torch_threads

__all__ = [
    "CircuitFit",
    "Projection",
    "TrialMatchingLoop",
    "fit_circuit",
    "reference_dataset",
]


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


def simulate_like(model, n_trials: int, inputs, recorded) -> torch.Tensor:
    """``n_trials`` simulated trials (with the measured ``inputs`` when given), restricted to the
    model neurons mapped to the ``recorded`` ones (all neurons when None)."""
    sim = model(n_trials) if inputs is None else model(n_trials, inputs)
    return sim if recorded is None else sim[..., recorded]


def matched_loss(sim, data, groups, features: TrialFeatures, method: str, generator):
    """Trial matching within each group of trials (a condition: identical inputs), the groups'
    losses weighted by their share of the trials; with ``groups=None``, of all trials at once."""
    if groups is None:
        return trial_matching_loss(
            features(sim), features(data), method=method, generator=generator
        )
    total = sim.new_zeros(())
    for idx in groups:
        loss = trial_matching_loss(
            features(sim[idx]), features(data[idx]), method=method, generator=generator
        )
        total = total + loss * len(idx) / len(data)
    return total


class _TestLoss:
    """The monitored loss: hard trial matching of a fixed-noise simulation against the test
    trials (no gradient)."""

    def __init__(
        self, test, features: TrialFeatures, seed: int, n: int, inputs=None, recorded=None
    ) -> None:
        self.test, self.features, self.seed, self.n = test, features, seed, n
        self.test_inputs, self.recorded = inputs, recorded
        self.groups = conditions_of(inputs, len(test))  # fixed: computed once
        # what the loop's checkpoint fingerprint reads of a validation
        self.counts, self.inputs, self.sites, self.batch_size = test, None, ("trial_matching",), n
        self.generator = torch.Generator()

    def __call__(self, model, guide, elbo) -> float:
        rng = pyro.util.get_rng_state()  # the training's noise stream continues untouched
        inputs = self.test_inputs
        # with inputs the simulation follows every test trial's inputs
        n = self.n if inputs is None else len(self.test)
        with torch.no_grad(), pyro.poutine.block():
            pyro.set_rng_seed(self.seed)
            sim = simulate_like(model, n, inputs, self.recorded)
        pyro.util.set_rng_state(rng)
        self.generator.manual_seed(self.seed)  # the same subsample of test trials every epoch
        groups = None if inputs is None else self.groups
        return float(matched_loss(sim, self.test, groups, self.features, "hard", self.generator))


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
        inputs: torch.Tensor | None = None,
        recorded: torch.Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(model, GradientBalance(balance), data, inputs, **kwargs)
        self.features, self.dt, self.method = features, dt, method
        self.trial_matching, self.psth, self.recorded = trial_matching, psth, recorded
        self._generator = torch.Generator().manual_seed(self.seed)
        groups = conditions_of(inputs, len(data))
        #: the recorded PSTH of each condition, keyed by its input (None without inputs)
        self._data_psth = {_key(inputs, idx[0]): trial_average(data[idx], dt) for idx in groups}

    def loss(self, counts, inputs=None, **kwargs) -> torch.Tensor:
        sim = simulate_like(self.model, len(counts), inputs, self.recorded)
        for_trials, for_psth = self.guide(sim)
        groups = None if inputs is None else conditions_of(inputs, len(counts))
        total = sim.new_zeros(())
        if self.trial_matching:
            total = total + matched_loss(
                for_trials, counts, groups, self.features, self.method, self._generator
            )
        if self.psth and groups is None:
            total = total + psth_loss(for_psth, self._data_psth[None], self.dt)
        elif self.psth:
            for idx in groups:
                target = self._data_psth[_key(inputs, idx[0])]
                total = total + psth_loss(for_psth[idx], target, self.dt) * len(idx) / len(counts)
        if not torch.isfinite(total):
            raise ValueError(f"the loss is {total.item()}")
        return total


def _key(inputs: torch.Tensor | None, trial) -> bytes | None:
    """A hashable key of one trial's inputs (its condition)."""
    return None if inputs is None else inputs[int(trial)].detach().cpu().numpy().tobytes()


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
    train_inputs: torch.Tensor | None = None,
    test_inputs: torch.Tensor | None = None,
    recorded: Sequence[int] | torch.Tensor | None = None,
    logger=None,
    log_dir: str | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
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
        train_inputs, test_inputs: measured inputs of the trials (trials, time, channels), e.g.
            a light command, passed to ``model(n_trials, inputs)``; trials with identical
            inputs form a condition, and trial matching and the PSTH loss then work within
            conditions (both or neither given).
        recorded: the model neurons mapped, in order, to the recorded neurons (default: the
            model's neurons are the recorded ones); the others are hidden.
        logger, log_dir: Lightning loggers of each epoch's record, as
            :func:`~pyro_circuits.svi.train` takes them (default: none).
        seed: seeds the simulation noise and the trial order (the model's own seed its weights).
        progress: show a progress bar.
        threads: torch intra-op threads for the fit, restored after it (default None: torch's
            setting; see :mod:`pyro_circuits.threads`).

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
    _check_inputs(train, test, train_inputs, test_inputs)
    recorded = _check_recorded(model, recorded, train.shape[-1])
    threads = thread_count("threads", threads)
    from pyro_circuits.svi import lightning  # Lightning loads when training runs

    loggers = lightning.loggers(logger, log_dir)
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
        inputs=train_inputs,
        recorded=recorded,
        hooks=hooks,
        optimiser=Optimiser(lr=lr, clip_norm=clip_norm, patience=10**9),
        validation=_TestLoss(
            test,
            TrialFeatures(test, groups, dt),
            seed + 1,
            min(len(test), 2 * batch_size),
            inputs=test_inputs,
            recorded=recorded,
        ),
        batch_size=batch_size,
        max_epochs=epochs,
        seed=seed,
        logger=loggers,
    )
    model.project()
    with torch_threads(threads):
        fit = loop.run()
    return CircuitFit(model, fit.history, fit.wall_time, fit.diverged)


def _check_inputs(train, test, train_inputs, test_inputs) -> None:
    if (train_inputs is None) != (test_inputs is None):
        raise ValueError("give both train_inputs and test_inputs, or neither")
    for name, x, data in (
        ("train_inputs", train_inputs, train),
        ("test_inputs", test_inputs, test),
    ):
        if x is None:
            continue
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[:2] != data.shape[:2]:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must be (trials, time, channels) with the trials and time of its data "
                f"{tuple(data.shape[:2])}, got {shape}"
            )


def _check_recorded(model, recorded, n_recorded: int) -> torch.Tensor | None:
    """``recorded`` as a long tensor of distinct model neurons, one per recorded neuron."""
    if recorded is None:
        return None
    index = torch.as_tensor(recorded)
    n_model = getattr(model, "n_neurons", None)
    if (
        index.dtype not in (torch.int32, torch.int64)
        or index.shape != (n_recorded,)
        or len(set(index.tolist())) != n_recorded
        or (index < 0).any()
        or (n_model is not None and (index >= n_model).any())
    ):
        raise ValueError(
            f"recorded must list {n_recorded} distinct model neurons (one per recorded neuron)"
            + (f" in [0, {n_model})" if n_model is not None else "")
        )
    return index.long()


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

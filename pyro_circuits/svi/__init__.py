"""SVI of amortised sequential latent-variable models (LFADS, the calcium ladder).

* :func:`train` -- minibatch SVI of a model and its guide, returning an :class:`SVIFit`;
  :mod:`~pyro_circuits.svi.loop` is its loop, whose epochs run on a Lightning Trainer
  (:mod:`~pyro_circuits.svi.lightning`: loggers, accelerator, Lightning callbacks), and its
  options are hooks:
  :mod:`~pyro_circuits.svi.callbacks` (checkpoint, early stopping, moving average, time limit,
  progress), :mod:`~pyro_circuits.svi.schedules` (KL and L2 warm-up, :class:`Staged`) and
  :class:`CoordinatedDropout`;
* :class:`SVIFit` -- the fit and the posterior of trials read through it
  (:class:`~pyro_circuits.results.TrialPosterior`);
* :func:`refine` -- a fit's guide fine-tuned to given trials;
* :func:`partial_elbo_loss` -- the ELBO restricted to some sites;
* :func:`fit_circuit` -- circuit models (bioRNN, σRNN) fitted by trial matching
  (:mod:`~pyro_circuits.svi.trial_matching`), on the same loop and hooks.
"""

from pyro_circuits.svi.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    MovingAverage,
    ProgressBar,
    TimeLimit,
)
from pyro_circuits.svi.circuit_fit import CircuitFit, Projection, fit_circuit
from pyro_circuits.svi.dropout import CoordinatedDropout
from pyro_circuits.svi.elbo import partial_elbo_loss
from pyro_circuits.svi.fit import SVIFit
from pyro_circuits.svi.loop import trained_parameters
from pyro_circuits.svi.refine import refine
from pyro_circuits.svi.schedules import KLWarmup, L2Penalty, Staged
from pyro_circuits.svi.training import train
from pyro_circuits.svi.trial_matching import (
    GradientBalance,
    TrialFeatures,
    hard_trial_matching_loss,
    psth_loss,
    sinkhorn_trial_matching_loss,
    trial_matching_loss,
)

__all__ = [
    "Callback",
    "Checkpoint",
    "CircuitFit",
    "CoordinatedDropout",
    "EarlyStopping",
    "GradientBalance",
    "KLWarmup",
    "L2Penalty",
    "MovingAverage",
    "ProgressBar",
    "Projection",
    "SVIFit",
    "Staged",
    "TimeLimit",
    "TrialFeatures",
    "fit_circuit",
    "hard_trial_matching_loss",
    "partial_elbo_loss",
    "psth_loss",
    "refine",
    "sinkhorn_trial_matching_loss",
    "train",
    "trained_parameters",
    "trial_matching_loss",
]

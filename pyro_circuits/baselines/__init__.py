"""Baselines, each fit a :class:`~pyro_circuits.results.TrialPosterior` whose posterior is a point.

* :mod:`pyro_circuits.baselines.spikes` -- spike-rate baselines fitted on training trials
  (:func:`gaussian_smoothing`, :func:`seq2seq`, :func:`condition_psth`), and
  :func:`condition_average`.
* :mod:`pyro_circuits.baselines.calcium` -- spike deconvolution of fluorescence
  (:func:`threshold_deconvolve`, and :func:`oasis_deconvolve` through the optional GPL extra
  ``oasis-deconv``, imported only when called; :func:`available` says whether it is installed).
* :mod:`pyro_circuits.baselines.opto` -- light-response baselines: the sham PSTH and a per-unit
  Poisson GLM with a light kernel (scikit-learn).
* :mod:`pyro_circuits.baselines.decoding` -- a ridge decoder of behaviour from factors.

Example:
    >>> from pyro_circuits.baselines import calcium, threshold_deconvolve
    >>> calcium.threshold_deconvolve is threshold_deconvolve
    True
"""

from pyro_circuits.baselines import calcium, decoding, opto, spikes
from pyro_circuits.baselines._point import PointPosterior
from pyro_circuits.baselines.calcium import (
    Deconvolution,
    OasisDeconvolution,
    ThresholdDeconvolution,
    available,
    oasis_deconvolve,
    threshold_deconvolve,
)
from pyro_circuits.baselines.spikes import (
    BaselineFit,
    ConditionPSTH,
    GaussianSmoothing,
    Seq2Seq,
    condition_average,
    condition_psth,
    gaussian_smoothing,
    seq2seq,
)

__all__ = [
    "BaselineFit",
    "ConditionPSTH",
    "Deconvolution",
    "GaussianSmoothing",
    "OasisDeconvolution",
    "PointPosterior",
    "Seq2Seq",
    "ThresholdDeconvolution",
    "available",
    "calcium",
    "condition_average",
    "condition_psth",
    "decoding",
    "gaussian_smoothing",
    "oasis_deconvolve",
    "opto",
    "seq2seq",
    "spikes",
    "threshold_deconvolve",
]

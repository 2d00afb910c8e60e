"""Probabilistic programming for neural circuit models on Pyro.

A circuit is written once as a Pyro program (:mod:`pyro_circuits.models` holds the built-in
ones); :func:`epi`, :func:`NPE`, :func:`SMCABC` infer its parameters for an emergent property and
:func:`compare` runs them side by side; :func:`train` fits LFADS-style models and the calcium
ladder to recordings, and :func:`refine` sharpens a fit's posterior for given trials;
:mod:`pyro_circuits.handlers` perturbs any model (optogenetics). The map of the package is
``docs/architecture.md``.
"""

from pyro_circuits import datasets, handlers
from pyro_circuits.compare import compare
from pyro_circuits.datasets import SpikeData
from pyro_circuits.epi import EPIConfig, EPIGuide, EPILoss, EPIResult, FlowConfig, epi
from pyro_circuits.guides import LadderEncoder, LFADSEncoder
from pyro_circuits.handlers import optogenetic, perturb
from pyro_circuits.models import LFADS, CalciumLFADS
from pyro_circuits.property import EmergentProperty
from pyro_circuits.results import InferenceResult, TrialPosterior
from pyro_circuits.sbi import NPE, SMCABC, NPEResult, SMCABCResult, calibration
from pyro_circuits.sites import CircuitProgram, LocalPyroModule, SimulationError, noise
from pyro_circuits.svi import Staged, SVIFit, refine, train

__all__ = [
    "CalciumLFADS",
    "CircuitProgram",
    "EPIConfig",
    "EPIGuide",
    "EPILoss",
    "EPIResult",
    "EmergentProperty",
    "FlowConfig",
    "InferenceResult",
    "LFADS",
    "LFADSEncoder",
    "LadderEncoder",
    "LocalPyroModule",
    "NPE",
    "NPEResult",
    "SMCABC",
    "SMCABCResult",
    "SVIFit",
    "SimulationError",
    "SpikeData",
    "Staged",
    "TrialPosterior",
    "calibration",
    "compare",
    "datasets",
    "epi",
    "handlers",
    "noise",
    "optogenetic",
    "perturb",
    "refine",
    "train",
]

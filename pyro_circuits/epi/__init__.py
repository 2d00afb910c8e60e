"""Emergent property inference (Bittner et al., eLife 2021) on Pyro circuit models."""

from pyro_circuits.epi.analysis import Sensitivity, hessian_sensitivity
from pyro_circuits.epi.fit import EPIConfig, epi
from pyro_circuits.epi.flow import FlowConfig
from pyro_circuits.epi.guide import EPIGuide
from pyro_circuits.epi.loss import EPILoss
from pyro_circuits.epi.result import EPIResult
from pyro_circuits.property import EmergentProperty, moment_test

__all__ = [
    "EPIConfig",
    "EPIGuide",
    "EPILoss",
    "EPIResult",
    "EmergentProperty",
    "FlowConfig",
    "Sensitivity",
    "epi",
    "hessian_sensitivity",
    "moment_test",
]

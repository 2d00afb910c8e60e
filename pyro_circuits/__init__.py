"""Probabilistic programming for neural circuit models on Pyro."""

from pyro_circuits.compare import compare
from pyro_circuits.epi import EmergentProperty, EPIConfig, EPIResult, FlowConfig, epi
from pyro_circuits.sbi import NPE, SMCABC, NPEResult, SMCABCResult, calibration
from pyro_circuits.sites import CircuitProgram, SimulationError, noise

__all__ = [
    "CircuitProgram",
    "EPIConfig",
    "EPIResult",
    "EmergentProperty",
    "FlowConfig",
    "NPE",
    "NPEResult",
    "SMCABC",
    "SMCABCResult",
    "SimulationError",
    "calibration",
    "compare",
    "epi",
    "noise",
]

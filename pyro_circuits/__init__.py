"""Probabilistic programming for neural circuit models on Pyro."""

import pyro

from pyro_circuits.compare import compare
from pyro_circuits.diagnostics import calibration
from pyro_circuits.epi import EmergentProperty, EPIConfig, EPIResult, FlowConfig, epi
from pyro_circuits.sbi import NPE, SMCABC, NPEResult, SMCABCResult
from pyro_circuits.sites import CircuitProgram, SimulationError, noise

# Parameters live in modules, not in Pyro's global param store (DESIGN.md, conventions).
pyro.settings.set(module_local_params=True)

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

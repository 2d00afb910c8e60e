"""NPE and SMC-ABC from sbi on Pyro circuit models: the bridge, the methods, their results, SBC."""

from pyro_circuits.sbi.bridge import Simulator, observation, sbi_prior
from pyro_circuits.sbi.calibration import calibration
from pyro_circuits.sbi.npe import NPE, ObservationInTailWarning, estimator_builder, stalled_rounds
from pyro_circuits.sbi.result import NPEResult, SMCABCResult
from pyro_circuits.sbi.smcabc import SMCABC, SMCABCStalled

__all__ = [
    "NPE",
    "NPEResult",
    "ObservationInTailWarning",
    "SMCABC",
    "SMCABCResult",
    "SMCABCStalled",
    "Simulator",
    "calibration",
    "estimator_builder",
    "observation",
    "sbi_prior",
    "stalled_rounds",
]

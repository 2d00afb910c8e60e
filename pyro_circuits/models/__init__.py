"""Built-in circuit models, one family per module, each a plain Pyro program."""

from pyro_circuits.models.biornn import BioRNN, reference_circuit
from pyro_circuits.models.calcium import CalciumFluorescence
from pyro_circuits.models.calcium_lfads import CalciumLFADS, GaussianCalciumLFADS
from pyro_circuits.models.lds2d import LDS2D
from pyro_circuits.models.lfads import LFADS
from pyro_circuits.models.rank2_rnn import Rank2RNN
from pyro_circuits.models.stg import STG
from pyro_circuits.models.stitched_lfads import StitchedLFADS
from pyro_circuits.models.superior_colliculus import SuperiorColliculus
from pyro_circuits.models.v1_sssn import V1SSSN

__all__ = [
    "BioRNN",
    "CalciumFluorescence",
    "CalciumLFADS",
    "GaussianCalciumLFADS",
    "LDS2D",
    "LFADS",
    "Rank2RNN",
    "STG",
    "StitchedLFADS",
    "SuperiorColliculus",
    "V1SSSN",
    "reference_circuit",
]

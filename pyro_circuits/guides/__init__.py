"""SVI guides, one per module."""

from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.guides.lfads_encoder import LFADSEncoder
from pyro_circuits.guides.stitched_encoder import StitchedEncoder

__all__ = ["LFADSEncoder", "LadderEncoder", "StitchedEncoder"]

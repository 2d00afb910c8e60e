"""Spike-count datasets: the :class:`SpikeData` container, :class:`Sessions` of several
recordings, seeded synthetic generators, the
shipped Allen Brain Observatory optotagging session (:func:`allen_pv_opto`) and NWB in and out
(:mod:`pyro_circuits.datasets.nwb`: :func:`read_nwb`, :func:`read_nlb`, :func:`write_nwb`)."""

from pyro_circuits.checks import check_counts
from pyro_circuits.datasets.allen import allen_opto_split, allen_pv_opto, allen_pv_opto_trials
from pyro_circuits.datasets.conditions import conditions_of
from pyro_circuits.datasets.nwb import read_fit, read_nlb, read_nwb, write_nwb
from pyro_circuits.datasets.sessions import Sessions
from pyro_circuits.datasets.spike_data import SpikeData
from pyro_circuits.datasets.synthetic import chaotic_rnn, linear_dynamical, lorenz, lorenz_sessions

__all__ = [
    "Sessions",
    "SpikeData",
    "allen_opto_split",
    "allen_pv_opto",
    "allen_pv_opto_trials",
    "chaotic_rnn",
    "check_counts",
    "conditions_of",
    "linear_dynamical",
    "lorenz",
    "lorenz_sessions",
    "read_fit",
    "read_nlb",
    "read_nwb",
    "write_nwb",
]

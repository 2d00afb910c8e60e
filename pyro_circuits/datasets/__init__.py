"""Spike-count datasets: the :class:`SpikeData` container and seeded synthetic generators."""

from pyro_circuits.checks import check_counts
from pyro_circuits.datasets.spike_data import SpikeData
from pyro_circuits.datasets.synthetic import chaotic_rnn, linear_dynamical, lorenz

__all__ = ["SpikeData", "chaotic_rnn", "check_counts", "linear_dynamical", "lorenz"]

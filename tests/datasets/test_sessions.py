"""Sessions of several recordings: packing, NWB loading, the Lorenz multi-session generator."""

import numpy as np
import pytest
import torch

from pyro_circuits.datasets import Sessions, SpikeData, lorenz, lorenz_sessions


def _session(trials, neurons, steps=6, dt=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SpikeData(torch.poisson(torch.ones(trials, steps, neurons), generator=g), dt=dt)


def test_pack_and_unpack_round_trip_each_sessions_counts():
    sessions = Sessions([_session(3, 2), _session(4, 5, seed=1), _session(2, 3, seed=2)])
    counts, inputs = sessions.pack()
    assert counts.shape == (9, 6, 5) and inputs.shape == (9, 6, 1)
    assert inputs[:, :, 0].T.unique(dim=0).tolist() == [[0.0] * 3 + [1.0] * 4 + [2.0] * 2]
    back = sessions.unpack(counts, neurons=True)
    for original, unpacked in zip(sessions, back, strict=True):
        torch.testing.assert_close(unpacked, original.counts)
    assert (counts[:3, :, 2:] == 0).all() and (counts[7:, :, 3:] == 0).all()
    factors = sessions.unpack(torch.zeros(9, 6, 4))
    assert [f.shape[0] for f in factors] == [3, 4, 2] and factors[0].shape[-1] == 4


def test_pack_of_a_part_keeps_each_sessions_split():
    a = SpikeData(torch.ones(4, 6, 2), dt=0.01, train_idx=[0, 1, 2], valid_idx=[3])
    b = SpikeData(2 * torch.ones(5, 6, 3), dt=0.01, train_idx=[1, 2], valid_idx=[0, 4])
    sessions = Sessions([a, b], names=["a", "b"])
    counts, inputs = sessions.pack("valid")
    assert inputs[:, 0, 0].tolist() == [0.0, 1.0, 1.0]
    assert counts[:, 0, 0].tolist() == [1.0, 2.0, 2.0]
    assert [len(c) for c in sessions.unpack(torch.zeros(3, 6, 3), "valid")] == [1, 2]
    assert sessions["b"] is b and sessions[0] is a and len(sessions) == 2
    with pytest.raises(ValueError, match="part"):
        sessions.pack("test")
    with pytest.raises(ValueError, match="session"):
        sessions["c"]
    with pytest.raises(ValueError, match="3 packed trials"):
        sessions.unpack(torch.zeros(4, 6, 3), "valid")


def test_bad_sessions_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="at least one session"):
        Sessions([])
    with pytest.raises(ValueError, match="same dt"):
        Sessions([_session(2, 2, dt=0.01), _session(2, 2, dt=0.02)])
    with pytest.raises(ValueError, match="time bins"):
        Sessions([_session(2, 2, steps=6), _session(2, 2, steps=7)])
    with pytest.raises(ValueError, match="names has 1 entries for 2 sessions"):
        Sessions([_session(2, 2), _session(2, 3)], names=["a"])
    with pytest.raises(ValueError, match="unique"):
        Sessions([_session(2, 2), _session(2, 3)], names=["a", "a"])
    with pytest.raises(TypeError, match="names"):
        Sessions([_session(2, 2)], names="a")
    with pytest.raises(TypeError, match=r"data\[1\]"):
        Sessions([_session(2, 2), torch.ones(2, 6, 2)])
    with pytest.raises(TypeError, match="list of SpikeData"):
        Sessions(_session(2, 2))
    with pytest.raises(ValueError, match=r"units\[0\]"):
        Sessions([_session(2, 2)], units=[[0, 1, 2]])


def test_from_nwb_reads_one_session_per_file(tmp_path):
    pytest.importorskip("pynwb")
    from pyro_circuits.datasets.nwb import example_file

    paths = [example_file(tmp_path / f"day{i}.nwb", seed=i) for i in range(2)]
    sessions = Sessions.from_nwb(paths, bin_size=0.1, condition_column="condition")
    assert sessions.names == ["day0", "day1"]
    assert sessions.n_neurons == [2, 2] and sessions.n_steps == 6 and sessions.dt == 0.1
    direct = SpikeData.from_nwb(paths[1], bin_size=0.1, condition_column="condition")
    torch.testing.assert_close(sessions["day1"].counts, direct.counts)
    assert sessions[0].conditions.tolist() == [0, 1, 0]
    with pytest.raises(TypeError, match="list of NWB files"):
        Sessions.from_nwb(paths[0], bin_size=0.1)


def test_lorenz_sessions_share_the_latents_and_subsample_one_population():
    sessions = lorenz_sessions(n_sessions=3, n_conditions=4, n_trials=5, n_neurons=10,
                               n_units=20, n_bins=12, seed=3)  # fmt: skip
    population = lorenz(4, 15, 20, 12, seed=3)
    assert sessions.n_neurons == [10, 10, 10] and len(sessions) == 3
    for s, (session, units) in enumerate(zip(sessions, sessions.units, strict=True)):
        assert session.counts.shape == (20, 12, 10)
        assert session.conditions.tolist() == np.repeat(np.arange(4), 5).tolist()
        expected = population.rates.reshape(4, 15, 12, 20)[:, 0][..., units]  # one per condition
        torch.testing.assert_close(session.rates.reshape(4, 5, 12, 10)[:, 0], expected)
        torch.testing.assert_close(session.latents, sessions[0].latents)
        assert session.valid_idx.tolist() == [4, 9, 14, 19]  # the last repeat of each condition
        trials = (torch.arange(4)[:, None] * 15 + s * 5 + torch.arange(5)).reshape(-1)
        torch.testing.assert_close(session.counts, population.counts[trials][..., units])
    shared = [np.intersect1d(a, b).size for a in sessions.units for b in sessions.units]
    assert 0 < min(shared) < 10  # partly overlapping sets

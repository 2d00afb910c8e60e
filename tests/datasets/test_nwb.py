"""NWB in and out: round trips on small files built here with pynwb, and the loader's errors."""

import datetime

import numpy as np
import pytest
import torch

pynwb = pytest.importorskip("pynwb")

from pyro_circuits.datasets.nwb import (  # noqa: E402
    example_file,
    read_fit,
    read_nlb,
    read_nwb,
    trial_bins,
    write_nwb,
)

SPIKES = [
    np.array([0.05, 0.15, 0.16, 1.05, 1.25, 2.45, 2.55]),
    np.array([0.35, 1.35, 1.36, 1.37, 2.05]),
    np.array([0.0, 0.5, 1.0, 2.0]),
]


def _file(path, *, units=True, trials=True, extra_intervals=False, opto=True):
    """Three units with known spikes, three trials of 0.6 s starting at 0, 1 and 2 s with a
    ``cue_time`` 0.1 s in, an ``area`` unit column and a 1-kHz optogenetic series."""
    nwb = pynwb.NWBFile(
        session_description="test",
        identifier="test",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    if trials:
        nwb.add_trial_column("cue_time", "cue")
        nwb.add_trial_column("direction", "reach direction")
        nwb.add_trial_column("licks", "lick times (ragged)", index=True)
        for start, direction in zip([0.0, 1.0, 2.0], ["left", "right", "left"], strict=True):
            nwb.add_trial(start_time=start, stop_time=start + 0.6, cue_time=start + 0.1,
                          direction=direction, licks=[start + 0.2, start + 0.3])  # fmt: skip
    if extra_intervals:
        table = pynwb.epoch.TimeIntervals(name="flashes", description="flashes")
        for start in (0.0, 2.0):
            table.add_interval(start_time=start, stop_time=start + 0.3)
        nwb.add_time_intervals(table)
    if units:
        nwb.add_unit_column("area", "brain area")
        for spikes, area in zip(SPIKES, ["VISp", "CA1", "VISp"], strict=True):
            nwb.add_unit(spike_times=spikes, area=area)
    if opto:
        device = nwb.create_device(name="laser")
        site = pynwb.ogen.OptogeneticStimulusSite(
            name="site", device=device, description="PV", excitation_lambda=473.0, location="V1"
        )
        nwb.add_ogen_site(site)
        t = np.arange(0, 3.0, 0.001)
        power = np.where((t % 1.0 >= 0.2) & (t % 1.0 < 0.3), 2.0, 0.0)
        nwb.add_acquisition(
            pynwb.ogen.OptogeneticSeries(name="laser_power", data=power, site=site, rate=1000.0)
        )
    with pynwb.NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwb)
    return path


def _expected(spikes, starts, window, bin_size):
    edges = (
        np.asarray(starts)[:, None]
        + window[0]
        + bin_size * np.arange(round((window[1] - window[0]) / bin_size) + 1)
    )
    return np.stack([np.histogram(spikes, e)[0] for e in edges])


def test_spikes_are_binned_into_the_trials(tmp_path):
    path = _file(tmp_path / "a.nwb")
    data = read_nwb(path, bin_size=0.1, window=(0.0, 0.6))
    assert data.counts.shape == (3, 6, 3) and data.dt == 0.1
    for unit, spikes in enumerate(SPIKES):
        expected = _expected(spikes, [0.0, 1.0, 2.0], (0.0, 0.6), 0.1)
        assert (data.counts[..., unit].numpy() == expected).all()
    # the default window is the shortest trial
    assert read_nwb(path, bin_size=0.2).counts.shape == (3, 3, 3)


def test_alignment_on_a_column_and_on_event_times(tmp_path):
    path = _file(tmp_path / "a.nwb")
    on_cue = read_nwb(path, bin_size=0.05, window=(-0.1, 0.2), align="cue_time")
    events = read_nwb(path, bin_size=0.05, window=(-0.1, 0.2), event_times=[0.1, 1.1, 2.1])
    assert torch.equal(on_cue.counts, events.counts)
    for unit, spikes in enumerate(SPIKES):
        expected = _expected(spikes, [0.1, 1.1, 2.1], (-0.1, 0.2), 0.05)
        assert (on_cue.counts[..., unit].numpy() == expected).all()


def test_another_intervals_table(tmp_path):
    path = _file(tmp_path / "a.nwb", extra_intervals=True)
    data = read_nwb(path, bin_size=0.1, window=(0.0, 0.3), intervals="flashes")
    assert data.counts.shape == (2, 3, 3)
    assert (data.counts[..., 0].numpy() == _expected(SPIKES[0], [0.0, 2.0], (0, 0.3), 0.1)).all()


def test_units_picked_by_a_column_and_conditions_from_a_column(tmp_path):
    path = _file(tmp_path / "a.nwb")
    data, info = read_nwb(path, bin_size=0.1, window=(0.0, 0.6), unit_column="area",
                          unit_values="VISp", condition_column="direction", with_info=True)  # fmt: skip
    everything = read_nwb(path, bin_size=0.1, window=(0.0, 0.6))
    assert info["unit_rows"].tolist() == [0, 2]
    assert torch.equal(data.counts, everything.counts[..., [0, 2]])
    assert data.conditions.tolist() == [0, 1, 0]
    assert info["trials"]["direction"].tolist() == ["left", "right", "left"]
    assert "licks" not in info["trials"]  # ragged columns are left out


def test_optogenetic_series_is_binned_as_a_measured_input(tmp_path):
    path = _file(tmp_path / "a.nwb")
    data = read_nwb(path, bin_size=0.05, window=(0.0, 0.5), inputs=["laser_power"])
    assert data.inputs.shape == (3, 10, 1)
    expected = np.zeros(10)
    expected[4:6] = 2.0  # on from 0.2 to 0.3 s of every trial
    np.testing.assert_allclose(data.inputs[..., 0].numpy(), np.tile(expected, (3, 1)), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=False), "no units table"),
        (dict(trials=False), "no 'trials' intervals table"),
    ],
)
def test_clear_errors_for_missing_tables(tmp_path, kwargs, message):
    path = _file(tmp_path / "a.nwb", **kwargs)
    with pytest.raises(ValueError, match=message):
        read_nwb(path, bin_size=0.1, window=(0.0, 0.6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bin_size=0.07, window=(0.0, 0.6)), "does not divide the window"),
        (dict(bin_size=0.1, window=(0.0, 0.6), unit_column="depth"), "unit_column 'depth'"),
        (dict(bin_size=0.1, window=(0.0, 0.6), unit_column="area"), "not boolean"),
        (dict(bin_size=0.1, window=(0.0, 0.6), align="go_time"), "align 'go_time'"),
        (dict(bin_size=0.1, window=(0.0, 0.6), inputs=["lazer"]), "no time series named"),
        (dict(bin_size=0.1, window=(0.0, 0.6), intervals="flashes"), "no 'flashes'"),
        (dict(bin_size=-0.1, window=(0.0, 0.6)), "bin_size must be"),
        (dict(bin_size=0.1, window=(0.6, 0.0)), "window must be"),
    ],
)
def test_clear_errors_for_bad_arguments(tmp_path, kwargs, message):
    path = _file(tmp_path / "a.nwb")
    with pytest.raises(ValueError, match=message):
        read_nwb(path, **kwargs)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        read_nwb("/nonexistent/file.nwb", bin_size=0.1)


def test_nlb_layout(tmp_path):
    path = example_file(tmp_path / "nlb.nwb")
    data, info = read_nlb(path, bin_size=0.1, window=(0.0, 0.6), with_info=True)
    assert data.heldout.tolist() == [1] and data.heldin.tolist() == [0]
    assert data.train_idx.tolist() == [0, 1] and data.valid_idx.tolist() == [2]
    assert info["split"].tolist() == ["train", "train", "val"]
    assert torch.equal(data.counts, read_nwb(path, bin_size=0.1, window=(0.0, 0.6)).counts)
    only_val = read_nlb(path, bin_size=0.1, window=(0.0, 0.6), splits=["val"])
    assert torch.equal(only_val.counts, data.counts[2:])
    with pytest.raises(ValueError, match="no 'split' column"):
        read_nlb(_file(tmp_path / "plain.nwb"), bin_size=0.1, window=(0.0, 0.6))
    with pytest.raises(ValueError, match="splits must be"):
        read_nlb(path, bin_size=0.1, window=(0.0, 0.6), splits=["training"])


def test_write_round_trip_leaves_the_source_alone(tmp_path):
    source = _file(tmp_path / "a.nwb")
    data, info = read_nwb(source, bin_size=0.1, window=(0.0, 0.6), with_info=True)
    g = torch.Generator().manual_seed(0)
    fit = {
        "rates": torch.rand(3, 6, 3, generator=g) * 50,
        "factors": torch.randn(3, 6, 2, generator=g),
        "co": torch.randn(3, 6, 1, generator=g),
    }
    target = write_nwb(source, tmp_path / "fit.nwb", fit, edges=info["edges"])
    back = read_fit(target)
    assert sorted(back) == ["co", "factors", "rates"]
    for name, value in fit.items():
        np.testing.assert_allclose(back[name], value.numpy(), rtol=1e-6)
    # the copy still reads as the source does, and the source has no processing module
    assert torch.equal(read_nwb(target, bin_size=0.1, window=(0.0, 0.6)).counts, data.counts)
    with pynwb.NWBHDF5IO(str(source), mode="r") as io:
        assert "pyro_circuits" not in io.read().processing
    with pynwb.NWBHDF5IO(str(target), mode="r") as io:
        series = io.read().processing["pyro_circuits"]["rates"]
        np.testing.assert_allclose(series.timestamps[:6], np.arange(6) * 0.1 + 0.05)
    with pytest.raises(FileExistsError):
        write_nwb(source, target, fit, edges=info["edges"])
    with pytest.raises(ValueError, match="must be \\[3, 6, k\\]"):
        write_nwb(source, tmp_path / "bad.nwb", {"rates": torch.zeros(3, 5, 3)},
                  edges=info["edges"])  # fmt: skip
    with pytest.raises(ValueError, match="target must differ"):
        write_nwb(source, source, fit, edges=info["edges"])


def test_trial_bins_match_the_reader(tmp_path):
    path = _file(tmp_path / "a.nwb")
    _, info = read_nwb(path, bin_size=0.1, window=(-0.1, 0.2), align="cue_time", with_info=True)
    np.testing.assert_allclose(info["edges"], trial_bins([0.1, 1.1, 2.1], (-0.1, 0.2), 0.1))

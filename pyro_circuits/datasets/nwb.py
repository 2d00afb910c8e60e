"""Neurodata Without Borders (NWB) in and out, with ``pynwb`` (the optional ``nwb`` extra).

* :func:`read_nwb` -- a units table's spike times binned into trials (the file's trials table,
  another intervals table, or given event times; alignment, window, bin size), optionally a
  subset of units picked by a column, and time series (stimulus, optogenetics) binned as
  measured ``inputs``; a :class:`~pyro_circuits.datasets.SpikeData`.
* :func:`read_nlb` -- the Neural Latents Benchmark layout read directly with ``pynwb``: held-out
  units from the units table's boolean ``heldout`` column, training and validation trials from
  the trials table's ``split`` column (``train`` / ``val`` / ``test``).
* :func:`write_nwb` -- a copy of a file with a fit's inferred rates, latents or inputs (any
  [trials, time, k] arrays on the same trial bins) in a processing module, one ``TimeSeries``
  each (bin-centre timestamps, the trial of each row in ``control``); :func:`read_fit` reads
  them back as [trials, time, k] arrays.

Trial windows are ``align + window[0]`` to ``align + window[1]`` seconds, cut into bins of
``bin_size`` seconds that must divide the window; a spike at a bin's left edge belongs to it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["example_file", "read_fit", "read_nlb", "read_nwb", "trial_bins", "write_nwb"]

_SPLITS = ("train", "val", "test")


def _pynwb():
    try:
        import pynwb
    except ImportError as error:  # pragma: no cover - the extra is installed for the tests
        raise ImportError("NWB files need pynwb: pip install 'pyro-circuits[nwb]'") from error
    return pynwb


def _check_path(path) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no NWB file at {path}")
    return path


def _n_bins(window, bin_size) -> int:
    """The number of bins, or a ValueError when ``bin_size`` does not divide ``window``."""
    if not isinstance(bin_size, int | float) or not bin_size > 0:
        raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size!r}")
    if len(window) != 2 or not window[1] > window[0]:
        raise ValueError(f"window must be (start, stop) with stop > start, got {window!r}")
    ratio = (window[1] - window[0]) / bin_size
    if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
        raise ValueError(
            f"bin_size {bin_size} s does not divide the window {tuple(window)} "
            f"({window[1] - window[0]:g} s is {ratio:.4g} bins)"
        )
    return int(round(ratio))


def _units(nwb, path):
    if nwb.units is None or len(nwb.units) == 0:
        raise ValueError(f"{path} has no units table (sorted spike times) to bin")
    return nwb.units


def _select_units(units, unit_column, unit_values) -> np.ndarray:
    """Row indices of the units to keep."""
    n = len(units)
    if unit_column is None:
        if unit_values is not None:
            raise ValueError("unit_values needs unit_column")
        return np.arange(n)
    if unit_column not in units.colnames:
        raise ValueError(
            f"unit_column {unit_column!r} is not a column of the units table; "
            f"its columns are {list(units.colnames)}"
        )
    column = np.asarray(units[unit_column][:])
    if unit_values is None:
        if column.dtype != bool:
            raise ValueError(
                f"unit column {unit_column!r} is not boolean: pass unit_values to pick units"
            )
        keep = column
    else:
        values = [unit_values] if isinstance(unit_values, str | int | float | bool) else unit_values
        keep = np.isin(column, np.asarray(list(values)))
    if not keep.any():
        raise ValueError(f"no unit has {unit_column!r} in {unit_values!r}")
    return np.flatnonzero(keep)


def _intervals(nwb, path, intervals: str):
    table = nwb.trials if intervals == "trials" else None
    if table is None and intervals != "trials":
        table = nwb.intervals.get(intervals) if nwb.intervals is not None else None
    if table is None:
        tables = sorted(nwb.intervals) if nwb.intervals is not None else []
        raise ValueError(
            f"{path} has no {intervals!r} intervals table (tables: {tables}); pass intervals= "
            "naming one, or event_times="
        )
    return table


def _align_times(nwb, path, intervals, align, event_times):
    """(alignment time per trial, the intervals table or None)."""
    if event_times is not None:
        times = np.asarray(event_times, dtype=float).reshape(-1)
        if times.size == 0 or not np.isfinite(times).all():
            raise ValueError("event_times must be a non-empty array of finite times (s)")
        return times, None
    table = _intervals(nwb, path, intervals)
    if align not in table.colnames and align not in ("start_time", "stop_time"):
        raise ValueError(
            f"align {align!r} is not a column of the {intervals!r} table; "
            f"its columns are {list(table.colnames)}"
        )
    return np.asarray(table[align][:], dtype=float), table


def trial_bins(align_times, window, bin_size) -> np.ndarray:
    """Bin edges [trials, bins + 1] (s): ``align + window[0] + k · bin_size``.

    Example:
        >>> trial_bins([10.0, 20.0], (-0.1, 0.2), 0.1).round(2).tolist()
        [[9.9, 10.0, 10.1, 10.2], [19.9, 20.0, 20.1, 20.2]]
    """
    n_bins = _n_bins(window, bin_size)
    align = np.asarray(align_times, dtype=float).reshape(-1, 1)
    return align + window[0] + bin_size * np.arange(n_bins + 1)


def _bin_spikes(units, rows, edges) -> np.ndarray:
    """Counts [trials, bins, units]: per unit, the spikes in every bin of every trial at once."""
    counts = np.zeros((edges.shape[0], edges.shape[1] - 1, len(rows)), dtype=np.float32)
    spike_times = units["spike_times"]
    for j, row in enumerate(rows):  # one vectorised search per unit
        spikes = np.sort(np.asarray(spike_times[row], dtype=float))
        counts[..., j] = np.diff(np.searchsorted(spikes, edges, side="left"), axis=1)
    return counts


def _find_series(nwb, name: str):
    from pynwb import TimeSeries

    found = [o for o in nwb.objects.values() if isinstance(o, TimeSeries) and o.name == name]
    if not found:
        names = sorted({o.name for o in nwb.objects.values() if isinstance(o, TimeSeries)})
        raise ValueError(f"no time series named {name!r} in the file; time series: {names}")
    if len(found) > 1:
        raise ValueError(f"{len(found)} time series are named {name!r}; rename one")
    return found[0]


def _bin_series(series, edges, oversample: int = 10) -> np.ndarray:
    """A time series' mean over each bin [trials, bins, channels], as a sample-and-hold signal
    (each sample holds until the next; 0 before the first) averaged on ``oversample`` points per
    bin: right for continuous traces and for sparse commands alike."""
    data = np.asarray(series.data[:], dtype=float)
    data = data.reshape(len(data), -1)
    if series.timestamps is not None:
        stamps = np.asarray(series.timestamps[:], dtype=float)
    else:
        stamps = series.starting_time + np.arange(len(data)) / series.rate
    order = np.argsort(stamps, kind="stable")
    stamps, data = stamps[order], data[order]
    width = np.diff(edges, axis=1)[..., None]  # [trials, bins, 1]
    points = edges[:, :-1, None] + width * (np.arange(oversample) + 0.5) / oversample
    index = np.searchsorted(stamps, points, side="right") - 1  # [trials, bins, oversample]
    held = np.where(index[..., None] >= 0, data[np.clip(index, 0, None)], 0.0)
    return held.mean(2).astype(np.float32)


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)


def read_nwb(
    path,
    *,
    bin_size: float,
    window: tuple[float, float] | None = None,
    intervals: str = "trials",
    align: str = "start_time",
    event_times=None,
    unit_column: str | None = None,
    unit_values=None,
    inputs: Sequence[str] = (),
    condition_column: str | None = None,
    with_info: bool = False,
):
    """Bin a units table's spike times into trials: a :class:`SpikeData` (counts [trials, time,
    units], ``dt = bin_size``).

    Arguments:
        path: the NWB file.
        bin_size: bin width (s); it must divide the window.
        window: (start, stop) in seconds relative to each trial's alignment time; default
            (0, the shortest interval), with ``align = "start_time"`` only.
        intervals: the intervals table giving the trials (``"trials"``, or another table of the
            file's ``intervals``); ignored with ``event_times``.
        align: the table's column of alignment times (default each interval's start).
        event_times: alignment times (s) given directly, one per trial, instead of a table.
        unit_column, unit_values: keep the units whose ``unit_column`` is in ``unit_values`` (a
            value or a list); with ``unit_values=None`` the column must be boolean (True kept).
        inputs: names of time series (stimulus, optogenetic, behaviour) binned as measured
            ``inputs`` [trials, time, channels], their channels concatenated in order; each
            bin holds the series' mean over it (sample and hold between samples).
        condition_column: a column of the intervals table whose distinct values become
            ``conditions`` (integer codes, in sorted order of the values).
        with_info: also return a dict: ``unit_ids`` and ``unit_rows`` of the kept units,
            ``align_times``, ``edges`` (bin edges [trials, bins + 1]) and ``trials`` (the
            intervals table's columns, when there is one).

    Every trial is a training trial. Errors (a ValueError naming what is wrong) for a file
    without units, a missing intervals table, bins that do not divide the window, and unknown
    unit, alignment, condition or series names, before any binning.

    Example:
        >>> import tempfile, os
        >>> from pyro_circuits.datasets.nwb import example_file
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     data = read_nwb(example_file(os.path.join(tmp, "a.nwb")), bin_size=0.1,
        ...                     window=(0.0, 0.5), inputs=["light"])
        >>> data.counts.shape, data.inputs.shape
        (torch.Size([3, 5, 2]), torch.Size([3, 5, 1]))
    """
    path = _check_path(path)
    if window is not None:
        _n_bins(window, bin_size)
    elif not isinstance(bin_size, int | float) or not bin_size > 0:
        raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size!r}")
    if isinstance(inputs, str):
        inputs = [inputs]
    with _pynwb().NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        units = _units(nwb, path)
        rows = _select_units(units, unit_column, unit_values)
        align_times, table = _align_times(nwb, path, intervals, align, event_times)
        if window is None:
            if table is None or align != "start_time":
                raise ValueError("window is required with event_times or another align column")
            shortest = float(np.min(table["stop_time"][:] - table["start_time"][:]))
            window = (0.0, np.floor(shortest / bin_size + 1e-9) * bin_size)
            if window[1] <= 0:
                raise ValueError(f"the shortest trial ({shortest:g} s) is shorter than a bin")
        if condition_column is not None and (
            table is None or condition_column not in table.colnames
        ):
            columns = [] if table is None else list(table.colnames)
            raise ValueError(
                f"condition_column {condition_column!r} is not a column of the intervals table "
                f"(columns: {columns})"
            )
        series = [_find_series(nwb, name) for name in inputs]
        edges = trial_bins(align_times, window, bin_size)
        counts = _bin_spikes(units, rows, edges)
        measured = [_bin_series(s, edges) for s in series]
        conditions = None
        if condition_column is not None:
            conditions = torch.as_tensor(_codes(table[condition_column][:]), dtype=torch.long)
        info = {
            "unit_ids": np.asarray(units.id[:])[rows],
            "unit_rows": rows,
            "align_times": align_times,
            "edges": edges,
        }
        if table is not None:
            info["trials"] = {c: np.asarray(table[c][:]) for c in ("start_time", "stop_time")}
            info["trials"].update(
                {c: np.asarray(table[c][:]) for c in table.colnames if _is_flat(table[c])}
            )
    # Through the package: SpikeData.from_nwb reads files through this module.
    from pyro_circuits.datasets import SpikeData

    data = SpikeData(
        counts=torch.from_numpy(counts),
        dt=float(bin_size),
        inputs=torch.from_numpy(np.concatenate(measured, -1)) if measured else None,
        conditions=conditions,
    )
    return (data, info) if with_info else data


def _is_flat(column) -> bool:
    """Whether a table column is one value per row (not ragged, not a reference)."""
    from hdmf.common import DynamicTableRegion, VectorData, VectorIndex

    return isinstance(column, VectorData) and not isinstance(
        column, VectorIndex | DynamicTableRegion
    )


def read_nlb(
    path,
    *,
    bin_size: float = 0.005,
    window: tuple[float, float] | None = None,
    align: str = "start_time",
    splits: Sequence[str] = ("train", "val"),
    with_info: bool = False,
):
    """A Neural Latents Benchmark file (DANDI 000128 and the others) read with ``pynwb``.

    Held-out units come from the units table's boolean ``heldout`` column (all held in without
    it); trials from the trials table's ``split`` column, keeping those in ``splits``:
    ``train_idx`` are the ``train`` trials and ``valid_idx`` the ``val`` ones (``test`` trials,
    if asked for, are in neither). ``window`` and ``align`` as in :func:`read_nwb` (the NLB
    MC_Maze setting: ``align="move_onset_time"``, ``window=(-0.25, 0.45)``). The units keep the
    file's order, so ``heldout`` indexes them as the file does.

    Example:
        >>> import tempfile, os
        >>> from pyro_circuits.datasets.nwb import example_file
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     data = read_nlb(example_file(os.path.join(tmp, "nlb.nwb")), bin_size=0.1,
        ...                     window=(0.0, 0.5))
        >>> data.heldout.tolist(), data.train_idx.tolist(), data.valid_idx.tolist()
        ([1], [0, 1], [2])
    """
    if isinstance(splits, str) or not set(splits) <= set(_SPLITS) or not splits:
        raise ValueError(f"splits must be a non-empty list of {_SPLITS}, got {splits!r}")
    path = _check_path(path)
    with _pynwb().NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        units = _units(nwb, path)
        table = _intervals(nwb, path, "trials")
        if "split" not in table.colnames:
            raise ValueError(f"{path}: the trials table has no 'split' column (not an NLB file)")
        split = np.asarray(table["split"][:]).astype(str)
        heldout = (
            np.asarray(units["heldout"][:], dtype=bool)
            if "heldout" in units.colnames
            else np.zeros(len(units), dtype=bool)
        )
    keep = np.isin(split, list(splits))
    if not keep.any():
        raise ValueError(f"no trial of {path} is in the splits {list(splits)}")
    data, info = read_nwb(path, bin_size=bin_size, window=window, align=align, with_info=True)
    kept = split[keep]
    as_index = lambda mask: torch.as_tensor(np.flatnonzero(mask), dtype=torch.long)  # noqa: E731
    data = dataclasses.replace(
        data.subset(as_index(keep)),
        train_idx=as_index(kept == "train"),
        valid_idx=as_index(kept == "val"),
        heldout=as_index(heldout),
    )
    info.update(split=kept, trial_rows=np.flatnonzero(keep))
    info["edges"] = info["edges"][keep]
    info["align_times"] = info["align_times"][keep]
    return (data, info) if with_info else data


def write_nwb(
    source,
    target,
    values: dict,
    *,
    edges: np.ndarray,
    module: str = "pyro_circuits",
    description: str = "inferred by pyro_circuits",
    overwrite: bool = False,
) -> Path:
    """Copy ``source`` to ``target`` and write ``values`` into its processing module ``module``.

    ``values``: ``{name: array [trials, time, k]}`` (e.g. a fit's ``rates``, ``factors``,
    ``co``); ``edges``: the trials' bin edges [trials, time + 1] (``info["edges"]`` of
    :func:`read_nwb` with ``with_info=True``, or :func:`trial_bins`). Each value becomes one
    ``TimeSeries`` whose rows are every trial's bins in order, stamped at the bin centres, with
    the trial index of each row in ``control``. Returns ``target``.

    Example:
        >>> import tempfile, os
        >>> from pyro_circuits.datasets.nwb import example_file
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     src = example_file(os.path.join(tmp, "a.nwb"))
        ...     data, info = read_nwb(src, bin_size=0.1, window=(0.0, 0.5), with_info=True)
        ...     out = write_nwb(src, os.path.join(tmp, "b.nwb"), {"rates": data.counts / 0.1},
        ...                     edges=info["edges"])
        ...     bool((read_fit(out)["rates"] == data.counts.numpy() / 0.1).all())
        True
    """
    source = _check_path(source)
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"target must be a str or os.PathLike, got {type(target).__name__}")
    target = Path(target)
    if target.resolve() == source.resolve():
        raise ValueError("target must differ from source: write_nwb never changes the source")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (pass overwrite=True to replace it)")
    if not isinstance(values, dict) or not values:
        raise ValueError("values must be a non-empty dict {name: [trials, time, k] array}")
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 2 or edges.shape[1] < 2:
        raise ValueError(f"edges must be [trials, time + 1], got shape {edges.shape}")
    arrays = {}
    for name, value in values.items():
        array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[:2] != (edges.shape[0], edges.shape[1] - 1):
            raise ValueError(
                f"values[{name!r}] must be [{edges.shape[0]}, {edges.shape[1] - 1}, k] to match "
                f"edges, got {array.shape}"
            )
        arrays[name] = array
    pynwb = _pynwb()
    shutil.copyfile(source, target)
    centres = ((edges[:, :-1] + edges[:, 1:]) / 2).reshape(-1)
    trial = np.repeat(np.arange(edges.shape[0]), edges.shape[1] - 1).astype(np.uint32)
    with pynwb.NWBHDF5IO(str(target), mode="a") as io:
        nwb = io.read()
        processing = nwb.processing.get(module) or nwb.create_processing_module(module, description)
        for name, array in arrays.items():
            if name in processing.data_interfaces:
                raise ValueError(f"module {module!r} of {target} already holds {name!r}")
            processing.add(
                pynwb.TimeSeries(
                    name=name,
                    data=array.reshape(-1, array.shape[-1]),
                    unit="Hz" if name == "rates" else "a.u.",
                    timestamps=centres,
                    control=trial,
                    control_description=["trial index (row of the trials read)"],
                    description=f"{description}: {name} [trials × time, {array.shape[-1]}]",
                )
            )
        io.write(nwb)
    return target


def read_fit(path, module: str = "pyro_circuits") -> dict[str, np.ndarray]:
    """The arrays :func:`write_nwb` wrote, ``{name: [trials, time, k]}`` (see its example)."""
    path = _check_path(path)
    out = {}
    with _pynwb().NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        if module not in nwb.processing:
            raise ValueError(f"{path} has no processing module {module!r}")
        for name, series in nwb.processing[module].data_interfaces.items():
            data = np.asarray(series.data[:])
            trial = np.asarray(series.control[:])
            n_trials = int(trial.max()) + 1
            out[name] = data.reshape(n_trials, len(data) // n_trials, data.shape[-1])
    return out


def example_file(path, *, nlb: bool = True, seed: int = 0) -> Path:
    """Write a tiny NWB file for examples and tests: 2 units (the second ``heldout`` and
    ``quality="mua"``), 3 trials of 0.6 s (``split`` train, train, val; ``condition`` a, b, a),
    spikes at 20 Hz from a seeded generator, and a 100-Hz ``light`` series in ``stimulus``
    (1 from 0.2 to 0.4 s of each trial). ``nlb=False`` leaves out the NLB columns.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     example_file(os.path.join(tmp, "x.nwb")).name
        'x.nwb'
    """
    import datetime

    pynwb = _pynwb()
    rng = np.random.default_rng(seed)
    nwb = pynwb.NWBFile(
        session_description="pyro_circuits example",
        identifier=f"pyro-circuits-example-{seed}",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    starts = np.array([0.0, 1.0, 2.0])
    nwb.add_trial_column("condition", "condition label")
    if nlb:
        nwb.add_trial_column("split", "NLB split")
    for i, start in enumerate(starts):
        extra = {"split": ["train", "train", "val"][i]} if nlb else {}
        nwb.add_trial(start_time=start, stop_time=start + 0.6, condition="aba"[i], **extra)
    nwb.add_unit_column("quality", "sorting quality")
    if nlb:
        nwb.add_unit_column("heldout", "held-out unit (NLB)")
    for unit in range(2):
        spikes = np.sort(rng.uniform(0, 3.0, rng.poisson(60)))
        extra = {"heldout": bool(unit == 1)} if nlb else {}
        nwb.add_unit(spike_times=spikes, quality=["good", "mua"][unit], **extra)
    t = np.arange(0, 3.0, 0.01)
    light = (((t % 1.0) >= 0.2 - 1e-9) & ((t % 1.0) < 0.4 - 1e-9)).astype(float)
    nwb.add_stimulus(pynwb.TimeSeries(name="light", data=light, unit="mW", rate=100.0))
    with pynwb.NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwb)
    return Path(path)

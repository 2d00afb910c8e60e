"""Several recording sessions of one experiment, each with its own neurons: :class:`Sessions`.

A model that stitches sessions together (:class:`~pyro_circuits.models.StitchedLFADS`) is
trained on one tensor of trials: :meth:`Sessions.pack` stacks every session's trials, their
neurons zero-padded to the widest session, beside a one-channel ``inputs`` tensor holding each
trial's session index; :meth:`Sessions.unpack` splits a result over those trials back into
sessions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_circuits.checks import index_tensor, name_in
from pyro_circuits.datasets.spike_data import SpikeData

__all__ = ["Sessions"]

_PARTS = ("all", "train", "valid")


@dataclass
class Sessions:
    """Recording sessions sharing a bin width and a trial length, each its own neurons and trials.

    Arguments:
        data: one :class:`SpikeData` per session (at least one).
        names: a unique name per session (default ``session0``, ``session1``, ...).
        units: optional identities of each session's neurons in a common pool (e.g. the
            units of a synthetic population a session records), one index list per session.

    Sessions are indexed by position or name; iterating gives the :class:`SpikeData`.

    Example:
        >>> a = SpikeData(torch.ones(3, 5, 2), dt=0.01)
        >>> b = SpikeData(torch.ones(4, 5, 3), dt=0.01)
        >>> sessions = Sessions([a, b], names=["monday", "tuesday"])
        >>> sessions.n_neurons, sessions["tuesday"].counts.shape[0]
        ([2, 3], 4)
        >>> counts, inputs = sessions.pack()
        >>> counts.shape, inputs[:, 0, 0].tolist()
        (torch.Size([7, 5, 3]), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    """

    data: list[SpikeData]
    names: list[str] | None = None
    units: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, SpikeData) or not isinstance(self.data, Sequence):
            raise TypeError(f"data must be a list of SpikeData, got {type(self.data).__name__}")
        self.data = list(self.data)
        if not self.data:
            raise ValueError("data must hold at least one session, got an empty list")
        for i, session in enumerate(self.data):
            if not isinstance(session, SpikeData):
                raise TypeError(f"data[{i}] must be a SpikeData, got {type(session).__name__}")
        first = self.data[0]
        for i, session in enumerate(self.data[1:], 1):
            if not math.isclose(session.dt, first.dt, rel_tol=1e-9):
                raise ValueError(f"every session needs the same dt: {first.dt} and {session.dt}")
            if session.counts.shape[1] != first.counts.shape[1]:
                raise ValueError(
                    f"every session needs the same number of time bins: session 0 has "
                    f"{first.counts.shape[1]}, session {i} has {session.counts.shape[1]}"
                )
        self.names = self._check_names(self.names)
        if self.units is not None:
            if len(self.units) != len(self.data):
                raise ValueError(f"units needs one index list per session ({len(self.data)})")
            self.units = [self._check_units(i, u) for i, u in enumerate(self.units)]

    def _check_names(self, names) -> list[str]:
        if names is None:
            return [f"session{i}" for i in range(len(self.data))]
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a list of strings, got {names!r}")
        names = list(names)
        if len(names) != len(self.data):
            raise ValueError(f"names has {len(names)} entries for {len(self.data)} sessions")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")
        return names

    def _check_units(self, i: int, units) -> torch.Tensor:
        units = torch.as_tensor(units)
        n = self.data[i].counts.shape[-1]
        if units.shape != (n,):
            raise ValueError(f"units[{i}] must name the session's {n} neurons, got {units.shape}")
        return index_tensor(f"units[{i}]", units, int(units.max()) + 1)

    @classmethod
    def from_nwb(cls, paths, *, names=None, **options) -> Sessions:
        """One session per NWB file, each read by :meth:`SpikeData.from_nwb` with ``options``
        (``bin_size``, ``window``, ``condition_column``, ...); names default to the file stems."""
        if isinstance(paths, str | Path):
            raise TypeError("paths must be a list of NWB files, one per session")
        paths = list(paths)
        if names is None:
            names = [Path(p).stem for p in paths]
        return cls([SpikeData.from_nwb(p, **options) for p in paths], names=names)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        return iter(self.data)

    def __getitem__(self, key: int | str) -> SpikeData:
        if isinstance(key, str):
            key = self.names.index(name_in("session", key, self.names))
        return self.data[key]

    @property
    def dt(self) -> float:
        """The shared bin width (s)."""
        return self.data[0].dt

    @property
    def n_steps(self) -> int:
        """The shared number of time bins per trial."""
        return self.data[0].counts.shape[1]

    @property
    def n_neurons(self) -> list[int]:
        """Each session's number of neurons."""
        return [session.counts.shape[-1] for session in self.data]

    def _parts(self, part: str) -> list[SpikeData]:
        part = name_in("part", part, _PARTS)
        return self.data if part == "all" else [getattr(s, part) for s in self.data]

    def pack(self, part: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
        """Every session's trials (``part``: ``"all"``, ``"train"`` or ``"valid"``) stacked in
        session order: counts [trials, time, max neurons], each session's neurons first and
        zeros after them, and the session index of each trial as ``inputs`` [trials, time, 1]."""
        parts = self._parts(part)
        width = max(self.n_neurons)
        counts, inputs = [], []
        for index, session in enumerate(parts):
            c = session.counts
            counts.append(torch.nn.functional.pad(c, (0, width - c.shape[-1])))
            inputs.append(torch.full((*c.shape[:2], 1), float(index), dtype=c.dtype))
        return torch.cat(counts), torch.cat(inputs)

    def unpack(self, values, part: str = "all", *, neurons: bool = False) -> list[torch.Tensor]:
        """Split ``values`` over the trials of :meth:`pack` (``part``) back into sessions, each
        trimmed to its own neurons along the last axis with ``neurons=True`` (rates, counts)."""
        sizes = [len(session.counts) for session in self._parts(part)]
        values = torch.as_tensor(values)
        if values.shape[0] != sum(sizes):
            raise ValueError(
                f"values must have the {sum(sizes)} packed trials first, got {values.shape}"
            )
        chunks = list(values.split(sizes))
        if neurons:
            chunks = [c[..., :n] for c, n in zip(chunks, self.n_neurons, strict=True)]
        return chunks

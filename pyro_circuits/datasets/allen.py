"""The shipped recording: optotagging of PV interneurons in one Allen Brain Observatory session.

Data: Allen Brain Observatory "Visual Coding – Neuropixels", session 829720705 (a
Pvalb-IRES-Cre mouse, channelrhodopsin in PV interneurons), the optotagging epoch binned at 10 ms
by a third party; DANDI archive dandiset 000021, CC-BY-4.0 with the Allen Institute's terms of
use. Cite Siegle, Jia et al., "Survey of spiking in the mouse visual system reveals functional
hierarchy", Nature 592, 86–92 (2021), and the Allen Institute for Brain Science as the source.
The file and its README (the attribution) ship in ``pyro_circuits/datasets/data/allen_pv_opto/``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from pyro_circuits.datasets.spike_data import SpikeData

__all__ = [
    "ALLEN_PV_OPTO_FILE",
    "SPLITS",
    "allen_opto_split",
    "allen_pv_opto",
    "allen_pv_opto_trials",
    "light_conditions",
]

#: The packaged file (a path inside the installed package).
ALLEN_PV_OPTO_FILE = (
    resources.files("pyro_circuits.datasets") / "data/allen_pv_opto/session_829720705.npz"
)
_DT = 0.01
_ONSET_BIN = 50


_METADATA = ("kind", "stimulus_name", "level", "duration", "condition")


def _load(keys=None) -> dict[str, np.ndarray]:
    """The file's arrays (``keys`` only: the counts are the slow part)."""
    with resources.as_file(ALLEN_PV_OPTO_FILE) as path, np.load(path) as npz:
        return {key: npz[key] for key in (npz.files if keys is None else keys)}


def light_conditions(trials: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Condition index per trial (0: sham, 1…12: the light conditions) and their labels.

    A light condition is one (stimulus, duration, level): pulses of 5 and 10 ms are separate
    conditions (the file's own ``condition`` column merges them), ordered by stimulus, duration,
    then level.

    Example:
        >>> index, labels = light_conditions(allen_pv_opto_trials())
        >>> len(labels), labels[0], labels[1], int((index == 0).sum())
        (13, 'sham', 'pulse 5 ms @ 1.3', 142)
    """
    order = {"pulse": 0, "fast_pulses": 1, "raised_cosine": 2}
    stim, level = trials["stimulus_name"], trials["level"]
    duration_ms = np.round(trials["duration"] * 1000).astype(int)
    keys = sorted(
        {(order[s], d, float(v)) for s, d, v in zip(stim, duration_ms, level, strict=True) if s}
    )
    names = {v: k for k, v in order.items()}
    labels = ["sham"]
    for s, d, v in keys:
        what = f"pulse {d} ms" if names[s] == "pulse" else names[s].replace("_", " ")
        labels.append(f"{what} @ {v:g}")
    lookup = {key: i + 1 for i, key in enumerate(keys)}
    index = np.array(
        [
            lookup[(order[s], d, float(v))] if s else 0
            for s, d, v in zip(stim, duration_ms, level, strict=True)
        ]
    )
    return index, labels


def allen_pv_opto_trials() -> dict[str, np.ndarray]:
    """Per-trial metadata of :func:`allen_pv_opto`, in its trial order: ``kind`` (``opto`` or
    ``sham``), ``stimulus_name`` (``pulse``, ``fast_pulses``, ``raised_cosine``, ``''`` for
    sham), ``level`` (1.3, 1.7, 2.0; 0 for sham), ``duration`` (s), ``condition`` (the file's
    index), ``light_condition`` and ``label`` (:func:`light_conditions`), and ``onset_bin``.

    Example:
        >>> trials = allen_pv_opto_trials()
        >>> sorted(set(trials["stimulus_name"].tolist()))
        ['', 'fast_pulses', 'pulse', 'raised_cosine']
    """
    trials = _load(_METADATA)
    index, labels = light_conditions(trials)
    trials["light_condition"] = index
    trials["label"] = np.array(labels)[index]
    trials["onset_bin"] = np.full(len(index), _ONSET_BIN)
    return trials


def allen_pv_opto() -> SpikeData:
    """The shipped session as :class:`SpikeData`: 442 trials × 150 bins of 10 ms × 371 units.

    ``inputs`` is the measured light command per bin, [trials, time, 1] (0 off; onset at bin 50,
    0.5 s); ``conditions`` the light condition per trial (0: sham, 1…12, see
    :func:`light_conditions`); every trial is a training trial. The trial metadata are
    :func:`allen_pv_opto_trials`. Attribution: see this module and the README beside the file.

    Example:
        >>> data = allen_pv_opto()
        >>> data.counts.shape, data.inputs.shape, data.dt
        (torch.Size([442, 150, 371]), torch.Size([442, 150, 1]), 0.01)
        >>> bool((data.inputs[data.conditions == 0] == 0).all())
        True
    """
    raw = _load()
    index, _ = light_conditions(raw)
    counts = torch.from_numpy(np.ascontiguousarray(raw["z"].transpose(0, 2, 1))).float()
    light = torch.from_numpy(raw["light"].astype(np.float32))[..., None]
    return SpikeData(
        counts=counts, dt=_DT, inputs=light, conditions=torch.as_tensor(index, dtype=torch.long)
    )


#: The perturbation-prediction splits: which light trials train (with every sham trial) and
#: which are predicted from their light command alone.
SPLITS = {
    "heldout_level": "train on levels 1.3 and 1.7, predict level 2.0",
    "heldout_waveform": "train on pulses and pulse trains, predict the raised-cosine ramps",
}


def allen_opto_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out trial indices of :func:`allen_pv_opto` for one of :data:`SPLITS`.

    Training: every sham trial plus the light trials of the training conditions; held out: the
    light trials of the other conditions.

    Example:
        >>> train, test = allen_opto_split("heldout_level")
        >>> len(train), len(test)
        (342, 100)
        >>> len(allen_opto_split("heldout_waveform")[1])
        75
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    trials = allen_pv_opto_trials()
    opto = trials["kind"] == "opto"
    if split == "heldout_level":
        test = opto & np.isclose(trials["level"], 2.0)
    else:
        test = opto & (trials["stimulus_name"] == "raised_cosine")
    as_index = lambda mask: torch.as_tensor(np.flatnonzero(mask), dtype=torch.long)  # noqa: E731
    return as_index(~test), as_index(test)

"""The spike-count container shared by models, baselines and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from pyro_circuits.checks import as_tensor, check_counts, index_tensor, positive_float

__all__ = ["SpikeData"]


@dataclass
class SpikeData:
    """Binned spike counts with optional ground truth and a train/valid split.

    Arguments:
        counts: spike counts, shape [trials, time, neurons] (float tensor of integers).
        dt: bin width in seconds.
        rates: true firing rates in Hz, same shape as ``counts``.
        latents: true latent state, [trials, time, k].
        inputs: input drive, [trials, time, m]: the true (unobserved) drive of synthetic data,
            or a measured input such as the light command of an optogenetics session.
        conditions: condition label per trial.
        train_idx, valid_idx: trial indices of the split, as integer indices or boolean masks
            over the trials, disjoint (default: all trials are training).
        heldout: indices of held-out neurons (for co-bps); the rest are held-in.

    Array-likes are accepted: NumPy or ``int64`` counts become float tensors, a 0-d array
    ``dt`` (as read from an ``.npz``) a float. Everything is checked on construction: at least
    one trial, bin and neuron; finite, non-negative integer counts; finite, non-negative rates;
    shapes; indices in range.

    Example:
        >>> data = SpikeData(torch.poisson(torch.ones(10, 20, 4)), dt=0.01, heldout=[3])
        >>> data.train.counts.shape, data.heldin.tolist()
        (torch.Size([10, 20, 4]), [0, 1, 2])
        >>> mask = torch.arange(10) < 8
        >>> SpikeData(torch.ones(10, 20, 4), dt=0.01, train_idx=mask, valid_idx=~mask).valid_idx
        tensor([8, 9])
    """

    counts: torch.Tensor
    dt: float
    rates: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    conditions: torch.Tensor | None = None
    train_idx: torch.Tensor | None = None
    valid_idx: torch.Tensor | None = None
    heldout: torch.Tensor | list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = check_counts(self.counts, convert=True)
        n_trials, n_steps, n_neurons = self.counts.shape
        self.dt = positive_float("dt", self.dt)
        dtype = self.counts.dtype
        for name in ("rates", "latents", "inputs"):
            value = getattr(self, name)
            if value is None:
                continue
            kind = None if torch.is_tensor(value) else dtype  # a tensor keeps its dtype
            value = as_tensor(name, value, dtype=kind, dim=3, nonnegative=name == "rates")
            if value.shape[:2] != (n_trials, n_steps):
                raise ValueError(
                    f"{name} must have shape [{n_trials}, {n_steps}, k], got {tuple(value.shape)}"
                )
            setattr(self, name, value)
        if self.rates is not None and self.rates.shape != self.counts.shape:
            raise ValueError(f"rates must have the shape of counts, got {tuple(self.rates.shape)}")
        if self.conditions is not None:
            if not torch.is_tensor(self.conditions):
                self.conditions = torch.as_tensor(np.asarray(self.conditions))
            if self.conditions.dim() != 1 or len(self.conditions) != n_trials:
                raise ValueError(
                    f"conditions must have one label per trial ({n_trials}), "
                    f"got shape {tuple(self.conditions.shape)}"
                )
        self.train_idx = (
            torch.arange(n_trials)
            if self.train_idx is None
            else index_tensor("train_idx", self.train_idx, n_trials)
        )
        self.valid_idx = (
            torch.arange(0)
            if self.valid_idx is None
            else index_tensor("valid_idx", self.valid_idx, n_trials)
        )
        overlap = set(self.train_idx.tolist()) & set(self.valid_idx.tolist())
        if overlap:
            raise ValueError(f"train_idx and valid_idx share trials {sorted(overlap)}")
        self.heldout = index_tensor("heldout", self.heldout, n_neurons)
        if self.heldout.numel() == n_neurons:
            raise ValueError(f"heldout must leave at least one of the {n_neurons} neurons held in")

    @classmethod
    def from_nwb(cls, path, **options) -> SpikeData:
        """Bin an NWB file's units into trials: :func:`pyro_circuits.datasets.nwb.read_nwb` with
        its keywords (``with_info=True`` returns ``(data, info)``)."""
        from pyro_circuits.datasets.nwb import read_nwb

        return read_nwb(path, **options)

    @property
    def heldin(self) -> torch.Tensor:
        """Indices of the held-in neurons."""
        keep = torch.ones(self.counts.shape[-1], dtype=torch.bool)
        keep[self.heldout] = False
        return keep.nonzero().squeeze(-1)

    def subset(self, idx: torch.Tensor) -> SpikeData:
        """The trials ``idx`` as a new SpikeData (all of them training trials)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        per_trial = {
            f.name: getattr(self, f.name)[idx]
            for f in fields(self)
            if f.name in ("counts", "rates", "latents", "inputs", "conditions")
            and getattr(self, f.name) is not None
        }
        return replace(self, **per_trial, train_idx=None, valid_idx=None)

    @property
    def train(self) -> SpikeData:
        """The training trials."""
        return self.subset(self.train_idx)

    @property
    def valid(self) -> SpikeData:
        """The validation trials."""
        return self.subset(self.valid_idx)

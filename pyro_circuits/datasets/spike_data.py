"""The spike-count container shared by models, baselines and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

from pyro_circuits.checks import check_counts

__all__ = ["SpikeData"]


@dataclass
class SpikeData:
    """Binned spike counts with optional ground truth and a train/valid split.

    Arguments:
        counts: spike counts, shape [trials, time, neurons] (float tensor of integers).
        dt: bin width in seconds.
        rates: true firing rates in Hz, same shape as ``counts``.
        latents: true latent state, [trials, time, k].
        inputs: true (unobserved) input drive, [trials, time, m].
        conditions: condition label per trial.
        train_idx, valid_idx: trial indices of the split (default: all trials are training).
        heldout: indices of held-out neurons (for co-bps); the rest are held-in.

    Example:
        >>> data = SpikeData(torch.poisson(torch.ones(10, 20, 4)), dt=0.01, heldout=[3])
        >>> data.train.counts.shape, data.heldin.tolist()
        (torch.Size([10, 20, 4]), [0, 1, 2])
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
        check_counts(self.counts)
        n_trials, n_steps, n_neurons = self.counts.shape
        if not isinstance(self.dt, int | float) or self.dt <= 0:
            raise ValueError(f"dt must be a positive number of seconds, got {self.dt!r}")
        for name in ("rates", "latents", "inputs"):
            value = getattr(self, name)
            if value is not None and (value.dim() != 3 or value.shape[:2] != (n_trials, n_steps)):
                raise ValueError(
                    f"{name} must have shape [{n_trials}, {n_steps}, k], got {tuple(value.shape)}"
                )
        if self.rates is not None and self.rates.shape != self.counts.shape:
            raise ValueError(f"rates must have the shape of counts, got {tuple(self.rates.shape)}")
        if self.train_idx is None:
            self.train_idx = torch.arange(n_trials)
        if self.valid_idx is None:
            self.valid_idx = torch.arange(0)
        self.heldout = torch.as_tensor(self.heldout, dtype=torch.long)
        if self.heldout.numel() and not (
            0 <= self.heldout.min() and self.heldout.max() < n_neurons
        ):
            raise ValueError(
                f"heldout must index the {n_neurons} neurons, got {self.heldout.tolist()}"
            )

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

"""Conditions of a set of trials: the groups of trials that received identical inputs."""

from __future__ import annotations

import torch

__all__ = ["conditions_of"]


def conditions_of(inputs: torch.Tensor | None, n_trials: int) -> list[torch.Tensor]:
    """Trial indices of each condition: trials whose measured ``inputs`` are identical (all
    trials one condition without inputs), in order of first appearance.

    Example:
        >>> light = torch.tensor([[0.0], [1.0], [0.0]])[:, :, None]
        >>> [g.tolist() for g in conditions_of(light, 3)]
        [[0, 2], [1]]
    """
    if inputs is None:
        return [torch.arange(n_trials)]
    _, label = torch.unique(inputs.reshape(n_trials, -1), dim=0, return_inverse=True)
    trials = torch.arange(n_trials, device=label.device)
    first = torch.full((int(label.max()) + 1,), n_trials, device=label.device)
    first = first.scatter_reduce(0, label, trials, "amin")
    return [(label == c).nonzero().flatten() for c in first.argsort()]

"""Analysis of a fitted density: modes with coordinates held fixed, and Hessian sensitivity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Sensitivity", "ascend", "hessian_sensitivity"]


@dataclass
class Sensitivity:
    """Eigen-decomposition of the Hessian of log q at a point, most negative eigenvalue first.

    ``eigenvectors[:, 0]`` is the most sensitive direction (log q falls fastest), the last
    column the most robust one (the paper's "degenerate" direction).
    """

    eigenvalues: torch.Tensor  # (D,) ascending
    eigenvectors: torch.Tensor  # (D, D), columns
    names: list[str]

    @property
    def most_sensitive(self) -> dict[str, float]:
        return dict(zip(self.names, self.eigenvectors[:, 0].tolist(), strict=True))

    @property
    def most_robust(self) -> dict[str, float]:
        return dict(zip(self.names, self.eigenvectors[:, -1].tolist(), strict=True))


def hessian_sensitivity(
    log_prob: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, names: list[str]
) -> Sensitivity:
    """Hessian of ``log_prob`` (a function of a flat (D,) point) at ``z`` and its eigen-decomposition.

    Example:
        >>> from torch.distributions import MultivariateNormal
        >>> cov = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
        >>> s = hessian_sensitivity(MultivariateNormal(torch.zeros(2), cov).log_prob, torch.zeros(2), ["x", "y"])
        >>> s.eigenvalues
        tensor([-2.0000, -0.5000])
    """
    if z.dim() != 1 or z.numel() != len(names):
        raise ValueError(
            f"z must be a flat point of {len(names)} coordinates, got shape {tuple(z.shape)}"
        )
    hessian = torch.autograd.functional.hessian(log_prob, z.detach())
    eigenvalues, eigenvectors = torch.linalg.eigh((hessian + hessian.T) / 2)
    return Sensitivity(eigenvalues, eigenvectors, names)


def ascend(
    objective: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    free: torch.Tensor,
    steps: int = 500,
    lr: float = 0.05,
) -> torch.Tensor:
    """Maximise ``objective`` over the ``free`` (bool mask) coordinates of ``start`` with Adam."""
    x = start.detach().clone()
    free_part = x[free].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([free_part], lr=lr)
    for _ in range(steps):
        point = x.masked_scatter(free, free_part)
        loss = -objective(point)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return x.masked_scatter(free, free_part.detach())

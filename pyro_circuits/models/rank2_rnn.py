"""Rank-2 recurrent network W = U Vᵀ, the EPI paper's stable-amplification example."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.models.lds2d import principal_eigenvalue_2x2
from pyro_circuits.sites import noise

__all__ = ["Rank2RNN", "symmetric_max_eigenvalue"]


def symmetric_max_eigenvalue(U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of (W + Wᵀ)/2 for W = U Vᵀ, with U, V of shape (..., n, 2).

    (W + Wᵀ)/2 has rank ≤ 4 and lives in the span of [U, V]: with an orthonormal basis Q of that
    span, its non-zero spectrum is the spectrum of the 4 × 4 matrix Qᵀ W_s Q, and the rest is 0
    when n > 4 (small n uses the full matrix). Cost O(n) per network instead of the O(n³) of a full eigendecomposition.
    """
    n = U.shape[-2]
    if n <= 4:
        full = U @ V.transpose(-1, -2)
        return torch.linalg.eigvalsh((full + full.transpose(-1, -2)) / 2)[..., -1]
    basis, _ = torch.linalg.qr(torch.cat([U, V], dim=-1))
    projected_u = basis.transpose(-1, -2) @ U
    projected_v = basis.transpose(-1, -2) @ V
    small = projected_u @ projected_v.transpose(-1, -2)
    largest = torch.linalg.eigvalsh((small + small.transpose(-1, -2)) / 2)[..., -1]
    return largest.clamp(min=0.0)


class Rank2RNN:
    """Rank-2 RNN with connectivity W = U Vᵀ + noise (Bittner et al. 2021, Fig. 2).

    Parameters ``U`` and ``V`` (n × 2 matrices with entries uniform on ``bounds``, the paper's
    [-1, 1] by default); on every call they are perturbed by ``g`` times fresh standard-normal
    noise, as in the paper (g = 0.01).
    Statistics: ``real_lambda`` (real part of W's principal eigenvalue, from the 2 × 2 matrix
    VᵀU that shares W's non-zero spectrum) and ``sym_lambda`` (largest eigenvalue of (W+Wᵀ)/2).

    Example:
        >>> from pyro_circuits.sites import CircuitProgram
        >>> program = CircuitProgram(Rank2RNN(n=3))
        >>> program.param_shapes["U"]
        torch.Size([3, 2])
    """

    def __init__(
        self, n: int = 2, g: float = 0.01, bounds: tuple[float, float] = (-1.0, 1.0)
    ) -> None:
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer >= 2, got {n!r}")
        if g < 0:
            raise ValueError(f"g must be non-negative, got {g}")
        low, high = map(float, bounds)
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.n = n
        self.g = g
        self.bounds = (low, high)

    def __call__(self) -> None:
        low, high = (torch.full((self.n, 2), bound) for bound in self.bounds)
        prior = dist.Uniform(low, high).to_event(2)
        U = pyro.sample("U", prior)
        V = pyro.sample("V", prior)
        U = U + self.g * noise("U_noise", (self.n, 2), like=U)
        V = V + self.g * noise("V_noise", (self.n, 2), like=V)
        reduced = V.transpose(-1, -2) @ U
        real, _ = principal_eigenvalue_2x2(
            reduced[..., 0, 0], reduced[..., 0, 1], reduced[..., 1, 0], reduced[..., 1, 1]
        )
        pyro.deterministic("real_lambda", real)
        pyro.deterministic("sym_lambda", symmetric_max_eigenvalue(U, V))

    @staticmethod
    def stable_amplification():
        """The paper's property: Re λ1 = 0.5 ± 0.25 and λ1ˢ = 1.5 ± 0.25."""
        from pyro_circuits.property import EmergentProperty

        return EmergentProperty(
            mean={"real_lambda": 0.5, "sym_lambda": 1.5},
            variance={"real_lambda": 0.25**2, "sym_lambda": 0.25**2},
        )

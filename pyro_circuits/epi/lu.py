"""zuko's LU linear map with a batched inverse that solves once for the whole batch.

zuko's ``LULinearTransform`` inverts ``y`` of shape ``(B, D)`` as ``B`` right-hand sides
``(B, D, 1)`` against the shared ``(D, D)`` factors; torch broadcasts the factors over the
batch, so the backward pass builds a ``(B, D, D)`` gradient. Drawing from the flow runs this
inverse, so for large D it dominated an EPI step; here the batch is one ``(D, B)`` right-hand
side instead. This module imports zuko, so it is imported where a flow is built.
"""

from __future__ import annotations

import torch
from zuko.transforms import LULinearTransform

__all__ = ["MatrixLULinearTransform"]


class MatrixLULinearTransform(LULinearTransform):
    """``f(x) = L U x`` as zuko's, inverted with one triangular solve per factor.

    Example:
        >>> lu = torch.eye(3) + torch.tril(torch.ones(3, 3), -1)
        >>> f = MatrixLULinearTransform(lu)
        >>> y = f(torch.randn(5, 3))
        >>> torch.allclose(f.inv(y), LULinearTransform(lu).inv(y), atol=1e-6)
        True
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.L.dim() > 2:
            return super()._inverse(y)
        columns = y.reshape(-1, y.shape[-1]).T
        lower = torch.linalg.solve_triangular(self.L, columns, upper=False)
        x = torch.linalg.solve_triangular(self.U, lower, upper=True, unitriangular=True)
        return x.T.reshape(y.shape)

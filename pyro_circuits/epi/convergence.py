"""Statistical tests of the EPI augmented-Lagrangian loop (Bittner et al. 2021, Methods)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

__all__ = ["MomentTest", "moment_test", "penalty_should_grow"]


@dataclass
class MomentTest:
    """Result of the bootstrap convergence test over M batch means of the constraint violation R."""

    mean_violation: torch.Tensor  # (m,) R averaged over all batches
    p_values: torch.Tensor  # (m,) two-sided sign-test p-values
    threshold: float  # α / m (Bonferroni)

    @property
    def converged(self) -> bool:
        return bool((self.p_values > self.threshold).all())


def moment_test(batch_violations: torch.Tensor, alpha: float = 0.05) -> MomentTest:
    """Test "E[T] = μ_opt" from ``batch_violations`` (M, m): batch means of T minus the target.

    Per constraint the p-value is 2·min(P(R > 0), P(R < 0)) over the M batches, and the
    distribution has converged iff every p-value exceeds α/m (Bonferroni).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> moment_test(torch.randn(200, 2)).converged
        True
        >>> moment_test(torch.randn(200, 2) + 4.0).converged
        False
    """
    if batch_violations.dim() != 2:
        raise ValueError(
            f"batch_violations must have shape (M, m), got {tuple(batch_violations.shape)}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    above = (batch_violations > 0).double().mean(0)
    below = (batch_violations < 0).double().mean(0)
    p_values = 2 * torch.minimum(above, below)
    return MomentTest(batch_violations.mean(0), p_values, alpha / batch_violations.shape[1])


def penalty_should_grow(
    norms: torch.Tensor, previous: torch.Tensor, gamma: float, rng: np.random.Generator
) -> bool:
    """Whether to multiply the penalty c by β after an epoch.

    Welch's t-test of E‖R_k‖² > γ E‖R_{k−1}‖² on per-batch squared violation norms; with
    (t, p) from the two-sided test, grow c when t > 0 and u < 1 − p/2 for u ~ U(0, 1),
    i.e. with probability equal to the one-sided confidence that ‖R‖² did not shrink enough.
    """
    t, p = stats.ttest_ind(norms.cpu().numpy(), gamma * previous.cpu().numpy(), equal_var=False)
    return bool(t > 0 and rng.uniform() < 1 - p / 2)

"""The penalty update of the EPI augmented-Lagrangian loop (Bittner et al. 2021, Methods)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

__all__ = ["penalty_should_grow"]


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

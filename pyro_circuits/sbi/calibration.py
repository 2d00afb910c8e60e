"""Simulation-based calibration and expected coverage of an amortised NPE posterior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pyro_circuits.checks import require_positive_ints, seed_int
from pyro_circuits.sbi.bridge import Simulator, sbi_prior
from pyro_circuits.sbi.result import NPEResult

__all__ = ["calibration"]


def calibration(
    result,
    n: int = 200,
    posterior_samples: int = 500,
    *,
    coverage: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Simulation-based calibration and expected coverage of an NPE result, in one call.

    Draws ``n`` (θ, x) pairs from the prior and the model, then runs sbi's ``run_sbc`` /
    ``check_sbc`` (per-parameter ranks, KS p-values, C2ST of ranks) and, with ``coverage``,
    the expected coverage of the highest-density regions (``run_sbc`` with
    ``reduce_fns = −log q(θ | x)``). A calibrated posterior has uniform ranks (KS p-values not
    small) and empirical coverage ≈ nominal level.

    The checks hold for an amortised posterior only: a sequential (multi-round) NPE is refused
    with a ValueError, as is any result other than an :class:`NPEResult` (a TypeError).

    Returns:
        ``{"ranks": (n, D), "ks_pvals": (D,), "c2st_ranks": (D,), "coverage": DataFrame}``;
        ``coverage`` has columns ``level`` and ``empirical`` (None when ``coverage=False``).
    """
    from sbi.diagnostics import check_sbc, run_sbc

    if not isinstance(result, NPEResult):
        raise TypeError(
            f"result must be an NPEResult (calibration needs an amortised posterior), got "
            f"{type(result).__name__}"
        )
    require_positive_ints(n=n, posterior_samples=posterior_samples)
    seed = seed_int("seed", seed)
    if result.sequential:
        raise ValueError(
            f"result is a sequential NPE ({len(result.history)} rounds): from round 2 on its "
            "posterior is trained on proposals around x₀ and holds at x₀ only, so calibration "
            "against the prior (SBC, expected coverage) does not apply; calibrate a single-round "
            "NPE (rounds=1) instead"
        )
    simulator = Simulator(result.program, result.prop.names)
    torch.manual_seed(seed)
    thetas = sbi_prior(simulator.space).sample((n,))
    xs = simulator(thetas)
    posterior = result.posterior
    ranks, dap = run_sbc(
        thetas, xs, posterior, num_posterior_samples=posterior_samples, show_progress_bar=progress
    )
    checks = check_sbc(ranks, thetas, dap, num_posterior_samples=posterior_samples)
    table = None
    if coverage:
        coverage_ranks, _ = run_sbc(
            thetas,
            xs,
            posterior,
            num_posterior_samples=posterior_samples,
            reduce_fns=lambda theta, x: -posterior.log_prob(theta, x=x),
            show_progress_bar=progress,
        )
        fraction = coverage_ranks[:, 0].numpy() / posterior_samples
        levels = np.linspace(0.05, 0.95, 19)
        table = pd.DataFrame(
            {"level": levels, "empirical": [(fraction < level).mean() for level in levels]}
        )
    return {
        "ranks": ranks,
        "ks_pvals": checks["ks_pvals"],
        "c2st_ranks": checks["c2st_ranks"],
        "coverage": table,
    }

"""ArviZ InferenceData for inference results, built with ``az.from_dict``."""

from __future__ import annotations

from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
import torch

__all__ = ["calibration", "inference_data", "predictive_distance"]


def _split_chains(value: torch.Tensor, chains: int) -> np.ndarray:
    draws = value.shape[0] // chains
    array = value.detach().cpu().numpy()[: chains * draws]
    return array.reshape(chains, draws, *array.shape[1:])


def _dims(values: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    return {k: [f"{k}_dim_{i}" for i in range(v.dim() - 1)] for k, v in values.items()}


def inference_data(
    posterior: Mapping[str, torch.Tensor],
    *,
    predictive: Mapping[str, torch.Tensor] | None = None,
    sample_stats: Mapping[str, torch.Tensor] | None = None,
    prop=None,
    attrs: Mapping[str, object] | None = None,
    chains: int = 4,
) -> az.InferenceData:
    """InferenceData from independent draws ``{site: (n, *shape)}``.

    The n independent draws are split into ``chains`` pseudo-chains so that ArviZ's
    multi-chain summaries are defined (R-hat ≈ 1 and ESS ≈ n are expected for independent
    draws, so they check the bookkeeping, not mixing). ``predictive`` becomes
    ``posterior_predictive``, ``sample_stats`` holds per-draw quantities such as ``log_q``, an
    :class:`~pyro_circuits.epi.EmergentProperty` becomes ``constant_data``
    (``property_mean_<stat>``, ``property_variance_<stat>``), and ``attrs`` (wall time,
    simulation count, entropy, method) are attached to the posterior and sample_stats groups.

    Example:
        >>> idata = inference_data({"a": torch.randn(100)}, attrs={"method": "demo"})
        >>> idata.posterior["a"].shape
        (4, 25)
    """
    if not posterior:
        raise ValueError("posterior must contain at least one site")
    sizes = {v.shape[0] for v in posterior.values()}
    if len(sizes) != 1 or min(sizes) < chains:
        raise ValueError(
            f"posterior draws must share one leading size >= chains={chains}; got {sorted(sizes)}"
        )
    groups = {
        "posterior": posterior,
        "posterior_predictive": predictive or {},
        "sample_stats": sample_stats or {},
    }
    dims = {}
    for values in groups.values():
        dims.update(_dims(values))
    constant = {}
    if prop is not None:
        for name in prop.names:
            constant[f"property_mean_{name}"] = prop.mean[name].cpu().numpy()
            constant[f"property_variance_{name}"] = prop.variance[name].cpu().numpy()
    idata = az.from_dict(
        **{
            group: {k: _split_chains(v, chains) for k, v in values.items()} or None
            for group, values in groups.items()
        },
        constant_data=constant or None,
        dims=dims,
    )
    for group in ("posterior", "sample_stats"):
        if group in idata.groups():
            idata[group].attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return idata


def predictive_distance(stats, prop) -> float:
    """‖mean of the statistics − property mean‖₂, the paper's shared convergence distance.

    ``stats`` is ``{name: (n, *shape)}`` or the flat ``(n, k)`` matrix in the property's order.

    Example:
        >>> from pyro_circuits.epi import EmergentProperty
        >>> prop = EmergentProperty(mean={"f": [0.0, 0.0]}, variance={"f": [1.0, 1.0]})
        >>> predictive_distance(torch.tensor([[3.0, 4.0], [3.0, 4.0]]), prop)
        5.0
    """
    flat = prop.flatten(stats) if isinstance(stats, Mapping) else torch.as_tensor(stats)
    flat = flat.reshape(flat.shape[0], -1)
    return float((flat.mean(0) - prop.mean_vector.to(flat)).norm())


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

    Returns:
        ``{"ranks": (n, D), "ks_pvals": (D,), "c2st_ranks": (D,), "coverage": DataFrame}``;
        ``coverage`` has columns ``level`` and ``empirical`` (None when ``coverage=False``).
    """
    from sbi.diagnostics import check_sbc, run_sbc

    from pyro_circuits.sbi import NPEResult, Simulator, sbi_prior

    if not isinstance(result, NPEResult):
        raise TypeError(
            f"result must be an NPEResult (calibration needs an amortised posterior), got "
            f"{type(result).__name__}"
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

"""ArviZ InferenceData for inference results, built with ``az.from_dict``."""

from __future__ import annotations

from collections.abc import Mapping

import arviz as az
import numpy as np
import torch

__all__ = ["inference_data"]


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

"""ArviZ InferenceData for inference results, built with ``az.from_dict``."""

from __future__ import annotations

from collections.abc import Mapping

import arviz as az
import numpy as np
import torch
import xarray as xr

__all__ = ["CHAINS", "inference_data"]

#: The pseudo-chains independent draws are split into.
CHAINS = 4


def _split_chains(value: torch.Tensor, chains: int) -> np.ndarray:
    draws = value.shape[0] // chains
    array = value.detach().cpu().numpy()[: chains * draws]
    return array.reshape(chains, draws, *array.shape[1:])


def _dim_names(name: str, ndim: int) -> list[str]:
    return [f"{name}_dim_{i}" for i in range(ndim)]


def _dims(values: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    return {k: _dim_names(k, v.dim() - 1) for k, v in values.items()}


def _constant_data(prop) -> dict[str, np.ndarray] | None:
    """The property's target means and variances, for ``constant_data``."""
    if prop is None:
        return None
    constant = {}
    for name in prop.names:
        constant[f"property_mean_{name}"] = prop.mean[name].cpu().numpy()
        constant[f"property_variance_{name}"] = prop.variance[name].cpu().numpy()
    return constant


def _observed_data(prop) -> xr.Dataset:
    """The property's target means under the statistics' names and in their shapes, with the
    dimensions and coordinates of their ``posterior_predictive`` draws (``az.from_dict`` would
    make a scalar target a vector of one)."""
    variables = {}
    for name in prop.names:
        value = prop.mean[name].cpu().numpy()
        dims = _dim_names(name, value.ndim)
        coords = {dim: np.arange(size) for dim, size in zip(dims, value.shape, strict=True)}
        variables[name] = xr.DataArray(value, dims=dims, coords=coords)
    return xr.Dataset(variables)


def inference_data(
    posterior: Mapping[str, torch.Tensor],
    *,
    predictive: Mapping[str, torch.Tensor] | None = None,
    sample_stats: Mapping[str, torch.Tensor] | None = None,
    prior: Mapping[str, torch.Tensor] | None = None,
    prior_predictive: Mapping[str, torch.Tensor] | None = None,
    prop=None,
    attrs: Mapping[str, object] | None = None,
    chains: int = CHAINS,
) -> az.InferenceData:
    """InferenceData from draws ``{site: (n, *shape)}``.

    The n draws are split in order into ``chains`` pseudo-chains of consecutive draws so that
    ArviZ's multi-chain summaries are defined (for independent draws R-hat ≈ 1 and ESS ≈ n, so
    they check the bookkeeping, not mixing). ``predictive`` becomes ``posterior_predictive``,
    ``sample_stats`` holds per-draw quantities such as ``log_q``, ``prior`` and
    ``prior_predictive`` (draws of the model's prior and their statistics, split the same way)
    their groups. An :class:`~pyro_circuits.property.EmergentProperty` becomes
    ``observed_data`` (its target means under the statistics' names, so ``az.plot_ppc`` pairs
    them with ``posterior_predictive``) and ``constant_data`` (``property_mean_<stat>``,
    ``property_variance_<stat>``). ``attrs`` (wall time, simulation count, entropy, method) are
    attached to the posterior and sample_stats groups.

    Example:
        >>> idata = inference_data({"a": torch.randn(100)}, attrs={"method": "demo"})
        >>> idata.posterior["a"].shape
        (4, 25)
    """
    if not posterior:
        raise ValueError("posterior must contain at least one site")
    groups = {
        "posterior": posterior,
        "posterior_predictive": predictive or {},
        "sample_stats": sample_stats or {},
        "prior": prior or {},
        "prior_predictive": prior_predictive or {},
    }
    for group, values in groups.items():
        sizes = {v.shape[0] for v in values.values()}
        if len(sizes) > 1 or (sizes and min(sizes) < chains):
            raise ValueError(
                f"{group} draws must share one leading size >= chains={chains}; got {sorted(sizes)}"
            )
    dims = {}
    for values in groups.values():
        dims.update(_dims(values))
    idata = az.from_dict(
        **{
            group: {k: _split_chains(v, chains) for k, v in values.items()} or None
            for group, values in groups.items()
        },
        constant_data=_constant_data(prop),
        dims=dims,
    )
    if prop is not None:
        idata.add_groups(observed_data=_observed_data(prop))
    for group in ("posterior", "sample_stats"):
        if group in idata.groups():
            idata[group].attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return idata

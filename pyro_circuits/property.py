"""Emergent properties: target means and variances of named statistic sites, and the two checks
every method is judged by (the moment test and the predictive distance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from pyro_circuits.checks import name_in, positive_int, probability

__all__ = [
    "CONVERGENCE_DISTANCE",
    "EmergentProperty",
    "check_fit_arguments",
    "constraint_table",
    "MomentTest",
    "moment_test",
    "near_share",
    "predictive_distance",
    "SECOND_MOMENT",
]

#: The paper's shared convergence criterion: ‖E[f] − μ‖₂ below this (Bittner et al. 2021, Fig. 2).
CONVERGENCE_DISTANCE = 0.5


class EmergentProperty:
    """An emergent property X: E[f] = μ and Var[f] = σ² for named ``pyro.deterministic`` sites.

    Following Bittner et al. (2021, eqs. 12, 19-20), EPI constrains the sufficient statistics
    T(z) = [f(z), (f(z) − μ)²] to have expectation [μ, σ²].

    Arguments:
        mean: ``{statistic site: μ}`` (float or tensor of the site's shape).
        variance: ``{statistic site: σ²}`` with the same keys and shapes; strictly positive.

    A mean that is not a finite number (a string, None, NaN) or a variance that is not a
    positive finite number large enough to divide by is an error on construction.

    Example:
        >>> prop = EmergentProperty(mean={"rate": 5.0}, variance={"rate": 1.0})
        >>> prop.sufficient_statistics({"rate": torch.tensor([4.0, 7.0])})
        tensor([[4., 1.],
                [7., 4.]])
        >>> prop.target
        tensor([5., 1.])
    """

    def __init__(self, mean: Mapping[str, object], variance: Mapping[str, object]) -> None:
        if not isinstance(mean, Mapping) or not isinstance(variance, Mapping):
            raise TypeError("mean and variance must be dicts keyed by statistic site name")
        if not mean:
            raise ValueError("an emergent property needs at least one statistic")
        if set(mean) != set(variance):
            raise ValueError(
                f"mean and variance must name the same statistics; mean has {sorted(mean)}, "
                f"variance has {sorted(variance)}"
            )
        dtype = torch.get_default_dtype()
        for name in mean:
            if not isinstance(name, str):
                raise TypeError(f"statistic names must be strings, got {name!r}")
        self.mean = {k: _values(f"mean[{k!r}]", v, dtype) for k, v in mean.items()}
        self.variance = {k: _values(f"variance[{k!r}]", variance[k], dtype) for k in mean}
        tiny = torch.finfo(dtype).tiny
        for name in self.mean:
            if self.mean[name].shape != self.variance[name].shape:
                raise ValueError(
                    f"statistic {name!r}: mean has shape {tuple(self.mean[name].shape)} but variance "
                    f"has shape {tuple(self.variance[name].shape)}"
                )
            if not bool(torch.isfinite(self.mean[name]).all()):
                raise ValueError(f"statistic {name!r}: mean must be finite, got {self.mean[name]}")
            var = self.variance[name]
            if not bool(torch.isfinite(var).all()) or not bool((var > 0).all()):
                raise ValueError(
                    f"statistic {name!r}: variance must be positive and finite, got {var}"
                )
            if not bool((var >= tiny).all()) or not bool(torch.isfinite(1 / var).all()):
                raise ValueError(
                    f"statistic {name!r}: variance {var} is too small to divide by in "
                    f"{dtype} (must be >= {tiny:.3g})"
                )

    @property
    def names(self) -> list[str]:
        return list(self.mean)

    @property
    def mean_vector(self) -> torch.Tensor:
        """The flat vector of target means (the observation x₀ for SBI methods)."""
        return torch.cat([self.mean[k].reshape(-1) for k in self.names])

    @property
    def variance_vector(self) -> torch.Tensor:
        return torch.cat([self.variance[k].reshape(-1) for k in self.names])

    @property
    def target(self) -> torch.Tensor:
        """μ_opt = [μ, σ²], the expectation the sufficient statistics must reach."""
        return torch.cat([self.mean_vector, self.variance_vector])

    @property
    def constraint_scale(self) -> torch.Tensor:
        """[σ, σ²]: the natural unit of each mean and variance constraint."""
        return torch.cat([self.variance_vector.sqrt(), self.variance_vector])

    @property
    def constraint_names(self) -> list[str]:
        """One label per constraint, e.g. ``E[real_lambda]`` and ``Var[real_lambda]``."""
        labels = []
        for kind in ("E", "Var"):
            for name in self.names:
                size = self.mean[name].numel()
                index = [""] if self.mean[name].dim() == 0 else [f"[{i}]" for i in range(size)]
                labels += [f"{kind}[{name}{i}]" for i in index]
        return labels

    def validate(self, statistic_shapes: Mapping[str, torch.Size]) -> None:
        """Check every named statistic exists in the model with the property's shape."""
        unknown = [k for k in self.names if k not in statistic_shapes]
        if unknown:
            raise ValueError(
                f"the property names statistics {unknown} that the model does not declare; the "
                f"model's pyro.deterministic sites are {sorted(statistic_shapes)}"
            )
        for name in self.names:
            if torch.Size(statistic_shapes[name]) != self.mean[name].shape:
                raise ValueError(
                    f"statistic {name!r} has shape {tuple(statistic_shapes[name])} in the model but "
                    f"{tuple(self.mean[name].shape)} in the property"
                )

    def flatten(self, stats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: (n, *shape)}`` → ``(n, k)``, the property's statistics side by side."""
        return torch.cat([stats[k].reshape(stats[k].shape[0], -1) for k in self.names], dim=-1)

    def sufficient_statistics(self, stats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """T = [f, (f − μ)²] for a batch of statistics, shape ``(n, 2k)``."""
        f = self.flatten(stats)
        mean = self.mean_vector.to(f)
        return torch.cat([f, (f - mean) ** 2], dim=-1)

    def to(self, device: torch.device | str) -> EmergentProperty:
        return EmergentProperty(
            {k: v.to(device) for k, v in self.mean.items()},
            {k: v.to(device) for k, v in self.variance.items()},
        )

    def __repr__(self) -> str:
        parts = [
            f"{k}: {_short(self.mean[k])} ± {_short(self.variance[k].sqrt())}" for k in self.names
        ]
        return f"EmergentProperty({'; '.join(parts)})"


def _short(values: torch.Tensor) -> str:
    """Target values to four significant figures, in brackets when they are a vector."""
    numbers = [f"{v:.4g}" for v in values.flatten().tolist()]
    return numbers[0] if values.dim() == 0 else f"[{', '.join(numbers)}]"


def _values(name: str, value, dtype: torch.dtype) -> torch.Tensor:
    """A target mean or variance as a tensor: a number, a list of numbers or a tensor."""
    if value is None or isinstance(value, str | bytes | bool | dict):
        raise TypeError(f"{name} must be a number or a tensor of numbers, got {value!r}")
    try:
        tensor = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be a number or a tensor of numbers: {error}") from None
    return tensor


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
    alpha = probability("alpha", alpha, low_open=True, high_open=True)
    above = (batch_violations > 0).double().mean(0)
    below = (batch_violations < 0).double().mean(0)
    p_values = 2 * torch.minimum(above, below)
    return MomentTest(batch_violations.mean(0), p_values, alpha / batch_violations.shape[1])


#: The constraint on a variance is on the second moment about the *target* mean, E[(f − μ)²]
#: (Bittner et al. 2021, eq. 12): it equals the variance only when the mean is on target.
SECOND_MOMENT = "achieved E[(f-μ)²]"


def constraint_table(
    stats: Mapping[str, torch.Tensor], prop: EmergentProperty, batches: int, alpha: float = 0.05
) -> pd.DataFrame:
    """The constraint table of predictive statistics ``{name: (n, *shape)}``: per statistic the
    target and achieved mean, the target σ² against the achieved second moment about the target
    mean (:data:`SECOND_MOMENT`, what the property constrains) with the sample variance beside
    it, the moment test's p-values over ``batches`` equal batches, and the verdict.

    Example:
        >>> prop = EmergentProperty(mean={"f": 0.0}, variance={"f": 1.0})
        >>> stats = {"f": torch.tensor([2.0, 4.0, 2.0, 4.0])}  # mean 3, variance 1
        >>> table = constraint_table(stats, prop, batches=2)
        >>> table[["achieved mean", SECOND_MOMENT, "sample var"]].values.tolist()
        [[3.0, 10.0, 1.0]]
    """
    batches = positive_int("batches", batches)
    f = prop.flatten(stats)
    if len(f) % batches:
        raise ValueError(f"batches ({batches}) must divide the number of draws ({len(f)})")
    violations = prop.sufficient_statistics(stats) - prop.target.to(f)
    test = moment_test(violations.reshape(batches, len(f) // batches, -1).mean(1), alpha)
    k = f.shape[1]
    return pd.DataFrame(
        {
            "statistic": [name[2:-1] for name in prop.constraint_names[:k]],
            "target mean": prop.mean_vector.tolist(),
            "achieved mean": f.mean(0).tolist(),
            "p (mean)": test.p_values[:k].tolist(),
            "target var": prop.variance_vector.tolist(),
            SECOND_MOMENT: ((f - prop.mean_vector.to(f)) ** 2).mean(0).tolist(),
            "sample var": f.var(0, correction=0).tolist(),
            "p (var)": test.p_values[k:].tolist(),
            "converged": [
                bool((test.p_values[[i, i + k]] > test.threshold).all()) for i in range(k)
            ],
        }
    )


def predictive_distance(stats, prop, center: str = "mean") -> float:
    """‖centre of the statistics − property mean‖₂, the paper's shared convergence distance.

    ``stats`` is ``{name: (n, *shape)}`` or the flat ``(n, k)`` matrix in the property's order.
    ``center`` is ``"mean"`` (the paper's text: ‖E[f] − μ‖₂) or ``"median"`` (the
    per-statistic median, which the reference SNPE script measured after each round).

    Example:
        >>> prop = EmergentProperty(mean={"f": [0.0, 0.0]}, variance={"f": [1.0, 1.0]})
        >>> predictive_distance(torch.tensor([[3.0, 4.0], [3.0, 4.0]]), prop)
        5.0
        >>> predictive_distance(torch.tensor([[3.0, 4.0], [3.0, 4.0], [30.0, 40.0]]), prop,
        ...                     center="median")
        5.0
    """
    name_in("center", center, ("mean", "median"))
    flat = prop.flatten(stats) if isinstance(stats, Mapping) else torch.as_tensor(stats)
    flat = flat.reshape(flat.shape[0], -1)
    middle = flat.mean(0) if center == "mean" else flat.quantile(0.5, dim=0)
    return float((middle - prop.mean_vector.to(flat)).norm())


def near_share(stats, prop) -> float:
    """The share of simulations within one target s.d. of the property's means:
    ‖(f − μ) / σ‖₂ < 1, with σ² the property's variances. What a round of NPE adds near x₀.

    ``stats`` is ``{name: (n, *shape)}`` or the flat ``(n, k)`` matrix in the property's order.

    Example:
        >>> prop = EmergentProperty(mean={"f": [0.0, 0.0]}, variance={"f": [1.0, 4.0]})
        >>> near_share(torch.tensor([[0.5, 1.0], [0.0, 3.0], [2.0, 0.0]]), prop)
        0.3333333432674408
    """
    flat = prop.flatten(stats) if isinstance(stats, Mapping) else torch.as_tensor(stats)
    flat = flat.reshape(flat.shape[0], -1)
    scaled = (flat - prop.mean_vector.to(flat)) / prop.variance_vector.to(flat).sqrt()
    return float((scaled.norm(dim=1) < 1).float().mean())


def check_fit_arguments(model, prop, params, model_args, model_kwargs) -> None:
    """The checks every parameter-inference method makes of its model and property arguments
    before any work: a callable model, an :class:`EmergentProperty`, site names, a tuple of
    arguments and a dict of keywords.

    Example:
        >>> check_fit_arguments(print, "rate > 5", None, (), None)
        Traceback (most recent call last):
        ...
        TypeError: prop must be an EmergentProperty, got str
    """
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro program, got {type(model).__name__}")
    if not isinstance(prop, EmergentProperty):
        raise TypeError(f"prop must be an EmergentProperty, got {type(prop).__name__}")
    if params is not None and (
        isinstance(params, str) or not all(isinstance(p, str) for p in params)
    ):
        raise TypeError(f"params must be a list of site names, got {params!r}")
    if not isinstance(model_args, tuple | list):
        raise TypeError(f"model_args must be a tuple, got {type(model_args).__name__}")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")

"""The parameter space of a circuit model: flat coordinates and the map onto each site's support."""

from __future__ import annotations

import torch
from torch.distributions import Distribution, biject_to

__all__ = ["ParameterSpace"]


class ParameterSpace:
    """Flattens parameter sites into one vector and maps unconstrained ℝᴰ onto their supports.

    Each site's support is read through ``torch.distributions.biject_to(prior.support)``
    (for ``Uniform(lb, ub)``: ``lb + (ub - lb)·sigmoid(x)``, the reference's interval map).

    Arguments:
        priors: ``{site name: prior distribution}`` with batch shape ``()``.

    Example:
        >>> import pyro.distributions as dist
        >>> space = ParameterSpace({"a": dist.Uniform(-1.0, 1.0)})
        >>> theta, log_det = space.forward(torch.zeros(3, 1))
        >>> theta
        tensor([[0.],
                [0.],
                [0.]])
    """

    def __init__(self, priors: dict[str, Distribution]) -> None:
        self.priors = dict(priors)
        self.names = list(priors)
        self.shapes = {n: p.event_shape for n, p in priors.items()}
        self.sizes = [self.shapes[n].numel() for n in self.names]
        self.dim = sum(self.sizes)
        self.transforms = {n: biject_to(p.support) for n, p in priors.items()}
        for name, transform in self.transforms.items():
            if transform.forward_shape(self.shapes[name]) != self.shapes[name]:
                raise ValueError(
                    f"the support of {name!r} changes shape under biject_to; unsupported"
                )

    @property
    def coordinate_names(self) -> list[str]:
        """One name per flat coordinate: ``a11`` for scalars, ``U[3]`` for vector sites."""
        names = []
        for name, size in zip(self.names, self.sizes, strict=True):
            names += (
                [name]
                if self.shapes[name].numel() == 1 and not self.shapes[name]
                else [f"{name}[{i}]" for i in range(size)]
            )
        return names

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(n, D)`` → ``{site: (n, *event_shape)}``."""
        if flat.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} coordinates, got shape {tuple(flat.shape)}")
        parts = flat.split(self.sizes, dim=-1)
        return {
            n: p.reshape(flat.shape[:-1] + self.shapes[n])
            for n, p in zip(self.names, parts, strict=True)
        }

    def join(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{site: (n, *event_shape)}`` → ``(n, D)``."""
        missing = [n for n in self.names if n not in values]
        if missing:
            raise ValueError(f"values are missing parameter sites {missing}")
        return torch.cat([values[n].reshape(values[n].shape[0], -1) for n in self.names], dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unconstrained ``x`` (n, D) → constrained θ (n, D) and log |det ∂θ/∂x| (n,)."""
        parts, log_det = [], torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for name, value in self.split(x).items():
            transform = self.transforms[name]
            theta = transform(value)
            log_det = log_det + transform.log_abs_det_jacobian(value, theta).reshape(
                *x.shape[:-1], -1
            ).sum(-1)
            parts.append(theta.reshape(*x.shape[:-1], -1))
        return torch.cat(parts, dim=-1), log_det

    def inverse(self, theta: torch.Tensor) -> torch.Tensor:
        """Constrained θ (n, D) → unconstrained x (n, D)."""
        parts = [
            self.transforms[n].inv(v).reshape(*theta.shape[:-1], -1)
            for n, v in self.split(theta).items()
        ]
        return torch.cat(parts, dim=-1)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat lower and upper bounds of the supports (±inf where unbounded)."""
        lows, highs = [], []
        for name in self.names:
            support = self.priors[name].support
            base = getattr(support, "base_constraint", support)
            shape = self.shapes[name]
            low = torch.as_tensor(
                getattr(base, "lower_bound", -torch.inf), dtype=torch.get_default_dtype()
            )
            high = torch.as_tensor(
                getattr(base, "upper_bound", torch.inf), dtype=torch.get_default_dtype()
            )
            lows.append(low.expand(shape).reshape(-1))
            highs.append(high.expand(shape).reshape(-1))
        return torch.cat(lows), torch.cat(highs)

"""The EPI distribution: a zuko real-NVP flow on ℝᴰ pushed onto the parameters' supports.

zuko is imported where a flow is built, not with the package: importing zuko switches off
torch's distribution argument checks for the whole process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.space import ParameterSpace

if TYPE_CHECKING:
    from zuko.flows import Flow
    from zuko.transforms import DependentTransform

__all__ = ["FlowConfig", "SupportedFlow", "build_flow"]


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of the EPI flow (defaults: the reference's ``D_C3_affine_L2_U50_PA``).

    Attributes:
        stages: coupling stages (real NVP).
        coupling: ``"affine"`` (real NVP) or ``"spline"`` (monotonic rational-quadratic splines
            on [−5, 5], identity outside: the reference's ``elemwise_fn="spline"``).
        bins: spline bins (``coupling="spline"`` only).
        layers: hidden layers of each coupling network.
        units: units per hidden layer.
        permutations: ``"lu"`` for a Glow-style random permutation + trainable LU linear map
            between stages, ``"shuffle"`` for a fixed random permutation, ``"none"`` to rely on
            alternating masks only.
        post_affine: a trainable element-wise affine map after the last stage.
    """

    stages: int = 3
    coupling: str = "affine"
    bins: int = 8
    layers: int = 2
    units: int = 50
    permutations: str = "lu"
    post_affine: bool = True

    def __post_init__(self) -> None:
        fields = ("stages", "bins", "layers", "units")
        require_positive_ints(**{f"FlowConfig.{field}": getattr(self, field) for field in fields})
        if self.coupling not in ("affine", "spline"):
            raise ValueError(
                f"FlowConfig.coupling must be 'affine' or 'spline', got {self.coupling!r}"
            )
        if self.permutations not in ("lu", "shuffle", "none"):
            raise ValueError(
                f"FlowConfig.permutations must be 'lu', 'shuffle' or 'none', got {self.permutations!r}"
            )


def _elementwise_affine(shift: torch.Tensor, scale: torch.Tensor) -> DependentTransform:
    from zuko.transforms import DependentTransform, MonotonicAffineTransform

    return DependentTransform(MonotonicAffineTransform(shift, scale), 1)


def build_flow(dim: int, config: FlowConfig, generator: torch.Generator | None = None) -> Flow:
    """A zuko ``Flow`` on ℝ^dim: coupling stages, permutations between them, optional post-affine."""
    from zuko.distributions import DiagNormal
    from zuko.flows import (
        Flow,
        GeneralCouplingTransform,
        UnconditionalDistribution,
        UnconditionalTransform,
    )
    from zuko.transforms import (
        MonotonicAffineTransform,
        MonotonicRQSTransform,
        PermutationTransform,
    )

    from pyro_circuits.epi.lu import MatrixLULinearTransform

    if config.coupling == "spline":
        univariate = partial(MonotonicRQSTransform, slope=1e-3)
        shapes = [(config.bins,), (config.bins,), (config.bins - 1,)]
    else:
        univariate, shapes = MonotonicAffineTransform, [(), ()]
    transforms = []
    for stage in range(config.stages):
        mask = torch.arange(dim) % 2 == stage % 2
        transforms.append(
            GeneralCouplingTransform(
                dim,
                mask=mask,
                univariate=univariate,
                shapes=shapes,
                hidden_features=(config.units,) * config.layers,
            )
        )
        if stage < config.stages - 1 and config.permutations != "none" and dim > 1:
            order = torch.randperm(dim, generator=generator)
            transforms.append(UnconditionalTransform(PermutationTransform, order, buffer=True))
            if config.permutations == "lu":
                transforms.append(UnconditionalTransform(MatrixLULinearTransform, torch.eye(dim)))
    if config.post_affine:
        transforms.append(
            UnconditionalTransform(_elementwise_affine, torch.zeros(dim), torch.zeros(dim))
        )
    base = UnconditionalDistribution(DiagNormal, torch.zeros(dim), torch.ones(dim), buffer=True)
    return Flow(transforms, base)


class SupportedFlow(nn.Module):
    """q(θ): a flow on unconstrained coordinates mapped onto the parameter supports.

    ``rsample_and_log_prob(n)`` returns constrained draws θ (n, D) and log q(θ) in one forward
    pass; ``log_prob(θ)`` inverts the support map and the flow.
    """

    def __init__(
        self, space: ParameterSpace, config: FlowConfig, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.space = space
        self.config = config
        self.flow = build_flow(space.dim, config, generator)

    def rsample_and_log_prob(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, log_q_x = self.flow().rsample_and_log_prob((n,))
        theta, log_det = self.space.forward(x)
        return theta, log_q_x - log_det

    def sample(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample_and_log_prob(n)[0]

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        x = self.space.inverse(theta)
        return self.log_prob_unconstrained(x)

    def log_prob_unconstrained(self, x: torch.Tensor) -> torch.Tensor:
        """log q(θ(x)) for unconstrained coordinates x."""
        _, log_det = self.space.forward(x)
        return self.flow().log_prob(x) - log_det

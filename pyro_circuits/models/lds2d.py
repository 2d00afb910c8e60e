"""Two-dimensional linear dynamical system, the EPI paper's introductory example."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

__all__ = ["LDS2D", "principal_eigenvalue_2x2"]


def principal_eigenvalue_2x2(a11, a12, a21, a22) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary part of the principal eigenvalue of [[a11, a12], [a21, a22]].

    Closed form λ = tr/2 + sqrt(tr² - 4 det)/2 with the principal complex square root, so the
    imaginary part is non-negative. Differentiable and batched over any leading shape.
    """
    trace = a11 + a22
    discriminant = trace**2 - 4 * (a11 * a22 - a12 * a21)
    root = torch.sqrt(discriminant.abs())
    real = trace / 2 + torch.where(discriminant > 0, root, torch.zeros_like(root)) / 2
    imag = torch.where(discriminant < 0, root, torch.zeros_like(root)) / 2
    return real, imag


class LDS2D:
    """τ ẋ = A x with A = [[a11, a12], [a21, a22]], each a_ij ~ Uniform(-10, 10).

    Statistics (``pyro.deterministic``): ``real_lambda`` and ``imag_lambda``, the real and
    imaginary parts of the principal eigenvalue of A/τ (Bittner et al. 2021, "Example: 2D LDS").
    Its emergent property (oscillation at 1 Hz) is :meth:`oscillation`.

    Example:
        >>> from pyro_circuits.sites import CircuitProgram
        >>> program = CircuitProgram(LDS2D())
        >>> values = {"a11": torch.tensor([0.0]), "a12": torch.tensor([1.0]),
        ...           "a21": torch.tensor([-1.0]), "a22": torch.tensor([0.0])}
        >>> program.simulate(values)["imag_lambda"]
        tensor([1.])
    """

    def __init__(self, tau: float = 1.0, bound: float = 10.0) -> None:
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        self.tau = tau
        self.bound = bound

    def __call__(self) -> None:
        prior = dist.Uniform(-self.bound, self.bound)
        a = [pyro.sample(name, prior) for name in ("a11", "a12", "a21", "a22")]
        real, imag = principal_eigenvalue_2x2(*(x / self.tau for x in a))
        pyro.deterministic("real_lambda", real)
        pyro.deterministic("imag_lambda", imag)

    @staticmethod
    def oscillation():
        """The paper's property: Re λ1 = 0 ± 0.25, Im λ1 = 2π ± π/5 (1 Hz oscillation)."""
        from pyro_circuits.property import EmergentProperty

        return EmergentProperty(
            mean={"real_lambda": 0.0, "imag_lambda": 2 * math.pi},
            variance={"real_lambda": 0.25**2, "imag_lambda": (math.pi / 5) ** 2},
        )

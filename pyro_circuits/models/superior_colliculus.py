"""Four-population superior colliculus model of rapid Pro/Anti task switching (Duan et al. 2021)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.checks import positive_int
from pyro_circuits.handlers import perturb
from pyro_circuits.sites import noise

__all__ = ["POPULATIONS", "SuperiorColliculus", "connectivity"]

POPULATIONS = ("LP", "LA", "RP", "RA")
PARAMS = ("sW", "vW", "dW", "hW")
THETA, BETA, TAU = 0.05, 0.5, 0.09
CUE_END, LIGHT_END = 1.2, 1.5
# Input amplitudes (constant, Pro bias, rule, choice, light) and their population patterns.
I_CONSTANT, I_PRO_BIAS, I_RULE, I_CHOICE, I_LIGHT = 0.75, 0.5, 0.6, 0.25, 0.5
PRO, ANTI, LEFT = (1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0), (1.0, 1.0, 0.0, 0.0)


def connectivity(sW, vW, dW, hW) -> torch.Tensor:
    """The symmetric 4 × 4 weights over (LP, LA, RP, RA): self sW, vertical vW (Pro–Anti, same
    side), horizontal hW (same type, across sides), diagonal dW; shape ``(..., 4, 4)``.

    Example:
        >>> connectivity(*torch.tensor([1.0, 2.0, 3.0, 4.0]))[0]
        tensor([1., 2., 4., 3.])
    """
    rows = ((sW, vW, hW, dW), (vW, sW, dW, hW), (hW, dW, sW, vW), (dW, hW, vW, sW))
    return torch.stack([torch.stack(torch.broadcast_tensors(*row), -1) for row in rows], -2)


class SuperiorColliculus:
    """SC Pro/Anti model (Bittner et al. 2021, "SC model"): τ du = (−u + W x + h(t) + σ ξ) dt.

    Activity x = φ(u) = ½ tanh((u − θ)/β) + ½ (θ = 0.05, β = 0.5), τ = 0.09 s, σ = 0.2, Euler
    steps of 24 ms over 1.8 s. Parameters sW, vW, dW, hW ~ Uniform(−5, 5) set
    :func:`connectivity`. Inputs: constant 0.75, Pro bias 0.5, rule cue 0.6 to the Pro (Pro
    trials) or Anti (Anti trials) populations for t ≤ 1.2 s, choice 0.25 for t > 1.2 s, light 0.5
    to the left populations for 1.2 < t < 1.5 s. Pro-left and Anti-left trials (``trials`` each)
    run in one vectorised call from x(0) = 0.1 + 0.005 ξ. Statistics: ``pro_accuracy``, the mean
    of sigmoid(100 (x_LP − x_RP)) at 1.8 s in Pro trials, and ``anti_accuracy``, the mean of
    sigmoid(100 (x_RP − x_LP)) in Anti trials. Activity passes through
    ``perturb.site("activity", x, t, populations=("LP", "LA", "RP", "RA"))``, so delay-period
    silencing is ``optogenetic(POPULATIONS, window=(0.8, 1.2), gain=γ)``.

    Example:
        >>> from pyro_circuits.sites import CircuitProgram
        >>> program = CircuitProgram(SuperiorColliculus(trials=10))
        >>> program.params, program.statistics
        (['sW', 'vW', 'dW', 'hW'], ['pro_accuracy', 'anti_accuracy'])
    """

    def __init__(
        self, trials: int = 200, dt: float = 0.024, duration: float = 1.8, sigma: float = 0.2
    ) -> None:
        positive_int("trials", trials)
        if dt <= 0 or duration <= LIGHT_END:
            raise ValueError(f"need dt > 0 and duration > {LIGHT_END} s, got {dt}, {duration}")
        if sigma < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        self.trials, self.dt, self.sigma = trials, dt, sigma
        self.steps = round(duration / dt)

    def __call__(self) -> None:
        prior = dist.Uniform(-5.0, 5.0)
        weights = connectivity(*(pyro.sample(name, prior) for name in PARAMS))
        shape = (2, self.trials, len(POPULATIONS))
        x0_noise = noise("x0_noise", shape, like=weights)
        xi = noise("noise", (self.steps, *shape), like=weights)
        final = self.simulate(weights, x0_noise, xi, trajectory=False)
        decision = torch.sigmoid(100 * (final[..., 0] - final[..., 2])).mean(-1)
        pyro.deterministic("pro_accuracy", decision[..., 0])
        pyro.deterministic("anti_accuracy", 1 - decision[..., 1])

    def inputs(self, dtype=None, device=None) -> torch.Tensor:
        """Input h(t_k) for k = 0..steps, shape ``(steps + 1, 2, 4)`` (Pro-left, Anti-left)."""
        t = (torch.arange(self.steps + 1, dtype=torch.float64) * self.dt).round(decimals=9)
        options = {"dtype": dtype, "device": device}
        pattern = {
            k: torch.tensor(v, **options)
            for k, v in {"pro": PRO, "anti": ANTI, "left": LEFT}.items()
        }
        cue, choice = (t <= CUE_END).to(**options), (t > CUE_END).to(**options)
        light = ((t > CUE_END) & (t < LIGHT_END)).to(**options)
        common = I_CONSTANT + I_PRO_BIAS * pattern["pro"] + I_CHOICE * choice[:, None]
        common = common + I_LIGHT * light[:, None] * pattern["left"]
        rule = I_RULE * cue[:, None, None] * torch.stack([pattern["pro"], pattern["anti"]])
        return common[:, None, :] + rule

    def simulate(
        self,
        weights: torch.Tensor,
        x0_noise: torch.Tensor,
        xi: torch.Tensor,
        trajectory: bool = True,
    ) -> torch.Tensor:
        """Activity x, shape ``(..., steps + 1, 2, trials, 4)`` (only the final
        ``(..., 2, trials, 4)`` with ``trajectory=False``), for weights ``(..., 4, 4)``, initial
        noise ``(..., 2, trials, 4)`` and step noise ``(..., steps, 2, trials, 4)``."""
        h = self.inputs(weights.dtype, weights.device)[:, :, None, :]
        x = 0.1 + 0.005 * x0_noise
        u = BETA * torch.atanh(2 * x - 1) + THETA
        x = perturb.site("activity", x, t=0.0, populations=POPULATIONS)
        wt = weights.transpose(-1, -2)[..., None, :, :]
        history = [x]
        for k in range(1, self.steps + 1):
            u = u + self.dt / TAU * (-u + x @ wt + h[k] + self.sigma * xi[..., k - 1, :, :, :])
            x = 0.5 * torch.tanh((u - THETA) / BETA) + 0.5
            x = perturb.site("activity", x, t=round(k * self.dt, 9), populations=POPULATIONS)
            if trajectory:
                history.append(x)
        return torch.stack(history, dim=-4) if trajectory else x

    @staticmethod
    def rapid_task_switching():
        """The paper's property: Pro and Anti accuracy 0.75 ± 0.075 each."""
        from pyro_circuits.property import EmergentProperty

        return EmergentProperty(
            mean={"pro_accuracy": 0.75, "anti_accuracy": 0.75},
            variance={"pro_accuracy": 0.075**2, "anti_accuracy": 0.075**2},
        )

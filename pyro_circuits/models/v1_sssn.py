"""Stochastic stabilised supralinear network of V1 with E, P, S and V populations (the EPI
paper's V1 model, Bittner et al. 2021, Fig. 3; Hennequin et al. 2018)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.checks import positive_int, real
from pyro_circuits.handlers import perturb
from pyro_circuits.sites import noise

__all__ = ["H_B", "H_C", "POPULATIONS", "V1SSSN", "W", "W_FIT", "inputs"]

POPULATIONS = ("E", "P", "S", "V")
PARAMS = tuple(f"sigma_{p}" for p in POPULATIONS)
#: The fitted effective connectivity of Palmigiano et al. (2020), rows post, columns pre (eq. 71).
W_FIT = (
    (2.18, -1.19, -0.594, -0.229),
    (1.66, -0.651, -0.680, -0.242),
    (0.895, -5.22e-3, -1.51e-4, -0.761),
    (3.34, -2.31, -0.254, -2.52e-4),
)
#: Rates in Hz (100-fold the fit's): with φ(u) = [u]₊², W = W_fit/10 and h = 10·h_fit (eqs. 74-76).
W = tuple(tuple(w / 10 for w in row) for row in W_FIT)
H_B = (4.16, 4.29, 4.91, 4.86)
H_C = (3.59, 4.03, 0.0, 0.0)
TAU, TAU_NOISE = 1e-3, 5e-3  # s
SIGMA_MAX = 0.5
X0_LOW, X0_HIGH = 10.0, 25.0  # Hz, the range of the initial rates


def inputs(contrast: float, dtype=None, device=None) -> torch.Tensor:
    """Mean input h = h_b + c·h_c to (E, P, S, V) at contrast ``c``, shape ``(4,)``.

    Example:
        >>> inputs(1.0)
        tensor([7.7500, 8.3200, 4.9100, 4.8600])
    """
    options = {"dtype": dtype, "device": device}
    return torch.tensor(H_B, **options) + contrast * torch.tensor(H_C, **options)


class V1SSSN:
    """V1 SSSN: τ dx = (−x + [W x + h + ε]₊²) dt with Ornstein–Uhlenbeck input noise ε.

    Rates x = (x_E, x_P, x_S, x_V) in Hz; W = W_fit/10 and h = h_b + c·h_c (:func:`inputs`),
    τ = 1 ms. Each population's noise follows τ_noise dε = −ε dt + √(2τ_noise) σ̃ dB with
    τ_noise = 5 ms and σ̃ = σ √(1 + τ/τ_noise), so that σ is the standard deviation the noise
    would give the input of an unconnected population (eqs. 68-70). Parameters ``sigma_E``,
    ``sigma_P``, ``sigma_S``, ``sigma_V`` ~ Uniform(0, 0.5). Explicit Euler–Maruyama steps of
    ``dt`` from x(0) ~ U[10, 25] Hz (through the normal CDF of the ``x0_noise`` site) and ε(0) = 0;
    ``trials`` independent trials per parameter draw. Statistic ``s_E``: the temporal standard
    deviation of x_E over t ≥ ``t_ss`` (eq. 77), averaged over trials. Rates pass through
    ``perturb.site("activity", x, t, populations=("E", "P", "S", "V"))`` after each step.

    Arguments:
        contrast: c in h = h_b + c·h_c, in [0, 1] (the paper does not state the value used).
        trials: trials per parameter draw (the paper: 100).
        steps: Euler steps (the paper: 200).
        dt: step (s; the paper: 0.5 ms).
        t_ss: start of the window s_E is measured over (s; the paper: 75 ms).

    Example:
        >>> from pyro_circuits.sites import CircuitProgram
        >>> program = CircuitProgram(V1SSSN(trials=5))
        >>> program.params, program.statistics
        (['sigma_E', 'sigma_P', 'sigma_S', 'sigma_V'], ['s_E'])
    """

    def __init__(
        self,
        contrast: float = 0.0,
        trials: int = 100,
        steps: int = 200,
        dt: float = 5e-4,
        t_ss: float = 0.075,
    ) -> None:
        self.contrast = real("contrast", contrast, low=0.0, high=1.0)
        self.trials = positive_int("trials", trials)
        self.steps = positive_int("steps", steps)
        self.dt = real("dt", dt, low=0.0, low_open=True)
        self.t_ss = real("t_ss", t_ss, low=0.0)
        self.first = math.ceil(round(t_ss / dt, 9))  # first sample at t >= t_ss
        if self.steps - self.first < 1:
            raise ValueError(
                f"t_ss ({t_ss} s) must leave at least two samples before steps · dt "
                f"({steps} × {dt} s) to measure s_E over"
            )

    def __call__(self) -> None:
        prior = dist.Uniform(0.0, SIGMA_MAX)
        sigma = torch.stack(torch.broadcast_tensors(*(pyro.sample(p, prior) for p in PARAMS)), -1)
        x0_noise = noise("x0_noise", (self.trials, len(POPULATIONS)), like=sigma)
        xi = noise("noise", (self.steps, self.trials, len(POPULATIONS)), like=sigma)
        rates = self.simulate(sigma, x0_noise, xi)
        pyro.deterministic("s_E", self.variability(rates))

    def simulate(self, sigma: torch.Tensor, x0_noise: torch.Tensor, xi: torch.Tensor):
        """Rates x (Hz), shape ``(..., steps + 1, trials, 4)``, for noise levels σ ``(..., 4)``,
        initial-rate noise ``(..., trials, 4)`` and step noise ``(..., steps, trials, 4)``.

        σ = 0 runs the deterministic network; ``steps`` of ``dt`` then relax it to its fixed
        point x = [W x + h]₊² where it is stable.
        """
        options = {"dtype": sigma.dtype, "device": sigma.device}
        wt = torch.tensor(W, **options).T
        h = inputs(self.contrast, **options)
        sigma_tilde = sigma[..., None, :] * math.sqrt(1 + TAU / TAU_NOISE)
        kick = sigma_tilde * math.sqrt(2 * self.dt / TAU_NOISE)
        x = X0_LOW + (X0_HIGH - X0_LOW) * torch.special.ndtr(x0_noise)
        x = perturb.site("activity", x, t=0.0, populations=POPULATIONS)
        eps = torch.zeros_like(x)
        history = [x]
        for k in range(self.steps):
            drive = torch.relu(x @ wt + h + eps) ** 2
            x = x + self.dt / TAU * (drive - x)
            eps = eps - self.dt / TAU_NOISE * eps + kick * xi[..., k, :, :]
            x = perturb.site("activity", x, t=round((k + 1) * self.dt, 9), populations=POPULATIONS)
            history.append(x)
        return torch.stack(history, dim=-3)

    def variability(self, rates: torch.Tensor) -> torch.Tensor:
        """s_E: the E rate's standard deviation over samples at t ≥ ``t_ss``, averaged over
        trials, for rates ``(..., steps + 1, trials, 4)``; shape ``(...)``."""
        window = rates[..., self.first :, :, 0]
        return window.var(dim=-2, correction=0).sqrt().mean(-1)

    @staticmethod
    def e_variability(rate: float = 5.0):
        """The paper's property X(rate): s_E = ``rate`` ± 1 Hz (5 Hz and 10 Hz in Fig. 3)."""
        from pyro_circuits.property import EmergentProperty

        return EmergentProperty(mean={"s_E": rate}, variance={"s_E": 1.0})

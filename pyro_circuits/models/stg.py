"""Five-neuron stomatogastric ganglion subcircuit (Gutierrez et al. 2013), the EPI paper's STG."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.handlers import perturb
from pyro_circuits.sites import noise

__all__ = ["NEURONS", "STG", "hub_frequency"]

NEURONS = ("f1", "f2", "hub", "s1", "s2")
# Units: volts, seconds, nS, nA (= nS·V) and nF, so dV/dt [V/s] = I [nA] / C_m [nF].
C_M = 1.0
G_LEAK, G_SYN_B = 0.1, 5.0
G_CA = (19.0, 19.0, 17.0, 8.5, 8.5)
G_K = (39.0, 39.0, 19.0, 15.0, 15.0)
G_H = (25.0, 25.0, 8.0, 10.0, 10.0)
V_LEAK, V_CA, V_K, V_H, V_SYN = -0.040, 0.100, -0.080, -0.020, -0.075
V1, V2, V3, V4, V5, V6, V7, V8, V9 = 0.0, 0.020, 0.0, 0.015, 0.0783, 0.0105, -0.0422, 0.0873, 0.005
V_TH, PHI_N = -0.025, 2.0
SIGMA_I = 1e-3  # nA, i.e. the paper's 1e-12 A
# Initial state [V (5), N (5), H (5)], the reference implementation's fixed x0.
X0 = (
    (-0.04169771, -0.04319491, 0.00883992, -0.06879824, 0.03048103),
    (0.00151316, 0.19784773, 0.56514935, 0.12214069, 0.35290397),
    (0.08614699, 0.04938177, 0.05568701, 0.07007949, 0.05790969),
)
# Gap junctions f2-hub and hub-s2 as a graph Laplacian: I_elec = g_el · L V.
GAP = ((0, 0, 0, 0, 0), (0, 1, -1, 0, 0), (0, -1, 2, 0, -1), (0, 0, 0, 0, 0), (0, 0, -1, 0, 1))
# Synapses post ← pre: hub ← f1, s1 with g_synA; f1 ↔ f2 and s1 ↔ s2 with g_synB.
SYN_A = ((0, 0, 0, 0, 0), (0, 0, 0, 0, 0), (1, 0, 0, 1, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0))
SYN_B = ((0, 1, 0, 0, 0), (1, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 1), (0, 0, 0, 1, 0))
# Every gate is a logistic curve of V, 0.5·(1 + tanh((V − centre)·slope)), so one tanh evaluates
# M∞, N∞, H∞ = 1/(1 + e^((V+v5)/v6)), S∞ = 1/(1 + e^((v_th−V)/v9)) and τ_h's 1/(1 + e^((v7−V)/v8)).
GATE_CENTRE = (V1, V3, -V5, V_TH, V7)
GATE_SLOPE = (1 / V2, 1 / V4, -1 / (2 * V6), 1 / (2 * V9), 1 / (2 * V8))
_CONSTANTS = {"g_ca": G_CA, "g_k": G_K, "g_h": G_H, "gap": GAP, "syn_a": SYN_A, "syn_b": SYN_B}
_CONSTANTS |= {"gate_centre": GATE_CENTRE, "gate_slope": GATE_SLOPE}


def hub_frequency(
    v: torch.Tensor, dt: float, beta: float = 100.0, skip: int = 20, window: int = 20
) -> torch.Tensor:
    """Differentiable dominant frequency (Hz) of voltage traces ``v`` of shape ``(..., time)``.

    The paper's recipe: drop the first ``skip`` samples, rectify, ``window``-sample moving
    average, demean, take moduli of the DFT coefficients at 0, 0.01, …, 1 Hz and return
    ``0.01 · Σ_i i·softmax(beta·|X|)_i``, a soft-argmax over the 101 frequencies.

    Example:
        >>> t = torch.arange(301) * 0.025
        >>> hub_frequency(0.01 * torch.sin(2 * torch.pi * 0.4 * t), dt=0.025, beta=1e4)
        tensor(0.4000)
    """
    x = torch.relu(v[..., skip:]).unfold(-1, window, 1).mean(-1)
    x = x - x.mean(-1, keepdim=True)
    freqs = torch.linspace(0.0, 1.0, 101, dtype=v.dtype, device=v.device)
    phase = 2 * math.pi * dt * torch.arange(x.shape[-1], dtype=v.dtype, device=v.device)
    phase = phase[:, None] * freqs
    real, imag = x @ torch.cos(phase), x @ torch.sin(phase)
    modulus = torch.sqrt(real**2 + imag**2 + 1e-12)  # the offset keeps gradients finite at 0
    weights = torch.softmax(beta * modulus, dim=-1)
    return (weights * freqs).sum(-1)


def _inward_current(v, n, h, g_el, g_syn_a, const):
    """−I_total (nA) at state (V, N, H) and the gates, ``(..., 5, 5)``: M∞, N∞, H∞, S∞, σ_h."""
    gates = 0.5 + 0.5 * torch.tanh((v[..., None] - const["gate_centre"]) * const["gate_slope"])
    m_inf, _, _, s_inf, _ = gates.unbind(-1)
    synapse = s_inf @ const["syn_b"] + g_syn_a * (s_inf @ const["syn_a"])
    total = (
        G_LEAK * (v - V_LEAK)
        + const["g_ca"] * m_inf * (v - V_CA)
        + const["g_k"] * n * (v - V_K)
        + const["g_h"] * h * (v - V_H)
        + g_el * (v @ const["gap"])
        + synapse * (v - V_SYN)
    )
    return -total, gates


def _update(v, n, h, current, gates, dt):
    """One Euler step of (V, N, H) given the net current (nA) and the gates at V."""
    _, n_inf, h_inf, _, sigma_h = gates.unbind(-1)
    rate_n = PHI_N * torch.cosh((v - V3) / (2 * V4))
    tau_h = (272 + 1499 * sigma_h) / 1000
    return v + dt * current / C_M, n + dt * rate_n * (n_inf - n), h + dt * (h_inf - h) / tau_h


class STG:
    """Stomatogastric ganglion: 5 conductance-based neurons, 15-dimensional state (V, N, H).

    Parameters: ``g_el`` ~ Uniform(4, 8) nS (gap junctions f2–hub–s2) and ``g_synA`` ~
    Uniform(0.01, 4) nS (inhibition of the hub by f1 and s1). C_m dV/dt = −I(V, N, H) + σ_I ξ
    with σ_I = 1e-12 A, Euler steps of ``dt`` seconds from the reference's fixed initial state
    (Bittner et al. 2021, "STG model"). Statistic ``hub_freq``: the hub's frequency by
    :func:`hub_frequency`. Each neuron's net membrane current (nA) passes through the
    perturbation point ``perturb.site("current", ...)``, so ``optogenetic(..., current=c)``
    injects ``c`` nA and ``gain`` scales the net current.

    Arguments:
        dt: Euler step (s); the paper uses 0.025.
        steps: number of Euler steps (the paper: 300, i.e. 7.5 s); at least 40.
        beta: soft-argmax inverse temperature (the paper: 100; the reference code used 500).

    Example:
        >>> from pyro_circuits.sites import CircuitProgram
        >>> program = CircuitProgram(STG(steps=60))
        >>> program.params, program.statistics
        (['g_el', 'g_synA'], ['hub_freq'])
    """

    def __init__(self, dt: float = 0.025, steps: int = 300, beta: float = 100.0) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        if not isinstance(steps, int) or steps < 40:
            raise ValueError(f"steps must be an integer >= 40, got {steps!r}")
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.dt, self.steps, self.beta = dt, steps, beta

    def __call__(self) -> None:
        g_el = pyro.sample("g_el", dist.Uniform(4.0, 8.0))
        g_syn_a = pyro.sample("g_synA", dist.Uniform(0.01, 4.0))
        xi = noise("noise", (self.steps, len(NEURONS)), like=g_el)
        v = self.simulate(g_el, g_syn_a, xi)
        pyro.deterministic("hub_freq", hub_frequency(v[..., 2], self.dt, self.beta))

    def simulate(self, g_el: torch.Tensor, g_syn_a: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """Membrane potentials (V), shape ``(..., steps + 1, 5)``, for noise ``(..., steps, 5)``."""
        options = {"dtype": g_el.dtype, "device": g_el.device}
        const = {k: torch.tensor(v, **options) for k, v in _CONSTANTS.items()}
        # Coupling as right-multiplications of row vectors: (V @ M)[post] = Σ_pre M[pre, post] V[pre].
        const |= {
            "gap": const["gap"].T,
            "syn_a": const["syn_a"].T,
            "syn_b": G_SYN_B * const["syn_b"].T,
        }
        g_el, g_syn_a = g_el[..., None], g_syn_a[..., None]
        v, n, h = (torch.tensor(x, **options) for x in X0)
        history = [v.expand(*g_el.shape[:-1], 5)]
        for k in range(self.steps):
            inward, gates = _inward_current(v, n, h, g_el, g_syn_a, const)
            current = perturb.site(
                "current",
                inward + SIGMA_I * xi[..., k, :],
                t=round(k * self.dt, 9),
                populations=NEURONS,
            )
            v, n, h = _update(v, n, h, current, gates, self.dt)
            history.append(v)
        return torch.stack(history, dim=-2)

    @staticmethod
    def intermediate_hub_frequency():
        """The paper's property: hub frequency 0.55 ± 0.025 Hz."""
        from pyro_circuits.property import EmergentProperty

        return EmergentProperty(mean={"hub_freq": 0.55}, variance={"hub_freq": 0.025**2})

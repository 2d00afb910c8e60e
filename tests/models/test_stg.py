"""Tests for the STG model: an independent numpy re-implementation, gradients, perturbations."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.handlers import perturb
from pyro_circuits.models.stg import STG, hub_frequency
from pyro_circuits.sites import CircuitProgram

THETA = {"g_el": 5.5, "g_synA": 1.25}


def numpy_hub_frequency(g_el, g_syn_a, xi, dt=0.025, beta=100.0):
    """Straightforward float64 transcription of the paper's equations (41)-(58), one neuron at a
    time, in SI units (V, S, A, F)."""
    c_m, g_leak, g_syn_b, sigma = 1e-9, 1e-10, 5e-9, 1e-12
    g_el, g_syn_a = g_el * 1e-9, g_syn_a * 1e-9
    g_ca = [1.9e-8, 1.9e-8, 1.7e-8, 8.5e-9, 8.5e-9]
    g_k = [3.9e-8, 3.9e-8, 1.9e-8, 1.5e-8, 1.5e-8]
    g_h = [2.5e-8, 2.5e-8, 8.0e-9, 1.0e-8, 1.0e-8]
    V = [-0.04169771, -0.04319491, 0.00883992, -0.06879824, 0.03048103]
    N = [0.00151316, 0.19784773, 0.56514935, 0.12214069, 0.35290397]
    H = [0.08614699, 0.04938177, 0.05568701, 0.07007949, 0.05790969]
    hub = [V[2]]
    for k in range(xi.shape[0]):
        S = [1 / (1 + math.exp((-0.025 - v) / 0.005)) for v in V]
        elec = [
            0.0,
            g_el * (V[1] - V[2]),
            g_el * (2 * V[2] - V[1] - V[4]),
            0.0,
            g_el * (V[4] - V[2]),
        ]
        pre = [
            g_syn_b * S[1],
            g_syn_b * S[0],
            g_syn_a * (S[0] + S[3]),
            g_syn_b * S[4],
            g_syn_b * S[3],
        ]
        newV, newN, newH = [], [], []
        for i, v in enumerate(V):
            m_inf = 0.5 * (1 + math.tanh(v / 0.020))
            n_inf = 0.5 * (1 + math.tanh(v / 0.015))
            h_inf = 1 / (1 + math.exp((v + 0.0783) / 0.0105))
            current = (
                g_leak * (v + 0.040)
                + g_ca[i] * m_inf * (v - 0.100)
                + g_k[i] * N[i] * (v + 0.080)
                + g_h[i] * H[i] * (v + 0.020)
                + elec[i]
                + pre[i] * (v + 0.075)
            )
            newV.append(v + dt * (-current + sigma * xi[k, i]) / c_m)
            newN.append(N[i] + dt * 2 * math.cosh(v / 0.030) * (n_inf - N[i]))
            newH.append(
                H[i]
                + dt * (h_inf - H[i]) * 1000 / (272 + 1499 / (1 + math.exp((-v - 0.0422) / 0.0873)))
            )
        V, N, H = newV, newN, newH
        hub.append(V[2])
    x = np.maximum(np.array(hub)[20:], 0.0)
    x = np.convolve(x, np.ones(20) / 20, mode="valid")
    x = x - x.mean()
    freqs = np.arange(101) / 100
    coefficients = np.exp(-2j * np.pi * np.outer(freqs, np.arange(len(x)) * dt)) @ x
    weights = np.exp(beta * np.abs(coefficients) - beta * np.abs(coefficients).max())
    return float((weights / weights.sum()) @ freqs)


def run(model, theta, xi, **handlers):
    data = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in theta.items()} | {"noise": xi}
    return poutine.trace(poutine.condition(model, data=data)).get_trace().nodes["hub_freq"]["value"]


def test_hub_frequency_matches_numpy_reimplementation():
    xi = torch.randn(300, 5, dtype=torch.float64)
    value = run(STG(), THETA, xi)
    expected = numpy_hub_frequency(THETA["g_el"], THETA["g_synA"], xi.numpy())
    assert 0.35 < expected < 0.7
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_hub_frequency_of_a_pure_tone():
    """A positive tone passes the rectifier unchanged; its DFT peaks at its own frequency, up to
    spectral leakage of one 0.01 Hz bin over the 6.55 s analysis window."""
    t = torch.arange(301, dtype=torch.float64) * 0.025
    for f in (0.3, 0.45, 0.55, 0.7, 0.9):
        tone = 0.02 + 0.01 * torch.sin(2 * torch.pi * f * t)
        assert hub_frequency(tone, 0.025, beta=1e4).item() == pytest.approx(f, abs=0.0101)


def test_gradients_finite_and_match_finite_differences():
    xi = torch.randn(300, 5, dtype=torch.float64)
    theta = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in THETA.items()}
    (grads) = torch.autograd.grad(run(STG(), theta, xi), list(theta.values()))
    eps = 1e-5
    for (name, value), grad in zip(theta.items(), grads, strict=True):
        up = run(STG(), THETA | {name: value.item() + eps}, xi)
        down = run(STG(), THETA | {name: value.item() - eps}, xi)
        assert torch.isfinite(grad)
        assert grad.item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-3, abs=1e-6)


def test_vectorised_over_particles():
    program = CircuitProgram(STG(steps=60))
    values = {"g_el": torch.tensor([4.5, 6.0, 7.5]), "g_synA": torch.tensor([0.5, 1.0, 3.0])}
    pyro.set_rng_seed(1)
    batched = program.simulate(values)["hub_freq"]
    model, xi = STG(steps=60), torch.randn(3, 60, 5)
    together = model.simulate(values["g_el"], values["g_synA"], xi)
    apart = [model.simulate(values["g_el"][i], values["g_synA"][i], xi[i]) for i in range(3)]
    assert batched.shape == (3,)
    torch.testing.assert_close(together, torch.stack(apart), rtol=1e-5, atol=1e-7)


def test_current_injection_through_the_perturbation_point():
    model, xi = STG(), torch.randn(300, 5, dtype=torch.float64)
    base = run(model, THETA, xi)
    with perturb.optogenetic("hub", window=(100.0, 200.0), current=0.05):
        assert run(model, THETA, xi) == base
    with perturb.optogenetic("hub", current=-0.05):
        assert run(model, THETA, xi) != base

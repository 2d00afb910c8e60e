"""Tests for the V1 SSSN: hand-computed Euler steps, s_E, broadcasting, the fixed point."""

import math

import numpy as np
import pytest
import torch
from pyro import poutine
from scipy import optimize
from scipy.stats import norm

from pyro_circuits.models.v1_sssn import H_B, H_C, PARAMS, V1SSSN, W_FIT
from pyro_circuits.sites import CircuitProgram

SIGMA = (0.3, 0.2, 0.1, 0.05)


def hand_steps(sigma, x0_noise, xi, contrast, dt=5e-4):
    """Euler–Maruyama of eqs. (68)-(70), written out one population and one term at a time
    from the paper's W_fit, h_b,fit and h_c (float64), for one trial."""
    tau, tau_noise = 1e-3, 5e-3
    w = [[W_FIT[a][b] / 10 for b in range(4)] for a in range(4)]
    h = [H_B[a] + contrast * H_C[a] for a in range(4)]
    x = [10 + 15 * norm.cdf(x0_noise[a]) for a in range(4)]
    eps = [0.0] * 4
    out = [list(x)]
    for k in range(len(xi)):
        new_x, new_eps = [], []
        for a in range(4):
            u = sum(w[a][b] * x[b] for b in range(4)) + h[a] + eps[a]
            new_x.append(x[a] + dt / tau * (-x[a] + max(u, 0.0) ** 2))
            sigma_tilde = sigma[a] * math.sqrt(1 + tau / tau_noise)
            new_eps.append(
                eps[a]
                - dt / tau_noise * eps[a]
                + sigma_tilde * math.sqrt(2 * dt / tau_noise) * xi[k][a]
            )
        x, eps = new_x, new_eps
        out.append(list(x))
    return np.array(out)


@pytest.mark.parametrize("contrast", [0.0, 0.7])
def test_three_euler_steps_match_hand_computation(contrast):
    g = torch.Generator().manual_seed(0)
    x0_noise = torch.randn(2, 4, generator=g, dtype=torch.float64)
    xi = 3 * torch.randn(3, 2, 4, generator=g, dtype=torch.float64)  # large kicks: ε matters
    model = V1SSSN(contrast=contrast, trials=2, steps=3, t_ss=1e-3)
    rates = model.simulate(torch.tensor(SIGMA, dtype=torch.float64), x0_noise, xi)
    assert rates.shape == (4, 2, 4)
    for trial in range(2):
        expected = hand_steps(SIGMA, x0_noise[trial].numpy(), xi[:, trial].numpy(), contrast)
        np.testing.assert_allclose(rates[:, trial].numpy(), expected, rtol=1e-12)


def test_s_e_is_the_temporal_std_after_t_ss_averaged_over_trials():
    model = V1SSSN(trials=3, steps=20, t_ss=4e-3)  # samples k = 8..20 lie at t >= 4 ms
    values = {
        name: torch.tensor(s, dtype=torch.float64) for name, s in zip(PARAMS, SIGMA, strict=True)
    }
    trace = poutine.trace(poutine.condition(model, data=values)).get_trace()
    nodes = trace.nodes
    sigma = torch.tensor(SIGMA, dtype=torch.float64)
    rates = model.simulate(sigma, nodes["x0_noise"]["value"], nodes["noise"]["value"])
    x_e = rates[8:, :, 0].numpy()
    expected = np.std(x_e, axis=0).mean()
    assert nodes["s_E"]["value"].item() == pytest.approx(expected, rel=1e-10)


def test_particles_broadcast_like_separate_runs():
    g = torch.Generator().manual_seed(1)
    sigma = 0.5 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    x0_noise = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    xi = torch.randn(3, 30, 5, 4, generator=g, dtype=torch.float64)
    model = V1SSSN(trials=5, steps=30, t_ss=0.01)
    batch = model.simulate(sigma, x0_noise, xi)
    assert batch.shape == (3, 31, 5, 4)
    for i in range(3):
        torch.testing.assert_close(batch[i], model.simulate(sigma[i], x0_noise[i], xi[i]))
    stats = CircuitProgram(V1SSSN(trials=5, steps=30, t_ss=0.01)).simulate(
        {name: torch.full((7,), 0.1) for name in PARAMS}
    )
    assert stats["s_E"].shape == (7,) and bool((stats["s_E"] > 0).all())


@pytest.mark.parametrize("contrast", [0.0, 0.5, 1.0])
def test_noiseless_network_relaxes_to_the_root_of_the_fixed_point_equation(contrast):
    model = V1SSSN(contrast=contrast, trials=4, steps=400, t_ss=0.15)  # s_E over 150-200 ms
    g = torch.Generator().manual_seed(2)
    x0_noise = torch.randn(4, 4, generator=g, dtype=torch.float64)
    rates = model.simulate(
        torch.zeros(4, dtype=torch.float64), x0_noise, torch.randn(400, 4, 4, dtype=torch.float64)
    )
    w = np.array(W_FIT) / 10
    h = np.array(H_B) + contrast * np.array(H_C)
    root = optimize.root(lambda r: r - np.maximum(w @ r + h, 0) ** 2, np.full(4, 15.0)).x
    assert np.allclose(root, np.maximum(w @ root + h, 0) ** 2)
    for trial in range(4):  # every initial condition in U[10, 25] Hz reaches it
        np.testing.assert_allclose(rates[-1, trial].numpy(), root, rtol=1e-6)
    with torch.no_grad():
        s_e = model.variability(rates)
    assert float(s_e) < 1e-4  # no noise: no variability once the transient has decayed


def test_noise_raises_variability_and_the_gradient_is_finite():
    sigma = torch.tensor([[0.02] * 4, [0.1] * 4], requires_grad=True)
    model = V1SSSN(trials=20)
    g = torch.Generator().manual_seed(3)
    x0_noise, xi = torch.randn(2, 20, 4, generator=g), torch.randn(2, 200, 20, 4, generator=g)
    s_e = model.variability(model.simulate(sigma, x0_noise, xi))
    assert s_e[1] > 2 * s_e[0]
    (grad,) = torch.autograd.grad(s_e.sum(), sigma)
    assert bool(torch.isfinite(grad).all()) and bool((grad[:, :2] > 0).all())


def test_property_is_the_papers():
    prop = V1SSSN.e_variability(10.0)
    assert prop.mean["s_E"].item() == 10.0 and prop.variance["s_E"].item() == 1.0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"contrast": 1.5}, ValueError),
        ({"contrast": "high"}, TypeError),
        ({"trials": 0}, ValueError),
        ({"steps": 2.5}, TypeError),
        ({"dt": 0.0}, ValueError),
        ({"t_ss": -1.0}, ValueError),
        ({"t_ss": 0.2}, ValueError),  # past the end of the 100 ms simulation
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        V1SSSN(**kwargs)

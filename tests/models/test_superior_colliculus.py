"""Tests for the superior colliculus model: numpy re-implementation, gradients, optogenetics."""

import numpy as np
import pytest
import torch
from pyro import poutine

from pyro_circuits.handlers import perturb
from pyro_circuits.models.superior_colliculus import POPULATIONS, SuperiorColliculus, connectivity
from pyro_circuits.sites import CircuitProgram

THETA = {"sW": 0.88, "vW": -1.88, "dW": -1.65, "hW": -1.48}
TRIALS = 20


def numpy_accuracies(z, x0_noise, xi, dt=0.024, gamma=0.0, window=(0.8, 1.2)):
    """Float64 transcription of the paper's equations (87)-(102) and (110), one condition and
    one population at a time. Order LP, LA, RP, RA."""
    s, v, d, h = z["sW"], z["vW"], z["dW"], z["hW"]
    W = np.array([[s, v, h, d], [v, s, d, h], [h, d, s, v], [d, h, v, s]])
    accuracies = []
    for c, rule in enumerate(([1, 0, 1, 0], [0, 1, 0, 1])):
        x = 0.1 + 0.005 * x0_noise[c]  # (trials, 4)
        u = 0.5 * np.arctanh(2 * x - 1) + 0.05
        for k in range(1, 76):
            t = k * dt
            inp = np.full(4, 0.75) + 0.5 * np.array([1, 0, 1, 0])
            if t <= 1.2 + 1e-9:
                inp = inp + 0.6 * np.array(rule)
            else:
                inp = inp + 0.25
                if t < 1.5:
                    inp = inp + 0.5 * np.array([1, 1, 0, 0])
            u = u + dt / 0.09 * (-u + x @ W.T + inp + 0.2 * xi[k - 1, c])
            x = 0.5 * np.tanh((u - 0.05) / 0.5) + 0.5
            if window[0] - 1e-9 <= t < window[1] - 1e-9:
                x = (1 - gamma) * x
        left_wins = 1 / (1 + np.exp(-100 * (x[:, 0] - x[:, 2])))
        accuracies.append(left_wins.mean() if c == 0 else 1 - left_wins.mean())
    return accuracies


def noise(seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, TRIALS, 4, generator=g, dtype=torch.float64)
    return x0, torch.randn(75, 2, TRIALS, 4, generator=g, dtype=torch.float64)


def run(theta, x0, xi):
    data = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in theta.items()}
    data |= {"x0_noise": x0, "noise": xi}
    model = poutine.condition(SuperiorColliculus(trials=TRIALS), data=data)
    nodes = poutine.trace(model).get_trace().nodes
    return torch.stack([nodes["pro_accuracy"]["value"], nodes["anti_accuracy"]["value"]])


def test_connectivity_is_the_papers_matrix():
    W = connectivity(*torch.tensor([1.0, 2.0, 3.0, 4.0]))  # sW, vW, dW, hW
    expected = torch.tensor([[1.0, 2, 4, 3], [2, 1, 3, 4], [4, 3, 1, 2], [3, 4, 2, 1]])
    torch.testing.assert_close(W, expected)


def test_inputs_per_task_period():
    h = SuperiorColliculus().inputs()
    cue_pro, cue_anti = [1.85, 0.75, 1.85, 0.75], [1.25, 1.35, 1.25, 1.35]
    torch.testing.assert_close(h[50], torch.tensor([cue_pro, cue_anti]))  # t = 1.2 s: cue still on
    light = torch.tensor([2.0, 1.5, 1.5, 1.0])  # constant + bias + choice + light (left)
    torch.testing.assert_close(h[51], torch.stack([light, light]))
    torch.testing.assert_close(h[63], torch.tensor([1.5, 1.0, 1.5, 1.0]).expand(2, 4))  # t > 1.5 s


@pytest.mark.parametrize("gamma", [0.0, 0.675])
def test_accuracies_match_numpy_reimplementation(gamma):
    x0, xi = noise()
    with perturb.optogenetic(POPULATIONS, window=(0.8, 1.2), gain=gamma):
        value = run(THETA, x0, xi)
    expected = numpy_accuracies(THETA, x0.numpy(), xi.numpy(), gamma=gamma)
    torch.testing.assert_close(
        value, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_gradients_finite_and_match_finite_differences():
    x0, xi = noise(1)
    theta = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in THETA.items()}
    value = run(theta, x0, xi)
    eps = 1e-6
    for i in range(2):
        grads = torch.autograd.grad(value[i], list(theta.values()), retain_graph=True)
        for (name, param), grad in zip(theta.items(), grads, strict=True):
            up = run(THETA | {name: param.item() + eps}, x0, xi)[i]
            down = run(THETA | {name: param.item() - eps}, x0, xi)[i]
            assert torch.isfinite(grad)
            assert grad.item() == pytest.approx(
                ((up - down) / (2 * eps)).item(), rel=1e-4, abs=1e-7
            )


def simulate(x0, xi, **optogenetic):
    model = SuperiorColliculus(trials=TRIALS)
    weights = connectivity(*(torch.tensor(v, dtype=torch.float64) for v in THETA.values()))
    if not optogenetic:
        return model.simulate(weights, x0, xi)
    with perturb.optogenetic(**optogenetic):
        return model.simulate(weights, x0, xi)


def test_silencing_is_exact_inside_and_inert_outside_the_window():
    x0, xi = noise()
    base = simulate(x0, xi)
    late = simulate(x0, xi, target=POPULATIONS, window=(5.0, 6.0), gain=0.675)
    torch.testing.assert_close(late, base, rtol=0, atol=0)
    silenced = simulate(x0, xi, target=["LA", "RA"], window=(0.8, 1.2), gain=0.675)
    first = 34  # first step with t >= 0.8 s (34 × 24 ms = 0.816 s)
    torch.testing.assert_close(silenced[:first], base[:first], rtol=0, atol=0)
    expected = base[first] * torch.tensor([1.0, 1 - 0.675, 1.0, 1 - 0.675], dtype=torch.float64)
    torch.testing.assert_close(silenced[first], expected, rtol=0, atol=0)
    assert not torch.equal(silenced[-1], base[-1])


def test_delay_silencing_is_vectorised_under_the_particle_plate():
    program = CircuitProgram(SuperiorColliculus(trials=TRIALS))
    values = {k: torch.full((3,), v) for k, v in THETA.items()}
    with perturb.optogenetic(POPULATIONS, window=(0.8, 1.2), gain=0.9):
        stats = program.simulate(values)
    assert stats["anti_accuracy"].shape == (3,)


def test_stimulus_gradient_matches_finite_differences():
    x0, xi = noise(2)
    data = {k: torch.tensor(v, dtype=torch.float64) for k, v in THETA.items()}
    model = poutine.condition(
        SuperiorColliculus(trials=TRIALS), data=data | {"x0_noise": x0, "noise": xi}
    )
    args = (model, "anti_accuracy", POPULATIONS, (0.8, 1.2))
    grad = perturb.stimulus_gradient(*args, gain=torch.tensor(0.5, dtype=torch.float64))

    def anti(gain):
        with perturb.optogenetic(POPULATIONS, (0.8, 1.2), gain=gain):
            return poutine.trace(model).get_trace().nodes["anti_accuracy"]["value"]

    assert grad.item() == pytest.approx(
        ((anti(0.5 + 1e-6) - anti(0.5 - 1e-6)) / 2e-6).item(), rel=1e-4
    )

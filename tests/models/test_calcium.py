import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.models.calcium import (
    CalciumFluorescence,
    ar1_calcium,
    fluorescence_from_spikes,
)


def spike_trains(trials=3, steps=40, neurons=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full((trials, steps, neurons), 0.3), generator=generator)


@pytest.mark.parametrize("tau", [0.1, 0.4, 1.0])
def test_impulse_response_decays_with_tau(tau):
    dt, alpha, onset = 0.01, 2.0, 5
    steps = onset + round(2 * tau / dt)
    spikes = torch.zeros(1, steps, 1, dtype=torch.float64)
    spikes[0, onset] = 1.0
    calcium, _ = fluorescence_from_spikes(spikes, dt=dt, tau=tau, alpha=alpha, sigma=0.0)
    trace = calcium[0, :, 0]
    assert (trace[:onset] == 0).all()
    k = torch.arange(steps - onset, dtype=torch.float64)
    # Exactly the discrete AR(1) kernel α (1 - dt/τ)^k ...
    torch.testing.assert_close(trace[onset:], alpha * (1 - dt / tau) ** k)
    # ... whose fitted time constant is τ up to the Euler error (-log(1 - x) ≈ x + x²/2).
    slope = np.polyfit((k * dt).numpy(), np.log(trace[onset:].numpy()), 1)[0]
    assert -1 / slope == pytest.approx(tau, rel=dt / tau)
    assert trace[onset + round(tau / dt)] == pytest.approx(alpha * math.exp(-1), rel=dt / tau)


def test_generator_is_seeded_and_adds_noise_of_scale_sigma():
    spikes = spike_trains(trials=20, steps=50)
    calcium, fluor = fluorescence_from_spikes(spikes, sigma=0.2, seed=3)
    torch.testing.assert_close(fluor, fluorescence_from_spikes(spikes, sigma=0.2, seed=3)[1])
    assert not torch.equal(fluor, fluorescence_from_spikes(spikes, sigma=0.2, seed=4)[1])
    assert (fluor - calcium).std().item() == pytest.approx(0.2, rel=0.05)


def test_baseline_adds_a_constant_drive():
    spikes = torch.zeros(1, 400, 1)
    calcium = ar1_calcium(spikes, dt=0.01, tau=0.4, beta=0.05)
    # Steady state of c = c (1 - dt/τ) + β is β τ / dt.
    assert calcium[0, -1, 0].item() == pytest.approx(0.05 * 0.4 / 0.01, rel=1e-3)


@pytest.mark.parametrize("learn", [(), ("tau", "alpha", "beta")])
def test_model_mean_equals_generator_calcium(learn):
    spikes = spike_trains()
    settings = dict(dt=0.02, tau=0.3, alpha=1.5, beta=0.1)
    calcium, fluor = fluorescence_from_spikes(spikes, sigma=0.2, seed=1, **settings)
    model = CalciumFluorescence(4, sigma=0.2, learn=learn, **settings)
    trace = poutine.trace(model).get_trace(spikes, fluor)
    torch.testing.assert_close(trace.nodes["calcium"]["value"], calcium)
    expected = torch.distributions.Normal(calcium, 0.2).log_prob(fluor).sum()
    torch.testing.assert_close(trace.log_prob_sum(), expected)


def test_model_broadcasts_over_leading_particles():
    spikes = spike_trains()
    particles = torch.stack([spikes, 2 * spikes])
    _, fluor = fluorescence_from_spikes(spikes, seed=0)
    trace = poutine.trace(CalciumFluorescence(4)).get_trace(particles, fluor)
    calcium = trace.nodes["calcium"]["value"]
    torch.testing.assert_close(
        calcium, torch.stack([ar1_calcium(s, dt=0.01, tau=0.4) for s in particles])
    )
    assert trace.nodes["fluorescence"]["fn"].batch_shape == (2, 3)


def test_prior_predictive_samples_fluorescence():
    spikes = spike_trains()
    pyro.set_rng_seed(0)
    samples = pyro.infer.Predictive(CalciumFluorescence(4), num_samples=2)(spikes)
    assert samples["fluorescence"].shape == (2, *spikes.shape)


def loss_and_grads(model, spikes, fluor):
    loss = -poutine.trace(model).get_trace(spikes, fluor).log_prob_sum()
    return loss, torch.autograd.grad(loss, list(model.parameters()))


def test_nan_frames_are_masked():
    spikes = spike_trains()
    _, fluor = fluorescence_from_spikes(spikes, seed=2)
    model = CalciumFluorescence(4, learn=("tau", "alpha", "beta"))
    missing = fluor.clone()
    missing[:, -5:] = float("nan")  # whole trailing frames
    missing[1, 10, 2] = float("nan")  # one entry
    loss, grads = loss_and_grads(model, spikes, missing)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(grad).all() for grad in grads)

    # Equal to the loss on the recording with those frames removed ...
    kept = fluor[:, :-5].clone()
    kept[1, 10, 2] = float("nan")
    kept_loss, kept_grads = loss_and_grads(model, spikes[:, :-5], kept)
    torch.testing.assert_close(loss, kept_loss)
    for grad, kept_grad in zip(grads, kept_grads, strict=True):
        torch.testing.assert_close(grad, kept_grad)
    # ... and to the Gaussian log-likelihood summed over the observed entries only.
    observed = ~torch.isnan(missing)
    normal = torch.distributions.Normal(model.calcium(spikes), model.sigma)
    torch.testing.assert_close(loss, -normal.log_prob(fluor)[observed].sum())


def test_sigma_is_learned_by_default_and_fixed_on_request():
    learned = CalciumFluorescence(3, sigma=0.3)
    assert [name for name, _ in learned.named_parameters()] == ["sigma_unconstrained"]
    fixed = CalciumFluorescence(3, sigma=0.3, learn=())
    assert list(fixed.parameters()) == []
    torch.testing.assert_close(fixed.sigma, torch.full((3,), 0.3))


def test_innovation_recovers_the_spikes_of_noiseless_calcium():
    spikes = spike_trains()
    settings = dict(dt=0.02, tau=0.3, alpha=1.5, beta=0.1)
    calcium, _ = fluorescence_from_spikes(spikes, sigma=0.0, **settings)
    model = CalciumFluorescence(4, learn=(), **settings)
    torch.testing.assert_close(model.innovation(calcium), 1.5 * spikes + 0.1)


def test_learned_tau_and_alpha_are_recovered():
    spikes = spike_trains(trials=4, steps=60)
    _, fluor = fluorescence_from_spikes(spikes, tau=0.3, alpha=1.0, sigma=0.1, seed=0)
    model = CalciumFluorescence(4, tau=0.6, alpha=0.7, learn=("tau", "alpha"))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        optimizer.zero_grad()
        (-poutine.trace(model).get_trace(spikes, fluor).log_prob_sum()).backward()
        optimizer.step()
    assert (model.tau > model.dt).all()
    torch.testing.assert_close(model.tau.detach(), torch.full((4,), 0.3), rtol=0.03, atol=0)
    torch.testing.assert_close(model.alpha.detach(), torch.ones(4), rtol=0.05, atol=0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fluorescence_from_spikes(torch.zeros(5, 3), seed=0), "trials, time, neurons"),
        (lambda: fluorescence_from_spikes(torch.zeros(1, 5, 3), tau=-0.4), "tau"),
        (lambda: fluorescence_from_spikes(torch.zeros(1, 5, 3), tau=0.005), "tau"),
        (lambda: fluorescence_from_spikes(torch.zeros(1, 5, 3), dt=0.0), "dt"),
        (lambda: fluorescence_from_spikes(torch.zeros(1, 5, 3), sigma=-1.0), "sigma"),
        (lambda: CalciumFluorescence(3, tau=-1.0), "tau"),
        (lambda: CalciumFluorescence(0), "n_neurons"),
        (lambda: CalciumFluorescence(3, alpha=0.0), "alpha"),
        (lambda: CalciumFluorescence(3, learn=("gain",)), "learn"),
        (lambda: CalciumFluorescence(3)(torch.zeros(2, 5, 4)), "neurons"),
        (lambda: CalciumFluorescence(3)(torch.zeros(2, 5, 3), torch.zeros(2, 4, 3)), "shape"),
        (
            lambda: CalciumFluorescence(3)(torch.zeros(2, 5, 3), torch.full((2, 5, 3), math.inf)),
            "inf",
        ),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_moments_match_poisson_spikes_through_the_calcium():
    """Mean and variance of AR(1) calcium of Poisson spikes, against 20,000 simulated trains."""
    model = CalciumFluorescence(2, dt=0.01, tau=0.1, alpha=1.5, beta=0.1)
    rates = torch.tensor([[2.0, 0.5]]).expand(30, 2).clone()
    rates[10:15] = 8.0  # a transient: the variance follows the rate history, not the rate
    expected = rates * 0.1  # means per frame (dt·λ with λ in units of 1/frame × 10)
    mean, variance = model.moments(expected)
    generator = torch.Generator().manual_seed(0)
    draws = torch.poisson(expected.expand(20_000, 30, 2), generator=generator)
    calcium = model.calcium(draws)
    torch.testing.assert_close(calcium.mean(0), mean, rtol=0.02, atol=0.02)
    torch.testing.assert_close(calcium.var(0), variance, rtol=0.05, atol=0.01)


def test_negative_spikes_are_an_error_not_negative_calcium():
    spikes = spike_trains()
    spikes[0, 3, 1] = -1.0
    with pytest.raises(ValueError, match="spikes must be non-negative"):
        ar1_calcium(spikes, dt=0.01, tau=0.4)
    with pytest.raises(ValueError, match="spikes must be non-negative"):
        fluorescence_from_spikes(spikes)
    model = CalciumFluorescence(n_neurons=4)
    with pytest.raises(ValueError, match="spikes must be non-negative"):
        model(spikes)
    with pytest.raises(ValueError, match="spikes must be non-negative"):
        model.calcium(spikes)
    with pytest.raises(TypeError, match="spikes must be a torch.Tensor"):
        ar1_calcium(spikes.tolist(), dt=0.01, tau=0.4)


def test_valid_spikes_give_the_same_calcium_as_the_recursion():
    spikes = spike_trains()
    calcium = ar1_calcium(spikes, dt=0.01, tau=0.4, alpha=1.5, beta=0.1)
    c, expected = torch.zeros(spikes.shape[0], spikes.shape[2]), []
    decay, drive = 1 - 0.01 / torch.tensor(0.4), 1.5 * spikes + 0.1
    for t in range(spikes.shape[1]):
        c = c * decay + drive[:, t]
        expected.append(c)
    assert torch.equal(calcium, torch.stack(expected, 1))

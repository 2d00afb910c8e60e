import pytest
import torch

from pyro_circuits import baselines, metrics
from pyro_circuits.datasets import SpikeData, lorenz


@pytest.fixture(scope="module")
def data():
    return lorenz(n_conditions=10, n_trials=10, n_neurons=20, n_bins=50, n_heldout=5, seed=3)


def test_smoothing_returns_the_rate_of_constant_spiking():
    counts = torch.ones(4, 30, 3)
    fit = baselines.gaussian_smoothing(SpikeData(counts, dt=0.02, heldout=[2]), sigma=3.0)
    rates, latents = fit.predict(counts[..., :2])
    torch.testing.assert_close(rates, torch.full((4, 30, 3), 50.0), rtol=1e-3, atol=1e-3)
    assert latents.shape == (4, 30, 2)


def test_baselines_predict_held_out_neurons_better_than_the_null(data):
    heldin_valid = data.valid.counts[..., data.heldin]
    smooth = baselines.gaussian_smoothing(data, sigma=3.0)
    rates, _ = smooth.predict(heldin_valid)
    assert metrics.co_bps(rates, data.valid.counts, data.heldout, data.dt) > 0
    s2s = baselines.seq2seq(data, n_latents=4, n_iterations=150, seed=0)
    rates, latents = s2s.predict(heldin_valid)
    assert rates.shape == (20, 50, 5) and latents.shape == (20, 50, 4)
    assert metrics.bits_per_spike(rates, data.valid.counts[..., data.heldout], data.dt) > 0


def test_seq2seq_is_seeded_and_checks_its_arguments(data):
    a = baselines.seq2seq(data, n_latents=2, n_iterations=3, seed=1).predict(
        data.valid.counts[..., data.heldin]
    )
    b = baselines.seq2seq(data, n_latents=2, n_iterations=3, seed=1).predict(
        data.valid.counts[..., data.heldin]
    )
    torch.testing.assert_close(a[0], b[0])
    with pytest.raises(ValueError, match="n_latents"):
        baselines.seq2seq(data, n_latents=0)
    with pytest.raises(ValueError, match="sigma"):
        baselines.gaussian_smoothing(data, sigma=0)


def test_condition_psth_finds_each_trial_s_condition_and_its_rates():
    generator = torch.Generator().manual_seed(0)
    n_conditions, n_trials, dt = 3, 20, 0.01
    profile = torch.linspace(0, 3.14, 40)[:, None] * torch.arange(1, 7)
    condition_rates = 20 * (1 + torch.sin(profile + torch.arange(n_conditions)[:, None, None]))
    rates = condition_rates.repeat_interleave(n_trials, 0)
    repeat = torch.arange(n_conditions * n_trials) % n_trials
    data = SpikeData(
        torch.poisson(rates * dt, generator=generator),
        dt=dt,
        rates=rates,
        conditions=torch.arange(n_conditions).repeat_interleave(n_trials),
        train_idx=(repeat < 15).nonzero().squeeze(-1),
        valid_idx=(repeat >= 15).nonzero().squeeze(-1),
        heldout=[5],
    )
    fit = baselines.condition_psth(data, sigma=2.0)
    predicted, chosen = fit.predict(data.valid.counts[..., data.heldin])
    assert chosen.flatten().tolist() == data.conditions[data.valid_idx].tolist()
    assert predicted.shape == data.valid.rates.shape and fit.neurons.tolist() == list(range(6))
    assert metrics.r2_score(data.valid.rates, predicted) > 0.8


def test_condition_psth_checks_its_arguments(data):
    with pytest.raises(ValueError, match="sigma"):
        baselines.condition_psth(data, sigma=0.0)
    with pytest.raises(ValueError, match="conditions"):
        baselines.condition_psth(SpikeData(data.counts, dt=data.dt))

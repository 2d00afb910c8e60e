import numpy as np
import pytest
import torch

from pyro_circuits.datasets import SpikeData, chaotic_rnn, linear_dynamical, lorenz

SMALL = {
    "chaotic_rnn": lambda seed: chaotic_rnn(20, 5, 12, 40, g=2.5, input_magnitude=20.0, seed=seed),
    "lorenz": lambda seed: lorenz(10, 5, 12, 40, seed=seed),
    "linear_dynamical": lambda seed: linear_dynamical(30, 16, 40, 3, seed=seed),
}


@pytest.mark.parametrize("name", SMALL)
def test_generators_are_reproducible_per_seed(name):
    a, b, c = SMALL[name](0), SMALL[name](0), SMALL[name](1)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.rates, b.rates)
    assert not torch.equal(a.counts, c.counts)


@pytest.mark.parametrize("name", SMALL)
def test_counts_follow_the_true_rates(name):
    data = SMALL[name](0)
    assert data.counts.shape == data.rates.shape
    assert (data.rates >= 0).all()
    expected = data.rates.mean() * data.dt
    assert data.counts.mean() == pytest.approx(float(expected), rel=0.1)


def test_chaotic_rnn_recipe():
    data = chaotic_rnn(8, 10, 50, 100, g=2.5, input_magnitude=20.0, n_heldout=10)
    assert data.counts.shape == (80, 100, 50) and data.dt == 0.01
    assert len(data.train_idx) == 64 and len(data.valid_idx) == 16
    # per trial and neuron the rates span [0, 30] Hz
    torch.testing.assert_close(data.rates.amax(1), torch.full((80, 50), 30.0))
    torch.testing.assert_close(data.rates.amin(1), torch.zeros(80, 50))
    # one pulse per trial, in the middle half of the trial
    pulse = data.inputs[..., 0]
    assert ((pulse > 0).sum(1) == 1).all()
    assert ((pulse.argmax(1) >= 25) & (pulse.argmax(1) < 75)).all()
    # repeats of a condition share their initial state
    assert torch.equal(data.conditions[:10], torch.zeros(10, dtype=torch.long))
    assert data.heldout.tolist() == list(range(40, 50))
    assert chaotic_rnn(4, 2, 8, 20).inputs is None


def test_chaotic_rnn_ladder_rates_are_a_fixed_map_of_the_latents():
    lfads = chaotic_rnn(4, 3, 10, 50, g=2.5, tau=0.25, max_rate=10.0, seed=2)
    ladder = chaotic_rnn(
        4, 3, 10, 50, g=2.5, tau=0.25, max_rate=10.0, seed=2, normalise_per_trial=False
    )
    torch.testing.assert_close(ladder.latents, lfads.latents)
    torch.testing.assert_close(ladder.rates, 5.0 * (ladder.latents + 1))
    # with τ = 0.25 s a 0.5-s trial leaves tanh(x) short of its full range, so the per-trial
    # normalisation stretches the rates; the ladder map does not
    assert (ladder.rates.amax(1) - ladder.rates.amin(1) < 9.9).any()


def test_chaotic_rnn_weights_match_the_original_generator():
    # Sanity value of the TF generator: N = 50, seed 5 gives W[0, 0] = 0.06239899 (gain 1).
    assert np.random.RandomState(5).randn(50, 50)[0, 0] / np.sqrt(50) == pytest.approx(0.06239899)


def test_lorenz_recipe():
    data = lorenz(n_conditions=5, n_trials=4)
    assert data.counts.shape == (20, 100, 30) and data.latents.shape == (20, 100, 3)
    assert data.latents.abs().amax((0, 1)).max() <= 1.0
    assert torch.equal(data.latents[0], data.latents[3])  # trials of a condition share latents
    assert not torch.equal(data.counts[0], data.counts[3])
    assert data.rates.median() == pytest.approx(5.0, rel=0.5)


def test_linear_dynamical_recipe():
    data = linear_dynamical(n_trials=10, n_neurons=20, n_bins=30, n_latents=4)
    assert data.latents.shape == (10, 30, 4)
    assert len(data.train_idx) == 8 and data.valid_idx.tolist() == [8, 9]
    assert (data.rates == 0).any()  # rectified


def test_spike_data_validation_and_subsets():
    counts = torch.poisson(torch.ones(6, 5, 3))
    data = SpikeData(
        counts, dt=0.01, train_idx=torch.arange(4), valid_idx=torch.tensor([4, 5]), heldout=[2]
    )
    assert data.valid.counts.shape == (2, 5, 3) and data.heldin.tolist() == [0, 1]
    with pytest.raises(ValueError, match="dt"):
        SpikeData(counts, dt=0)
    with pytest.raises(ValueError, match="rates"):
        SpikeData(counts, dt=0.01, rates=torch.ones(6, 5, 2))
    with pytest.raises(ValueError, match="heldout"):
        SpikeData(counts, dt=0.01, heldout=[3])
    with pytest.raises(ValueError, match="integer"):
        SpikeData(counts - 2, dt=0.01)
    with pytest.raises(ValueError, match="n_conditions"):
        lorenz(n_conditions=0)

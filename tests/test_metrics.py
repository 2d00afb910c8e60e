import math

import numpy as np
import pytest
from scipy.stats import poisson
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score as sklearn_r2

from pyro_circuits.metrics import (
    bits_per_spike,
    calibrated_r2,
    co_bps,
    exp_readout_fit,
    fp_bps,
    latent_r2,
    r2_by_segment,
    r2_score,
)


def test_r2_by_hand():
    truth = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 2.0]])
    estimate = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 2.0]])
    # column 0: 1 - 1/2; column 1: SS_tot = 8/3, SS_res = 1 -> 1 - 3/8
    assert r2_score(truth, estimate) == pytest.approx((0.5 + 0.625) / 2)
    with pytest.raises(ValueError, match="shape"):
        r2_score(truth, estimate[:2])


def test_r2_by_segment_scores_each_window_on_its_own_variance():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(1000, 10, 3))
    estimate = truth.copy()
    estimate[:, :3] = 0.0  # three of the first window's four bins at the mean: R² about 1/4
    estimate[:, 7:] += rng.normal(size=(1000, 3, 3))  # the last window: noise as large as the truth
    scores = r2_by_segment(truth, estimate, 3)  # windows of 4, 3 and 3 bins
    assert scores[0] == pytest.approx(0.25, abs=0.1)
    assert scores[1] == 1.0
    assert scores[2] == pytest.approx(0.0, abs=0.1)
    windows = (slice(0, 4), slice(4, 7), slice(7, 10))
    assert scores == [r2_score(truth[:, w], estimate[:, w]) for w in windows]
    with pytest.raises(ValueError, match="segments"):
        r2_by_segment(truth, estimate, 11)
    with pytest.raises(ValueError, match=r"\[trials, time, features\]"):
        r2_by_segment(truth[0], estimate[0], 2)


def test_latent_r2_recovers_an_affine_map():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 20, 3))
    estimate = z @ rng.normal(size=(3, 5)) + 2.0
    assert latent_r2(estimate[:4], z[:4], estimate[4:], z[4:]) == pytest.approx(1.0)
    assert latent_r2(rng.normal(size=(4, 20, 5)), z[:4], rng.normal(size=(2, 20, 5)), z[4:]) < 0.2


def test_calibrated_r2_recovers_each_features_scale_and_offset_but_no_mixing():
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, size=(6, 20, 3))
    estimate = truth * np.array([0.5, 2.0, 3.0]) + np.array([1.0, -2.0, 0.0])
    assert r2_score(truth[4:], estimate[4:]) < 0.0
    assert calibrated_r2(estimate[:4], truth[:4], estimate[4:], truth[4:]) == pytest.approx(1.0)
    # Noise as large as the truth: the best map reads the squared correlation, 1/2.
    many = rng.gamma(2.0, size=(400, 20, 3))
    noisy = many + rng.normal(size=many.shape) * many.std((0, 1))
    assert calibrated_r2(noisy[:300], many[:300], noisy[300:], many[300:]) == pytest.approx(
        0.5, abs=0.02
    )
    # Features rotated: latent_r2's map across features undoes it, the per-feature map cannot.
    swapped = np.roll(estimate, 1, axis=-1)
    assert latent_r2(swapped[:4], truth[:4], swapped[4:], truth[4:]) == pytest.approx(1.0)
    assert calibrated_r2(swapped[:4], truth[:4], swapped[4:], truth[4:]) < 0.2
    constant = np.ones_like(truth)
    assert calibrated_r2(constant[:4], truth[:4], constant[4:], truth[4:]) <= 0.0
    with pytest.raises(ValueError, match="shape"):
        calibrated_r2(estimate[:4], truth[:3], estimate[4:], truth[4:])


def test_bits_per_spike_by_hand():
    counts = np.array([[[0.0], [1.0], [2.0], [1.0]]])
    rates = np.array([[[0.5], [1.0], [2.0], [1.0]]]) / 0.1  # Hz, dt = 0.1
    null = -poisson.logpmf(counts, 1.0).sum()
    model = -poisson.logpmf(counts, rates * 0.1).sum()
    expected = (null - model) / (4.0 * math.log(2))
    assert bits_per_spike(rates, counts, dt=0.1) == pytest.approx(expected)


def test_true_rates_beat_the_null_model():
    rng = np.random.default_rng(1)
    rates = rng.gamma(2.0, 10.0, size=(50, 30, 4))
    counts = rng.poisson(rates * 0.05).astype(float)
    assert bits_per_spike(rates, counts, dt=0.05) > 0
    null = np.broadcast_to(counts.mean((0, 1)) / 0.05, counts.shape)
    assert bits_per_spike(null, counts, dt=0.05) == pytest.approx(0.0, abs=1e-12)


def test_co_bps_and_fp_bps_select_neurons_and_bins():
    rng = np.random.default_rng(2)
    rates = rng.gamma(2.0, 10.0, size=(10, 12, 5))
    counts = rng.poisson(rates * 0.1).astype(float)
    assert co_bps(rates, counts, [3, 4], 0.1) == bits_per_spike(
        rates[..., 3:], counts[..., 3:], 0.1
    )
    assert fp_bps(rates, counts, 4, 0.1) == bits_per_spike(rates[:, -4:], counts[:, -4:], 0.1)
    with pytest.raises(ValueError, match="heldout"):
        co_bps(rates, counts, [], 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        bits_per_spike(-rates, counts, 0.1)


def test_exp_readout_fit_reaches_rates_of_its_rank_only():
    rng = np.random.default_rng(2)
    rates = np.exp(rng.normal(size=(8, 20, 3)) @ rng.normal(size=(3, 6)))
    assert r2_score(rates, exp_readout_fit(rates, 3, steps=1500)) > 0.99
    assert r2_score(rates, exp_readout_fit(rates, 1, steps=1500)) < 0.9
    with pytest.raises(ValueError, match="non-negative"):
        exp_readout_fit(-rates, 3)


# Reference implementations: scikit-learn for R², the Neural Latents Benchmark's definition for
# bits per spike (Pei et al. 2021): (LL(model) − LL(null)) / (spike count · ln 2), Poisson
# log-likelihoods of the counts, the null predicting each neuron's mean count per bin.


def _nlb_bits_per_spike(expected_counts, counts):
    counts = counts.reshape(-1, counts.shape[-1])
    expected_counts = expected_counts.reshape(counts.shape)
    log_lik = poisson.logpmf(counts, expected_counts).sum()
    null = poisson.logpmf(counts, counts.mean(0, keepdims=True)).sum()
    return (log_lik - null) / (counts.sum() * math.log(2))


def test_r2_matches_scikit_learn():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(7, 11, 4)) * np.array([1.0, 2.0, 3.0, 4.0]) + 5.0
    estimate = truth + rng.normal(size=truth.shape) * np.array([0.5, 1.0, 4.0, 1.0])
    expected = sklearn_r2(truth.reshape(-1, 4), estimate.reshape(-1, 4))  # uniform average
    assert r2_score(truth, estimate) == pytest.approx(expected, rel=1e-12)
    assert r2_score(truth, estimate) != pytest.approx(
        sklearn_r2(truth.reshape(-1, 4), estimate.reshape(-1, 4), multioutput="variance_weighted")
    )


def test_affine_latent_r2_matches_scikit_learns_linear_regression():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(12, 15, 3))
    estimate = np.tanh(z @ rng.normal(size=(3, 5))) + 0.3 * rng.normal(size=(12, 15, 5))
    train, valid = slice(0, 8), slice(8, 12)
    regression = LinearRegression().fit(estimate[train].reshape(-1, 5), z[train].reshape(-1, 3))
    predicted = regression.predict(estimate[valid].reshape(-1, 5))
    expected = sklearn_r2(z[valid].reshape(-1, 3), predicted)
    assert 0.2 < expected < 0.95  # a map that explains part of the latents
    got = latent_r2(estimate[train], z[train], estimate[valid], z[valid])
    assert got == pytest.approx(expected, rel=1e-9)


def test_calibrated_r2_matches_one_linear_regression_per_feature():
    rng = np.random.default_rng(5)
    truth = rng.gamma(2.0, size=(10, 12, 3))
    estimate = 0.5 * truth**1.5 + rng.normal(size=truth.shape)
    train, valid = slice(0, 7), slice(7, 10)
    predicted = np.stack(
        [
            LinearRegression()
            .fit(estimate[train][..., [j]].reshape(-1, 1), truth[train][..., j].reshape(-1))
            .predict(estimate[valid][..., [j]].reshape(-1, 1))
            for j in range(3)
        ],
        -1,
    )
    expected = sklearn_r2(truth[valid].reshape(-1, 3), predicted)
    got = calibrated_r2(estimate[train], truth[train], estimate[valid], truth[valid])
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bits_per_spike_and_co_bps_match_the_nlb_definition(seed):
    rng = np.random.default_rng(seed)
    dt = 0.02
    true_rates = rng.gamma(1.5, 20.0, size=(9, 25, 7))
    counts = rng.poisson(true_rates * dt).astype(float)
    estimate = true_rates * rng.lognormal(0.0, 0.5, size=true_rates.shape)  # Hz, a noisy model
    expected = _nlb_bits_per_spike(estimate * dt, counts)
    assert bits_per_spike(estimate, counts, dt) == pytest.approx(expected, rel=1e-9)
    heldout = [1, 4, 5]
    expected = _nlb_bits_per_spike(estimate[..., heldout] * dt, counts[..., heldout])
    assert co_bps(estimate, counts, heldout, dt) == pytest.approx(expected, rel=1e-9)

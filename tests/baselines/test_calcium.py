import importlib.util
import math
import sys
import types

import pytest
import torch

from pyro_circuits import metrics
from pyro_circuits.baselines import (
    Deconvolution,
    OasisDeconvolution,
    ThresholdDeconvolution,
    calcium,
    oasis_deconvolve,
    threshold_deconvolve,
)
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.results import TrialPosterior


def spike_trains(trials=3, steps=40, neurons=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full((trials, steps, neurons), 0.3), generator=generator)


@pytest.fixture
def fake_oasis(monkeypatch):
    """A stand-in ``oasis.functions.deconvolve`` that records its calls."""
    calls = []

    def deconvolve(y, tau_d, framerate, **mode):
        calls.append((y.shape, tau_d, framerate, mode))
        return y + 1, y * 2, 0.0, math.exp(-1 / (tau_d * framerate)), 0.0

    fake = types.ModuleType("oasis.functions")
    fake.deconvolve = deconvolve
    monkeypatch.setitem(sys.modules, "oasis", types.ModuleType("oasis"))
    monkeypatch.setitem(sys.modules, "oasis.functions", fake)
    return calls


def test_oasis_missing_is_reported_not_fatal(monkeypatch):
    monkeypatch.setitem(sys.modules, "oasis", None)  # import oasis now raises ImportError
    monkeypatch.setitem(sys.modules, "oasis.functions", None)
    # A fresh copy of the module imports without oasis (the registered module is left alone).
    spec = importlib.util.find_spec("pyro_circuits.baselines.calcium")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.available() is False
    with pytest.raises(ImportError, match="oasis-deconv"):
        module.oasis_deconvolve(torch.zeros(1, 5, 2))
    fit = OasisDeconvolution()  # building the fit needs no oasis; using it does
    with pytest.raises(ImportError, match="oasis-deconv"):
        fit.posterior_mean(torch.zeros(1, 5, 2))


def test_oasis_wrapper_runs_each_trace_when_present(fake_oasis):
    calls = fake_oasis
    assert calcium.available()
    fluor = torch.randn(2, 7, 3)
    calcium_hat, spikes = oasis_deconvolve(fluor, dt=0.01, tau=0.4)
    torch.testing.assert_close(calcium_hat, fluor + 1)
    torch.testing.assert_close(spikes, fluor * 2)
    assert calls == [((7,), 0.4, 100.0, {"penalty": 1})] * 6
    calls.clear()
    oasis_deconvolve(fluor[:1], dt=0.01, tau=0.4, s_min=0.5)
    assert calls == [((7,), 0.4, 100.0, {"penalty": None, "s_min": 0.5})] * 3


def test_oasis_with_known_parameters_recovers_spikes_from_noisy_fluorescence():
    """The papers' OASIS mode on σ = 0.2 fluorescence of Poisson spikes: R² above 0.85."""
    pytest.importorskip("oasis.functions", reason="oasis-deconv (GPL, optional) not installed")
    spikes = spike_trains(trials=20, steps=100, neurons=5)
    _, fluor = fluorescence_from_spikes(spikes, dt=0.01, tau=0.4, alpha=1.0, sigma=0.2, seed=0)
    _, inferred = oasis_deconvolve(fluor, dt=0.01, tau=0.4, s_min=0.5)
    assert metrics.r2_score(spikes, inferred) > 0.85


def test_threshold_deconvolution_recovers_noiseless_spikes_exactly():
    spikes = spike_trains()
    calcium_true, fluor = fluorescence_from_spikes(spikes, dt=0.02, tau=0.3, alpha=1.5, sigma=0.0)
    calcium_hat, spikes_hat = threshold_deconvolve(fluor, dt=0.02, tau=0.3, alpha=1.5)
    torch.testing.assert_close(spikes_hat, spikes)
    torch.testing.assert_close(calcium_hat, calcium_true)


def test_threshold_deconvolution_errs_at_the_gaussian_tail_rate():
    # Innovation noise has scale σ√(1 + d²) ≈ 0.28 for σ = 0.2, d = 0.975: a threshold at
    # α/2 = 0.5 misses a spike, or adds one, with probability P(N(0, 1) > 0.5 / 0.28) ≈ 0.037.
    spikes = (torch.rand(20, 200, 5, generator=torch.Generator().manual_seed(1)) < 0.05).float()
    _, fluor = fluorescence_from_spikes(spikes, dt=0.01, tau=0.4, sigma=0.2, seed=2)
    detected = threshold_deconvolve(fluor, dt=0.01, tau=0.4)[1] > 0
    spiking = spikes > 0
    miss = (~detected & spiking).sum() / spiking.sum()
    false_alarm = (detected & ~spiking).sum() / (~spiking).sum()
    assert 0.02 < miss < 0.06 and 0.02 < false_alarm < 0.06


# The TrialPosterior protocol, on both deconvolutions.


@pytest.fixture
def fluor():
    return fluorescence_from_spikes(spike_trains(), dt=0.01, tau=0.4, sigma=0.2, seed=5)[1]


def fit_of(kind):
    if kind == "threshold":
        return ThresholdDeconvolution(dt=0.01, tau=0.4, alpha=1.0)
    return OasisDeconvolution(dt=0.01, tau=0.4)


@pytest.mark.parametrize("kind", ["threshold", "oasis"])
def test_functions_are_the_fits_posterior_means(kind, fluor, fake_oasis):
    fit = fit_of(kind)
    assert isinstance(fit, TrialPosterior) and isinstance(fit, Deconvolution)
    mean = fit.posterior_mean(fluor, torch.zeros(3, 40, 1), num_samples=2, seed=4)
    function = threshold_deconvolve if kind == "threshold" else oasis_deconvolve
    calcium_hat, spikes_hat = function(fluor, dt=0.01, tau=0.4)
    assert torch.equal(mean["calcium"], calcium_hat) and torch.equal(mean["spikes"], spikes_hat)
    expected = {"calcium", "spikes"} | ({"baseline"} if kind == "oasis" else set())
    assert set(mean) == expected


@pytest.mark.parametrize("kind", ["threshold", "oasis"])
def test_save_and_load_give_the_same_posterior_mean(kind, fluor, fake_oasis, tmp_path):
    fit = fit_of(kind)
    loaded = type(fit).load(fit.save(tmp_path / "fit.pt"))
    assert type(loaded) is type(fit) and vars(loaded) == vars(fit)
    before, after = fit.posterior_mean(fluor), loaded.posterior_mean(fluor)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[site], after[site]) for site in before)


@pytest.mark.parametrize("kind", ["threshold", "oasis"])
def test_sample_repeats_the_point_and_draws_gaussian_fluorescence(kind, fluor, fake_oasis):
    fit = fit_of(kind)
    mean = fit.posterior_mean(fluor)
    draws = fit.sample(fluor, num_samples=5, seed=3)
    assert set(draws) == set(mean) | {"fluorescence"}
    for site, value in mean.items():
        assert draws[site].shape == (5, *value.shape) and (draws[site] == value).all()
    assert draws["fluorescence"].shape == (5, *fluor.shape)
    assert torch.equal(
        fit.sample(fluor, num_samples=5, seed=3)["fluorescence"], draws["fluorescence"]
    )
    # Around the calcium (plus baseline), with the residual's scale per neuron.
    centre = mean["calcium"] + mean.get("baseline", 0.0)
    residual = (fluor - centre).pow(2).mean((0, 1)).sqrt()
    spread = (draws["fluorescence"] - centre).pow(2).mean((0, 1, 2)).sqrt()
    torch.testing.assert_close(spread, residual, rtol=0.1, atol=0)


def test_sigma_fixes_the_noise_and_must_be_positive(fluor):
    fit = ThresholdDeconvolution(sigma=0.05)
    draws = fit.sample(fluor, num_samples=20)
    spread = (draws["fluorescence"] - draws["calcium"]).std()
    assert spread.item() == pytest.approx(0.05, rel=0.05)
    with pytest.raises(ValueError, match="sigma"):
        ThresholdDeconvolution(sigma=0.0)
    with pytest.raises(ValueError, match="tau"):
        ThresholdDeconvolution(dt=0.01, tau=0.005)
    with pytest.raises(ValueError, match="dt and tau"):
        OasisDeconvolution(tau=-1.0)


@pytest.mark.parametrize("kind", ["threshold", "oasis"])
def test_inference_data_holds_the_four_groups_and_the_gaussian_log_likelihood(
    kind, fluor, fake_oasis
):
    fit = fit_of(kind)
    idata = fit.to_inference_data(fluor, num_samples=4, seed=0)
    assert {"posterior", "posterior_predictive", "observed_data", "log_likelihood"} <= set(
        idata.groups()
    )
    mean = fit.posterior_mean(fluor)
    assert set(idata.posterior.data_vars) == set(mean)
    assert idata.posterior["spikes"].shape == (1, 4, *fluor.shape)
    assert idata.posterior_predictive["fluorescence"].shape == (1, 4, *fluor.shape)
    assert (idata.observed_data["fluorescence"].values == fluor.numpy()).all()
    centre = mean["calcium"] + mean.get("baseline", 0.0)
    scale = (fluor - centre).pow(2).mean((0, 1)).sqrt()
    log_lik = torch.distributions.Normal(centre, scale).log_prob(fluor)
    torch.testing.assert_close(
        torch.as_tensor(idata.log_likelihood["fluorescence"].values[0, 2]), log_lik
    )


def test_noiseless_fluorescence_keeps_a_finite_likelihood():
    spikes = spike_trains()
    _, fluor = fluorescence_from_spikes(spikes, sigma=0.0)
    idata = ThresholdDeconvolution().to_inference_data(fluor, num_samples=2)
    assert torch.isfinite(torch.as_tensor(idata.log_likelihood["fluorescence"].values)).all()


def test_nan_frames_are_rejected():
    fluor = torch.zeros(1, 5, 2)
    fluor[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ThresholdDeconvolution().posterior_mean(fluor)
    with pytest.raises(ValueError, match="NaN"):
        ThresholdDeconvolution().to_inference_data(fluor)

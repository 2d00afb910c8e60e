import arviz as az
import pytest
import torch

from pyro_circuits import baselines, metrics
from pyro_circuits.datasets import SpikeData, lorenz
from pyro_circuits.results import TrialPosterior


@pytest.fixture(scope="module")
def data():
    return lorenz(n_conditions=10, n_trials=10, n_neurons=20, n_bins=50, n_heldout=5, seed=3)


@pytest.fixture(scope="module")
def fits(data):
    return {
        "smoothing": baselines.gaussian_smoothing(data, sigma=3.0, steps=20),
        "seq2seq": baselines.seq2seq(data, n_latents=3, n_iterations=5, seed=0),
        "psth": baselines.condition_psth(data, sigma=4.0),
    }


def test_smoothing_returns_the_rate_of_constant_spiking():
    counts = torch.ones(4, 30, 3)
    fit = baselines.gaussian_smoothing(SpikeData(counts, dt=0.02, heldout=[2]), sigma=3.0)
    rates, latents = fit.predict(counts[..., :2])
    torch.testing.assert_close(rates, torch.full((4, 30, 3), 50.0), rtol=1e-3, atol=1e-3)
    assert latents.shape == (4, 30, 2)


def test_baselines_predict_held_out_neurons_better_than_the_null(data):
    heldin_valid = data.valid.counts[..., data.heldin]
    smooth = baselines.gaussian_smoothing(data, sigma=3.0)
    rates = smooth.posterior_mean(heldin_valid)["rates"]
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
    mean = fit.posterior_mean(data.valid.counts[..., data.heldin])
    predicted, chosen = mean["rates"], mean["latents"]
    assert chosen.flatten().tolist() == data.conditions[data.valid_idx].tolist()
    assert predicted.shape == data.valid.rates.shape and fit.neurons.tolist() == list(range(6))
    assert metrics.r2_score(data.valid.rates, predicted) > 0.8
    # The full recording reads the same held-in neurons.
    torch.testing.assert_close(fit.posterior_mean(data.valid.counts)["rates"], predicted)


def test_condition_psth_checks_its_arguments(data):
    with pytest.raises(ValueError, match="sigma"):
        baselines.condition_psth(data, sigma=0.0)
    with pytest.raises(ValueError, match="conditions"):
        baselines.condition_psth(SpikeData(data.counts, dt=data.dt))


# The TrialPosterior protocol, on every spike baseline.

NAMES = ["smoothing", "seq2seq", "psth"]


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_a_trial_posterior_and_predict_is_posterior_mean(fits, data, name):
    fit = fits[name]
    assert isinstance(fit, TrialPosterior) and isinstance(fit, baselines.BaselineFit)
    assert isinstance(fit.name, str) and fit.neurons.dtype == torch.long
    heldin = data.valid.counts[..., data.heldin]
    mean = fit.posterior_mean(heldin)
    assert set(mean) == {"rates", "latents"}
    assert mean["rates"].shape == (*heldin.shape[:2], len(fit.neurons))
    rates, latents = fit.predict(heldin)
    assert torch.equal(rates, mean["rates"]) and torch.equal(latents, mean["latents"])
    # Held-in counts or the whole recording; inputs and num_samples change nothing.
    full = fit.posterior_mean(data.valid.counts, torch.zeros(20, 50, 2), num_samples=3, seed=9)
    assert torch.equal(full["rates"], mean["rates"])


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_posterior_mean(fits, data, name, tmp_path):
    fit = fits[name]
    path = fit.save(tmp_path / f"{name}.pt")
    loaded = type(fit).load(path)
    assert type(loaded) is type(fit) and loaded.name == fit.name
    assert torch.equal(loaded.neurons, fit.neurons)
    before = fit.posterior_mean(data.valid.counts)
    after = loaded.posterior_mean(data.valid.counts)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[site], after[site]) for site in before)
    assert baselines.BaselineFit.load(path).name == fit.name
    with pytest.raises(TypeError, match="not a"):
        baselines.ThresholdDeconvolution.load(path)


@pytest.mark.parametrize("name", NAMES)
def test_sample_repeats_the_point_and_draws_seeded_poisson_counts(fits, data, name):
    fit = fits[name]
    counts = data.valid.counts
    mean = fit.posterior_mean(counts)
    state = torch.get_rng_state()
    draws = fit.sample(counts, num_samples=4, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    assert set(draws) == {"rates", "latents", "counts"}
    for site in ("rates", "latents"):
        assert draws[site].shape == (4, *mean[site].shape)
        assert (draws[site] == mean[site]).all()
    assert draws["counts"].shape == (4, 20, 50, len(fit.neurons))
    assert (draws["counts"] == draws["counts"].round()).all() and (draws["counts"] >= 0).all()
    assert torch.equal(fit.sample(counts, num_samples=4, seed=1)["counts"], draws["counts"])
    assert not torch.equal(fit.sample(counts, num_samples=4, seed=2)["counts"], draws["counts"])
    # Poisson with mean rates * dt: the draws' mean over trials, time and samples matches.
    expected = (mean["rates"] * data.dt).mean()
    assert draws["counts"].mean().item() == pytest.approx(expected.item(), rel=0.1)
    with pytest.raises(ValueError, match="num_samples"):
        fit.sample(counts, num_samples=0)


@pytest.mark.parametrize("name", NAMES)
def test_inference_data_holds_the_four_groups_and_the_poisson_log_likelihood(fits, data, name):
    fit = fits[name]
    counts = data.valid.counts
    idata = fit.to_inference_data(counts, num_samples=6, seed=0)
    assert {"posterior", "posterior_predictive", "observed_data", "log_likelihood"} <= set(
        idata.groups()
    )
    observed = counts[..., fit.neurons]
    mean = fit.posterior_mean(counts)
    assert idata.posterior["rates"].shape == (1, 6, 20, 50, len(fit.neurons))
    assert idata.posterior["latents"].shape == (1, 6, *mean["latents"].shape)
    assert idata.posterior_predictive["counts"].shape == (1, 6, 20, 50, len(fit.neurons))
    assert (idata.observed_data["counts"].values == observed.numpy()).all()
    assert idata.posterior["rates"].coords["neuron"].values.tolist() == fit.neurons.tolist()
    log_lik = torch.distributions.Poisson(mean["rates"] * data.dt).log_prob(observed)
    assert idata.log_likelihood["counts"].shape == (1, 6, 20, 50, len(fit.neurons))
    torch.testing.assert_close(
        torch.as_tensor(idata.log_likelihood["counts"].values[0, 3]), log_lik
    )
    sampled = fit.sample(counts, num_samples=6, seed=0)["counts"]
    assert (idata.posterior_predictive["counts"].values[0] == sampled.numpy()).all()


def test_inference_data_needs_the_counts_of_the_neurons_it_scores(fits, data):
    heldin = data.valid.counts[..., data.heldin]
    with pytest.raises(ValueError, match="needs the counts of all 20 neurons"):
        fits["seq2seq"].to_inference_data(heldin)
    with pytest.raises(ValueError, match="held-in neurons or all 20"):
        fits["smoothing"].posterior_mean(data.valid.counts[..., :3])
    with pytest.raises(ValueError, match="integer"):
        fits["smoothing"].to_inference_data(data.valid.counts + 0.5)


# A point posterior's importance weights are all equal, which PSIS's k-hat flags.
@pytest.mark.filterwarnings("ignore:Estimated shape parameter:UserWarning")
def test_arviz_reads_loo_and_the_predictive_check(fits, data):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = data.valid.counts[:4, :20]
    idata = fits["smoothing"].to_inference_data(counts, num_samples=8)
    loo = az.loo(idata, var_name="counts")
    expected = idata.log_likelihood["counts"].values[0, 0].sum()
    assert loo.elpd_loo == pytest.approx(expected, rel=1e-6)
    axes = az.plot_ppc(idata, data_pairs={"counts": "counts"}, num_pp_samples=4, kind="cumulative")
    assert axes is not None
    plt.close("all")

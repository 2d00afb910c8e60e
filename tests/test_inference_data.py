"""ArviZ InferenceData of every method: each group against the result it came from, ArviZ's and
sbi's plots on it, SMC-ABC's effective sample size with repeated particles, and ``az.loo`` on an
SVI fit's per-trial log-likelihood."""

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch
from scipy import stats

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from pyro_circuits.datasets import lorenz  # noqa: E402
from pyro_circuits.epi import EPIConfig, FlowConfig, epi  # noqa: E402
from pyro_circuits.guides import LFADSEncoder  # noqa: E402
from pyro_circuits.models import LDS2D, LFADS  # noqa: E402
from pyro_circuits.sbi import NPE, SMCABC, SMCABCResult  # noqa: E402
from pyro_circuits.svi import train  # noqa: E402

MODEL, PROP = LDS2D(), LDS2D.oscillation()
N = 200  # draws: 4 pseudo-chains of 50
SITES = ["a11", "a12", "a21", "a22"]


def _epi():
    config = EPIConfig(batch_size=40, epochs=1, iterations=10, test_batches=10, init_iterations=10)
    return epi(MODEL, PROP, config=config, flow=FlowConfig(units=8), progress=False)


def _npe():
    return NPE(
        MODEL, PROP, simulations=300, check_samples=0, progress=False,
        train_kwargs={"max_num_epochs": 3},
    )  # fmt: skip


def _smcabc():
    return SMCABC(MODEL, PROP, simulations=600, particles=50, progress=False)


@pytest.fixture(scope="module", params=[_epi, _npe, _smcabc], ids=["epi", "npe", "smcabc"])
def fitted(request):
    result = request.param()
    return result, result.to_inference_data(n=N, seed=0)


def _flat(dataset, names):
    """``{name: (chains · draws, ...)}`` torch tensors of a group's variables."""
    return {k: torch.as_tensor(dataset[k].values).flatten(0, 1) for k in names}


def test_every_group_is_there(fitted):
    _, idata = fitted
    assert set(idata.groups()) == {
        "posterior", "posterior_predictive", "sample_stats", "prior", "prior_predictive",
        "observed_data", "constant_data",
    }  # fmt: skip


def test_posterior_holds_the_sites_in_their_declared_shapes(fitted):
    result, idata = fitted
    assert list(idata.posterior.data_vars) == SITES
    assert all(idata.posterior[k].shape == (4, N // 4) for k in SITES)
    assert idata.posterior.attrs["method"] == result.method
    assert idata.posterior.attrs["simulations"] == result.simulations
    again = result.to_inference_data(n=N, seed=0)
    assert all((again.posterior[k].values == idata.posterior[k].values).all() for k in SITES)


def test_bad_arguments_are_refused_before_any_work(fitted):
    result, _ = fitted
    with pytest.raises(ValueError, match="n must be an integer >= 4"):
        result.to_inference_data(n=3)
    with pytest.raises(TypeError, match="prior must be True or False"):
        result.to_inference_data(n=8, prior="yes")
    with pytest.raises(ValueError, match="seed"):
        result.to_inference_data(n=8, seed=-1)


def test_posterior_predictive_is_the_model_run_on_the_posterior_draws(fitted):
    result, idata = fitted
    draws = _flat(idata.posterior, SITES)
    expected = result.program.simulate(draws)
    assert list(idata.posterior_predictive.data_vars) == PROP.names
    for name in PROP.names:
        got = torch.as_tensor(idata.posterior_predictive[name].values).flatten()
        torch.testing.assert_close(got, expected[name])


def test_prior_is_the_models_prior_and_prior_predictive_its_statistics(fitted):
    result, idata = fitted
    prior = _flat(idata.prior, SITES)
    for k in SITES:  # each a_ij ~ Uniform(-10, 10)
        assert stats.kstest(prior[k].numpy(), stats.uniform(-10, 20).cdf).pvalue > 1e-3
    expected = result.program.simulate(prior)
    for name in PROP.names:
        got = torch.as_tensor(idata.prior_predictive[name].values).flatten()
        torch.testing.assert_close(got, expected[name])


def test_observed_data_and_constant_data_are_the_property(fitted):
    _, idata = fitted
    assert list(idata.observed_data.data_vars) == PROP.names
    for name in PROP.names:
        assert idata.observed_data[name].values.tolist() == PROP.mean[name].tolist()
        assert idata.observed_data[name].dims == idata.posterior_predictive[name].dims[2:]
        for kind in ("mean", "variance"):  # a scalar target is stored as a vector of one
            value = idata.constant_data[f"property_{kind}_{name}"].values
            assert value.tolist() == getattr(PROP, kind)[name].reshape(-1).tolist()


def test_sample_stats_hold_each_methods_own_quantities(fitted):
    result, idata = fitted
    draws = _flat(idata.posterior, SITES)
    if result.method == "smcabc":
        particle = torch.as_tensor(idata.sample_stats["particle"].values).flatten()
        assert torch.equal(result.space.join(draws), result.particles[particle])
        weight = torch.as_tensor(idata.sample_stats["weight"].values).flatten()
        torch.testing.assert_close(weight, result.log_weights.exp()[particle])
        distance = torch.as_tensor(idata.sample_stats["distance"].values).flatten()
        assert torch.equal(distance, result.distances[particle])
        assert (distance <= result.epsilon).all()
    else:  # EPI: log q(z); NPE: log p(θ | x₀)
        log_q = torch.as_tensor(idata.sample_stats["log_q"].values).flatten()
        torch.testing.assert_close(log_q, result.log_prob(draws), rtol=1e-4, atol=1e-4)


def test_arviz_and_sbi_plots_run_on_every_method(fitted):
    from sbi.analysis import pairplot

    result, idata = fitted
    summary = az.summary(idata)
    assert list(summary.index) == SITES and summary["ess_bulk"].notna().all()
    with pytest.warns(UserWarning, match="single value"):  # a target mean is a single value
        axes = az.plot_ppc(idata, num_pp_samples=10, random_seed=0)
    assert [ax.get_xlabel() for ax in np.ravel(axes)] == PROP.names
    axes = az.plot_ppc(idata, kind="scatter", num_pp_samples=10, random_seed=0)
    for ax, name in zip(np.ravel(axes), PROP.names, strict=True):  # the target, on the x axis
        (target,) = [line for line in ax.lines if line.get_label() == "Observed"]
        assert target.get_xdata().tolist() == pytest.approx([PROP.mean[name].item()])
    axes = az.plot_pair(idata, var_names=["a11", "a12"], kind="scatter")
    assert axes.get_xlabel() == "a11"
    figure, axes = pairplot(result.space.join(_flat(idata.posterior, SITES)), labels=SITES)
    assert np.shape(axes) == (4, 4)
    plt.close("all")


def test_inference_data_survives_netcdf(fitted, tmp_path):
    _, idata = fitted
    idata.to_netcdf(str(tmp_path / "idata.nc"))
    loaded = az.from_netcdf(str(tmp_path / "idata.nc"))
    assert set(loaded.groups()) == set(idata.groups())
    assert loaded.sample_stats.attrs["method"] == idata.sample_stats.attrs["method"]


def test_smcabc_keeps_its_weighted_population_and_an_honest_ess(tmp_path):
    result = _smcabc()
    population = len(result.particles)
    assert result.particles.shape == (population, 4) and len(result.distances) == population
    torch.testing.assert_close(result.log_weights.exp().sum(), torch.tensor(1.0))
    n = 8 * population  # every particle drawn about 8 times
    idata = result.to_inference_data(n=n, seed=1, prior=False)
    attrs = idata.sample_stats.attrs
    weights = result.log_weights.exp()
    assert attrs["population_ess"] == pytest.approx(float(1 / (weights**2).sum()), rel=1e-5)
    assert attrs["particles"] == population and attrs["distinct"] <= population
    ess = az.summary(idata)["ess_bulk"]  # the repeats are seen, not counted as independent:
    assert (ess < 2 * attrs["population_ess"]).all(), ess  # the population's scale, not n's
    shuffled = idata.posterior.copy()
    order = np.random.default_rng(0).permutation(n)
    for k in SITES:  # the same draws in a random order: ESS ≈ n, which would be dishonest
        values = shuffled[k].values.reshape(-1)[order].reshape(4, -1)
        shuffled[k] = (("chain", "draw"), values)
    assert (az.ess(shuffled).to_array().values > 0.7 * n).all()
    loaded = SMCABCResult.load(result.save(tmp_path / "smcabc.pt"))
    for name in ("particles", "log_weights", "distances"):
        assert torch.equal(getattr(loaded, name), getattr(result, name))


def test_sbi_pairplot_imports():
    from sbi.analysis import pairplot

    assert callable(pairplot)


@pytest.fixture(scope="module")
def svi_fit():
    data = lorenz(n_conditions=4, n_trials=5, n_neurons=6, n_bins=30, burn_in=200)
    model = LFADS(6, ic_dim=2, gen_dim=4, fac_dim=2, dt=data.dt)
    fit = train(model, LFADSEncoder(model, enc_dim=4), data.train.counts, max_epochs=1,
                progress=False)  # fmt: skip
    return fit, data.valid.counts


# Six draws of a barely trained guide: PSIS's k-hat is high, which ArviZ warns about.
@pytest.mark.filterwarnings("ignore:Estimated shape parameter:UserWarning")
def test_svi_log_likelihood_is_per_trial_and_loo_leaves_out_trials(svi_fit):
    fit, counts = svi_fit
    idata = fit.to_inference_data(counts, num_samples=6, seed=0)
    log_lik = torch.as_tensor(idata.log_likelihood["counts"].values)
    assert idata.log_likelihood["counts"].dims == ("chain", "draw", "trial")
    rates = torch.as_tensor(idata.posterior["rates"].values)  # Hz, [1, draws, trials, time, n]
    poisson = torch.distributions.Poisson(rates * fit.model.dt).log_prob(counts)
    torch.testing.assert_close(log_lik, poisson.sum((-2, -1)), rtol=1e-5, atol=1e-4)
    pointwise = fit.to_inference_data(counts, num_samples=6, seed=0, pointwise=True)
    torch.testing.assert_close(torch.as_tensor(pointwise.log_likelihood["counts"].values), poisson)
    loo = az.loo(idata, pointwise=True)
    assert loo.n_data_points == len(counts) and loo.loo_i.dims == ("trial",)
    assert np.isfinite(loo.elpd_loo)
    with pytest.raises(TypeError, match="pointwise"):
        fit.to_inference_data(counts, pointwise="yes")

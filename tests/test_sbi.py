"""The sbi bridge: prior, simulator, x0, and NPE / SMC-ABC on a model with a known answer."""

import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from sbi.utils import BoxUniform

from pyro_circuits.epi import EmergentProperty
from pyro_circuits.models import LDS2D, Rank2RNN
from pyro_circuits.sbi import (
    NPE,
    SMCABC,
    NPEResult,
    ObservationInTailWarning,
    Simulator,
    SMCABCResult,
    SMCABCStalled,
    observation,
    sbi_prior,
)
from pyro_circuits.sbi.npe import estimator_builder
from pyro_circuits.sites import CircuitProgram, noise
from pyro_circuits.space import ParameterSpace
from pyro_circuits.threads import torch_threads

SIGMA = 0.3


def gaussian_model():
    """f = θ + 0.3 ε with θ ~ U(-3, 3): the posterior at f = 1 is ≈ N(1, 0.3²)."""
    theta = pyro.sample("theta", dist.Uniform(-3.0, 3.0))
    pyro.deterministic("f", theta + SIGMA * noise("eps", like=theta))


def normal_prior_model():
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
    pyro.deterministic("f", theta + SIGMA * noise("eps", like=theta))


def no_statistics_model():
    pyro.sample("theta", dist.Uniform(0.0, 1.0))


PROP = EmergentProperty(mean={"f": 1.0}, variance={"f": SIGMA**2})


@pytest.fixture(scope="module")
def npe_result():
    return NPE(
        gaussian_model,
        PROP,
        simulations=500,
        estimator_kwargs={"hidden_features": 16, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 40, "learning_rate": 1e-2, "training_batch_size": 50},
        check_samples=200,
        seed=0,
        progress=False,
    )


@pytest.fixture(scope="module")
def smc_result():
    return SMCABC(gaussian_model, PROP, simulations=4000, particles=200, seed=0, progress=False)


def test_prior_box_uniform_has_support_and_dimension():
    prior = sbi_prior(ParameterSpace(CircuitProgram(Rank2RNN(3)).priors))
    assert isinstance(prior, BoxUniform)
    draws = prior.sample((500,))
    assert draws.shape == (500, 12)
    assert draws.abs().max() <= 1
    assert torch.isinf(prior.log_prob(torch.full((1, 12), 1.5))).all()
    low, high = ParameterSpace(CircuitProgram(LDS2D()).priors).bounds()
    assert torch.equal(low, torch.full((4,), -10.0)) and torch.equal(high, torch.full((4,), 10.0))


def test_prior_non_uniform_goes_through_process_prior():
    priors = {
        "a": dist.Normal(0.0, 2.0),
        "b": dist.Uniform(-torch.ones(2), torch.ones(2)).to_event(1),
    }
    prior = sbi_prior(ParameterSpace(priors))
    assert prior.sample((7,)).shape == (7, 3)
    point = torch.tensor([[0.5, 0.2, -0.3]])
    expected = dist.Normal(0.0, 2.0).log_prob(torch.tensor(0.5)) + 2 * torch.log(torch.tensor(0.5))
    assert torch.allclose(prior.log_prob(point), expected.reshape(1), atol=1e-5)


def test_simulator_matches_the_model_called_directly():
    model = Rank2RNN(3)
    program = CircuitProgram(model)
    simulator = Simulator(program)
    theta = sbi_prior(simulator.space).sample((6,))
    pyro.set_rng_seed(3)
    x = simulator(theta.numpy())  # numpy in, as joblib workers send it
    pyro.set_rng_seed(3)
    with pyro.plate("particles", 6, dim=-1):
        trace = poutine.trace(
            poutine.condition(
                model, {"U": theta[:, :6].reshape(6, 3, 2), "V": theta[:, 6:].reshape(6, 3, 2)}
            )
        ).get_trace()
    direct = torch.stack([trace.nodes[s]["value"] for s in ("real_lambda", "sym_lambda")], -1)
    assert x.shape == (6, 2)
    assert torch.allclose(x, direct)
    assert not x.requires_grad


def test_observation_is_the_property_mean():
    assert torch.equal(observation(Rank2RNN.stable_amplification()), torch.tensor([[0.5, 1.5]]))


def test_npe_recovers_gaussian_posterior(npe_result):
    assert isinstance(npe_result, NPEResult)
    theta = npe_result.sample(2000, seed=1)["theta"]
    assert abs(theta.mean().item() - 1.0) < 0.15
    assert 0.15 < theta.std().item() < 0.5  # true posterior sd ≈ 0.3; the prior's is 1.7
    assert npe_result.simulations == 500 and npe_result.wall_time > 0
    assert list(npe_result.history.columns) == [
        "round", "simulations", "wall_time", "distance", "median_distance", "near_x0",
        "validation_log_prob", "epochs_trained",
    ]  # fmt: skip
    assert npe_result.history["distance"].iloc[-1] < 0.3
    # the predictive is symmetric about x₀ here, so its median lies as near as its mean
    assert npe_result.history["median_distance"].iloc[-1] < 0.3
    assert list(npe_result.convergence_trace().columns)[-1] == "median_distance"
    assert torch.equal(npe_result.sample(5, seed=2)["theta"], npe_result.sample(5, seed=2)["theta"])
    log_q = npe_result.log_prob({"theta": torch.tensor([1.0, 2.9])})
    assert log_q[0] > log_q[1]


def test_npe_patience_stops_at_the_first_rounds_without_a_better_validation_log_prob():
    result = NPE(
        gaussian_model,
        PROP,
        simulations=100,
        rounds=8,
        patience=1,
        estimator_kwargs={"hidden_features": 8, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 3, "training_batch_size": 50},
        check_samples=0,
        seed=0,
        progress=False,
    )
    log_probs = result.history["validation_log_prob"].tolist()
    improved = [i == 0 or lp > max(log_probs[:i]) for i, lp in enumerate(log_probs)]
    assert all(improved[:-1])  # no earlier round stalled, or the run would have stopped there
    assert not improved[-1] or len(log_probs) == 8
    assert result.stopped_by == ("rounds" if improved[-1] else "patience")
    assert result.simulations == 100 * len(log_probs)
    assert (result.history["epochs_trained"] > 0).all()
    with pytest.raises(ValueError, match="patience"):
        NPE(gaussian_model, PROP, patience=0, progress=False)


def test_npe_max_time_starts_no_round_after_the_limit():
    small = {
        "simulations": 100,
        "rounds": 3,
        "estimator_kwargs": {"hidden_features": 8, "num_transforms": 1},
        "train_kwargs": {"max_num_epochs": 2, "training_batch_size": 50},
        "check_samples": 0,
        "progress": False,
    }
    result = NPE(gaussian_model, PROP, max_time=1e-6, **small)
    assert len(result.history) == 1 and result.simulations == 100  # the first round finishes
    assert result.settings["max_time"] == 1e-6 and result.stopped_by == "max_time"
    unlimited = NPE(gaussian_model, PROP, max_time=3600.0, **small)
    assert len(unlimited.history) == 3 and unlimited.stopped_by == "rounds"
    with pytest.raises(ValueError, match="max_time"):
        NPE(gaussian_model, PROP, max_time=0.0, progress=False)


@pytest.mark.parametrize("estimator", ["zuko_maf", "maf"])
def test_a_z_score_of_none_feeds_x_to_the_flow_unscaled(estimator):
    """sbi reads None as "do not z-score" in its documentation but drops it from the flow's
    configuration, which then z-scores; the estimator builder passes "none" instead."""
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    theta, x = prior.sample((100,)), 5.0 + 10.0 * torch.randn(100, 1)
    for setting, unscaled in [(None, True), ("none", True), ("independent", False)]:
        kwargs = {"hidden_features": 8, "num_transforms": 1, "z_score_x": setting}
        net = estimator_builder(estimator, kwargs, prior)(theta, x)
        assert torch.equal(net.embedding_net(x), x) == unscaled, setting


def test_npe_check_simulates_its_draws_in_chunks_of_the_simulation_batch(model_batch_sizes):
    tiny = {"estimator_kwargs": {"hidden_features": 8, "num_transforms": 1}, "progress": False}
    train = {"max_num_epochs": 2, "training_batch_size": 20}
    result = NPE(gaussian_model, PROP, simulations=60, simulation_batch_size=25,
                 train_kwargs=train, check_samples=55, **tiny)  # fmt: skip
    # the round's simulations, then the check's
    assert model_batch_sizes[-6:] == [25, 25, 10, 25, 25, 5]
    assert np.isfinite(result.history["distance"].iloc[0])


def test_npe_stop_distance_ends_the_rounds_once_the_predictive_is_near():
    result = NPE(
        gaussian_model,
        PROP,
        simulations=100,
        rounds=3,
        stop_distance=100.0,  # any first round's predictive lies within this of x₀
        estimator_kwargs={"hidden_features": 8, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 2, "training_batch_size": 50},
        check_samples=50,
        progress=False,
    )
    assert len(result.history) == 1 and result.stopped_by == "stop_distance"
    assert result.history["distance"].iloc[0] < 100.0


def test_npe_history_counts_the_simulations_near_x0_and_the_rounds_gather_them():
    """Round 1 draws θ ~ U(-3, 3): P(|θ + 0.3ε − 1| < 0.3) ≈ 0.6 / 6 = 0.1. Round 2 draws from
    round 1's posterior, between the prior and the exact N(1, 0.3²), whose f ~ N(1, 2 · 0.3²)
    would put P(|Z| < 1/√2) ≈ 0.52 within one s.d."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ObservationInTailWarning)
        result = NPE(
            gaussian_model,
            PROP,
            simulations=500,
            rounds=2,
            estimator_kwargs={"hidden_features": 16, "num_transforms": 1},
            train_kwargs={"max_num_epochs": 40, "learning_rate": 1e-2, "training_batch_size": 50},
            check_samples=0,
            progress=False,
        )
    first, second = result.history["near_x0"]
    assert first == pytest.approx(0.1, abs=0.04)
    assert 2 * first < second < 0.52 + 0.06


def test_npe_warns_when_x0_lies_in_the_prior_predictives_far_tail():
    """One target s.d. of 0.003 around f = 1 holds about 0.006 / 6 = 0.1 % of round 1."""
    narrow = EmergentProperty(mean={"f": 1.0}, variance={"f": 0.003**2})
    with pytest.warns(ObservationInTailWarning, match=r"of round 1's simulations lie within"):
        result = NPE(
            gaussian_model,
            narrow,
            simulations=500,
            estimator_kwargs={"hidden_features": 8, "num_transforms": 1},
            train_kwargs={"max_num_epochs": 2, "training_batch_size": 50},
            check_samples=0,
            progress=False,
        )
    assert result.history["near_x0"].iloc[0] < 0.005


def test_truncated_npe_recovers_the_posterior_and_draws_later_rounds_near_it():
    from pyro_circuits.sbi.npe import _truncated

    result = NPE(
        gaussian_model,
        PROP,
        simulations=400,
        rounds=2,
        truncate=1e-3,
        estimator_kwargs={"hidden_features": 16, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 40, "learning_rate": 1e-2, "training_batch_size": 50},
        check_samples=200,
        seed=0,
        progress=False,
    )
    theta = result.sample(2000, seed=1)["theta"]
    assert abs(theta.mean().item() - 1.0) < 0.15 and 0.15 < theta.std().item() < 0.5
    assert result.settings["truncate"] == 1e-3 and len(result.history) == 2
    prior = BoxUniform(torch.tensor([-3.0]), torch.tensor([3.0]))
    region = _truncated(prior, result.posterior, 1e-3, torch.device("cpu"))
    draws = region.sample((2000,))
    # the prior restricted to the posterior's bulk (1 ± 3.3 × 0.3 for the exact posterior),
    # not the prior's ±3 around 0 (s.d. 1.73)
    assert (draws - 1.0).abs().max() < 1.6 and draws.std() < 1.0
    with pytest.raises(ValueError, match="truncate"):
        NPE(gaussian_model, PROP, truncate=1.0, progress=False)


def test_smcabc_recovers_gaussian_posterior(smc_result):
    assert isinstance(smc_result, SMCABCResult)
    theta = smc_result.sample(2000, seed=1)["theta"]
    assert abs(theta.mean().item() - 1.0) < 0.15
    assert 0.15 < theta.std().item() < 0.6
    assert smc_result.simulations >= 4000
    history = smc_result.history
    assert history["epsilon"].is_monotonic_decreasing
    assert history["simulations"].iloc[0] == 400 and history["simulations"].iloc[-1] >= 4000
    with pytest.raises(NotImplementedError):
        smc_result.log_prob({"theta": torch.zeros(1)})


@pytest.mark.parametrize("which", ["npe_result", "smc_result"])
def test_inference_data_and_arviz(which, request, tmp_path):
    result = request.getfixturevalue(which)
    idata = result.to_inference_data(n=200, seed=0)
    assert {"posterior", "posterior_predictive", "constant_data"} <= set(idata.groups())
    assert idata.posterior["theta"].dims == ("chain", "draw")
    assert idata.posterior_predictive["f"].shape == (4, 50)
    assert idata.constant_data["property_mean_f"].values.tolist() == [1.0]
    assert idata.posterior.attrs["method"] == result.method
    assert idata.posterior.attrs["simulations"] == result.simulations
    if which == "npe_result":
        assert idata.sample_stats["log_q"].shape == (4, 50)
    summary = az.summary(idata, kind="stats")
    assert "theta" in summary.index
    az.plot_posterior(idata)
    plt.close("all")
    path = result.save(tmp_path / "result.pt")
    loaded = type(result).load(path)
    assert torch.equal(loaded.sample(3, seed=4)["theta"], result.sample(3, seed=4)["theta"])


def test_pair_plot_on_vector_sites():
    result = SMCABC(
        Rank2RNN(2), Rank2RNN.stable_amplification(), simulations=400, particles=40, progress=False
    )
    idata = result.to_inference_data(n=40)
    assert idata.posterior["U"].dims == ("chain", "draw", "U_dim_0", "U_dim_1")  # U is n × 2
    az.plot_pair(idata, var_names=["U"], coords={"U_dim_0": [0, 1], "U_dim_1": [0]})
    plt.close("all")


def test_smcabc_stalled_by_the_prior_support_in_high_dimension_is_a_clear_error():
    def rank2_smcabc(n, simulations, particles):
        return SMCABC(
            Rank2RNN(n),
            Rank2RNN.stable_amplification(),
            simulations=simulations,
            particles=particles,
            min_kernel_acceptance=1e-3,
            progress=False,
        )

    # D = 100: a population-wide Gaussian kernel lands inside the box about 1e-11 of the time.
    with pytest.raises(SMCABCStalled, match="population 1 after 200 simulations") as stalled:
        rank2_smcabc(25, simulations=1000, particles=100)
    assert stalled.value.acceptance < 1e-3 and stalled.value.kernel_draws >= 10_000
    # The same floor lets a low-dimensional run (D = 8, about 10 % inside) go through.
    assert rank2_smcabc(2, simulations=600, particles=50).simulations == 600


TINY_RUNS = {
    "npe": lambda model, **kw: NPE(
        model, PROP, simulations=50, check_samples=0, progress=False,
        estimator_kwargs={"hidden_features": 8, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 1, "training_batch_size": 50}, **kw,
    ),
    "smcabc": lambda model, **kw: SMCABC(
        model, PROP, simulations=60, particles=10, progress=False, **kw
    ),
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(TINY_RUNS))
def test_threads_hold_for_the_simulations_and_are_restored(method):
    seen = []

    def recording_model():
        theta = pyro.sample("theta", dist.Uniform(-3.0, 3.0))
        if theta.dim():  # a batch of simulations (the contract's first trace is one draw)
            seen.append(torch.get_num_threads())
        pyro.deterministic("f", theta + SIGMA * noise("eps", like=theta))

    run = TINY_RUNS[method]
    with torch_threads(3):  # a count no default gives
        run(recording_model, threads=1)
        given, seen[:] = set(seen), []
        assert torch.get_num_threads() == 3
        run(recording_model)
        assert (given, set(seen)) == ({1}, {3})  # the default: torch's setting
        seen.clear()
        with pytest.raises(TypeError, match="threads"):
            run(recording_model, threads=1.5)
        assert seen == [] and torch.get_num_threads() == 3


def test_model_without_statistics_is_rejected():
    with pytest.raises(ValueError, match="no statistic sites"):
        NPE(no_statistics_model, PROP, simulations=10, progress=False)


def test_unbounded_parameter_under_smcabc_is_rejected():
    with pytest.raises(ValueError, match=r"bounded parameters.*\['theta'\]"):
        SMCABC(normal_prior_model, PROP, simulations=100, progress=False)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="simulations"):
        NPE(gaussian_model, PROP, simulations=0)
    with pytest.raises(ValueError, match="epsilon_decay"):
        SMCABC(gaussian_model, PROP, epsilon_decay=1.5)
    with pytest.raises(ValueError, match="min_kernel_acceptance"):
        SMCABC(gaussian_model, PROP, min_kernel_acceptance=1.0)
    with pytest.raises(TypeError, match="prop"):
        NPE(gaussian_model, {"f": 1.0})


@pytest.mark.parametrize("particles, dim", [(1000, 8), (200, 1), (50, 20)])
def test_silverman_scale_is_scipys_silverman_factor_squared(particles, dim):
    from scipy.stats import gaussian_kde

    from pyro_circuits.sbi.smcabc import silverman_scale

    kde = gaussian_kde(np.random.default_rng(0).normal(size=(dim, particles)), "silverman")
    assert silverman_scale(particles, dim) == pytest.approx(kde.factor**2)


def test_smcabc_with_pyabcs_silverman_kernel():
    from pyro_circuits.sbi.smcabc import silverman_scale

    result = SMCABC(gaussian_model, PROP, simulations=1500, particles=100,
                    kernel_variance_scale="silverman", seed=0, progress=False)  # fmt: skip
    assert result.settings["kernel_variance_scale"] == pytest.approx(silverman_scale(100, 1))
    assert abs(result.sample(1000, seed=0)["theta"].mean().item() - 1.0) < 0.2
    with pytest.raises((TypeError, ValueError), match="kernel_variance_scale"):
        SMCABC(gaussian_model, PROP, kernel_variance_scale="scott", progress=False)

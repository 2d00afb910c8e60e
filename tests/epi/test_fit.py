import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import Normal

from pyro_circuits import EmergentProperty, EPIConfig, EPIResult, FlowConfig, SimulationError, epi
from pyro_circuits.threads import torch_threads

TINY = EPIConfig(batch_size=64, epochs=1, iterations=5, test_batches=10, init_iterations=5)
SMALL_FLOW = FlowConfig(units=16)


def identity_model():
    a = pyro.sample("a", dist.Uniform(-5.0, 5.0))
    b = pyro.sample("b", dist.Uniform(-5.0, 5.0))
    pyro.deterministic("f", a)
    pyro.deterministic("g", b)


def exploding_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    pyro.deterministic("f", torch.where(a > 0, a / 0.0, a))


def no_statistics_model():
    pyro.sample("a", dist.Uniform(-1.0, 1.0))


GAUSSIAN = EmergentProperty(mean={"f": 1.0, "g": -2.0}, variance={"f": 0.5**2, "g": 1.0**2})


GAUSSIAN_CONFIG = EPIConfig(
    batch_size=200, epochs=3, iterations=250, c0=1.0, test_batch_size=500, init_iterations=100
)


@pytest.fixture(scope="module")
def gaussian_fit():
    return epi(identity_model, GAUSSIAN, config=GAUSSIAN_CONFIG, flow=SMALL_FLOW, progress=False)


def test_max_entropy_under_moment_constraints_is_gaussian(gaussian_fit):
    """With f(z) = z, the max-entropy distribution of given mean and variance is the Gaussian."""
    result = gaussian_fit
    assert result.converged
    draws = result.sample(20_000, seed=1)
    assert abs(draws["a"].mean() - 1.0) < 0.05
    assert abs(draws["a"].std() - 0.5) < 0.05
    assert abs(draws["b"].std() - 1.0) < 0.1
    # Entropy of two independent Gaussians: ½ log(2πe σ²) each.
    expected = 0.5 * torch.log(2 * torch.pi * torch.e * torch.tensor([0.25, 1.0])).sum()
    assert abs(result.entropy() - expected.item()) < 0.1
    assert result.check()["converged"].all()
    history = result.history
    assert list(history["epoch"]) == list(range(GAUSSIAN_CONFIG.epochs + 1))
    assert history["converged"].iloc[result.epoch]
    assert (history["c"] >= GAUSSIAN_CONFIG.c0).all()


def test_same_seed_same_result_and_save_load_round_trip(tmp_path):
    first = epi(identity_model, GAUSSIAN, config=TINY, flow=SMALL_FLOW, seed=3, progress=False)
    second = epi(identity_model, GAUSSIAN, config=TINY, flow=SMALL_FLOW, seed=3, progress=False)
    torch.testing.assert_close(first.sample(10, seed=0)["a"], second.sample(10, seed=0)["a"])
    path = first.save(tmp_path / "epi.pt")
    loaded = EPIResult.load(path)
    torch.testing.assert_close(loaded.sample(10, seed=7)["a"], first.sample(10, seed=7)["a"])
    torch.testing.assert_close(
        loaded.log_prob({"a": torch.zeros(1), "b": torch.zeros(1)}),
        first.log_prob(torch.zeros(1, 2)),
    )


def test_no_gaussian_initialisation_starts_from_the_flow_as_built():
    config = EPIConfig(batch_size=64, epochs=1, iterations=5, test_batches=10, init_iterations=0)
    result = epi(identity_model, GAUSSIAN, config=config, flow=SMALL_FLOW, progress=False)
    assert result.simulations == 5 * 64


def test_initial_gaussian_can_be_given():
    """q starts as the given Gaussian: its epoch-0 entropy is the Gaussian's, its draws sit there."""
    config = EPIConfig(
        batch_size=200, epochs=1, iterations=1, lr=1e-6, test_batches=10, init_iterations=400
    )
    start = Normal(torch.tensor([3.0, -3.0]), torch.tensor([0.5, 0.5]))
    result = epi(
        identity_model, GAUSSIAN, config=config, flow=SMALL_FLOW, init=start, progress=False
    )
    assert result.history["entropy"][0] == pytest.approx(start.entropy().sum().item(), abs=0.1)
    draws = result.sample(2000, seed=0)
    assert draws["a"].mean().item() == pytest.approx(3.0, abs=0.1)
    assert draws["b"].std().item() == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="batch shape"):
        epi(identity_model, GAUSSIAN, config=TINY, init=Normal(0.0, 1.0), progress=False)


def test_several_seeds_keep_the_converged_run_of_greatest_entropy():
    result = epi(
        identity_model, GAUSSIAN, config=TINY, flow=SMALL_FLOW, seed=[0, 1], progress=False
    )
    assert list(result.restarts["seed"]) == [0, 1]
    ranking = result.restarts.sort_values(["converged", "entropy"]).iloc[-1]
    assert result.seed == ranking["seed"]


def test_runs_with_one_thread_by_default_or_the_given_count_and_restores_torch_s():
    seen = []

    def recording_model():
        a = pyro.sample("a", dist.Uniform(-5.0, 5.0))
        b = pyro.sample("b", dist.Uniform(-5.0, 5.0))
        if a.requires_grad:  # the Adam steps (the pre-check simulates prior draws without grad)
            seen.append(torch.get_num_threads())
        pyro.deterministic("f", a)
        pyro.deterministic("g", b)

    fit = dict(config=TINY, flow=SMALL_FLOW, progress=False)
    with torch_threads(3):  # a count no default gives
        epi(recording_model, GAUSSIAN, **fit)
        default, seen[:] = set(seen), []
        epi(recording_model, GAUSSIAN, threads=2, **fit)
        given, seen[:] = set(seen), []
        epi(recording_model, GAUSSIAN, threads=None, **fit)
        assert (default, given, set(seen)) == ({1}, {2}, {3})
        assert torch.get_num_threads() == 3
        seen.clear()
        with pytest.raises(ValueError, match="threads"):
            epi(recording_model, GAUSSIAN, threads=0, **fit)
        assert seen == [] and torch.get_num_threads() == 3  # checked before any simulation


def test_nan_from_the_simulator_is_reported_with_parameters():
    prop = EmergentProperty(mean={"f": 0.0}, variance={"f": 1.0})
    with pytest.raises(SimulationError, match="offending parameter values"):
        epi(exploding_model, prop, config=TINY, flow=SMALL_FLOW, progress=False)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="no statistic sites"):
        epi(no_statistics_model, GAUSSIAN, config=TINY, progress=False)
    with pytest.raises(ValueError, match="does not declare"):
        epi(
            identity_model,
            EmergentProperty(mean={"h": 0.0}, variance={"h": 1.0}),
            config=TINY,
            progress=False,
        )
    with pytest.raises(TypeError, match="EmergentProperty"):
        epi(identity_model, {"f": 1.0}, config=TINY, progress=False)
    with pytest.raises(ValueError, match="params"):
        epi(identity_model, GAUSSIAN, params=["c"], config=TINY, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        EPIConfig(batch_size=5)


def test_mode_holds_fixed_coordinates_and_finds_the_peak(gaussian_fit):
    result = gaussian_fit
    mode = result.mode(fixed={"b": 0.5}, steps=300)
    assert mode["b"].item() == pytest.approx(0.5, abs=1e-5)
    assert abs(mode["a"].item() - 1.0) < 0.2
    with pytest.raises(ValueError, match="unknown coordinates"):
        result.mode(fixed={"z": 0.0})


def test_inference_data_groups():
    result = epi(identity_model, GAUSSIAN, config=TINY, flow=SMALL_FLOW, progress=False)
    idata = result.to_inference_data(n=400)
    assert set(idata.groups()) >= {
        "posterior",
        "posterior_predictive",
        "sample_stats",
        "constant_data",
    }
    assert idata.posterior["a"].shape == (4, 100)
    assert idata.sample_stats.attrs["method"] == "epi"
    assert idata.constant_data["property_mean_f"].values.item() == 1.0


def test_a_feasible_start_is_kept_when_the_optimisation_loses_it():
    """Started at the property's own Gaussian, epoch 0 passes; an optimisation wrecked by a huge
    learning rate fails every later test, so the start is the converged epoch returned."""
    init = Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0]))
    config = EPIConfig(
        batch_size=100, epochs=1, iterations=10, lr=5.0, c0=1.0, test_batch_size=300,
        init_iterations=150, init_lr=1e-2,
    )  # fmt: skip
    result = epi(identity_model, GAUSSIAN, config=config, flow=SMALL_FLOW, init=init,
                 progress=False)  # fmt: skip
    history = result.history.set_index("epoch")
    assert history.loc[0, "converged"] and not history.loc[1, "converged"]
    assert result.converged and result.epoch == 0
    assert result.selected_entropy == pytest.approx(history.loc[0, "entropy"])

"""Diagnostics: the shared convergence distance and SBC / expected coverage for NPE."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_circuits.diagnostics import inference_data
from pyro_circuits.epi import EmergentProperty
from pyro_circuits.property import predictive_distance
from pyro_circuits.sbi import NPE, SMCABC, calibration
from pyro_circuits.sites import noise

PROP = EmergentProperty(mean={"f": 0.0}, variance={"f": 0.25})


def model():
    theta = pyro.sample("theta", dist.Uniform(-2.0, 2.0))
    pyro.deterministic("f", theta + 0.5 * noise("eps", like=theta))


def test_predictive_distance_accepts_dicts_and_matrices():
    prop = EmergentProperty(mean={"a": 1.0, "b": [0.0, 0.0]}, variance={"a": 1.0, "b": [1, 1]})
    stats = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([[3.0, 4.0], [3.0, 4.0]])}
    assert predictive_distance(stats, prop) == pytest.approx(5.0)
    assert predictive_distance(prop.flatten(stats), prop) == pytest.approx(5.0)


def test_inference_data_names_vector_dimensions():
    idata = inference_data({"U": torch.zeros(8, 3)}, predictive={"f": torch.zeros(8)}, chains=2)
    assert idata.posterior["U"].dims == ("chain", "draw", "U_dim_0")
    assert idata.posterior_predictive["f"].shape == (2, 4)


def test_inference_data_pairs_the_property_with_the_predictive_draws():
    idata = inference_data(
        {"theta": torch.zeros(8)},
        predictive={"f": torch.ones(8)},
        prior={"theta": torch.linspace(-2, 2, 8)},
        prior_predictive={"f": torch.linspace(-2, 2, 8)},
        prop=PROP,
        chains=2,
    )
    assert idata.observed_data["f"].dims == idata.posterior_predictive["f"].dims[2:] == ()
    assert float(idata.observed_data["f"]) == 0.0
    prior = torch.as_tensor(idata.prior["theta"].values)  # consecutive draws, chain by chain
    torch.testing.assert_close(prior, torch.linspace(-2, 2, 8).reshape(2, 4))
    assert idata.prior_predictive["f"].shape == (2, 4)
    with pytest.raises(ValueError, match="prior draws must share one leading size"):
        inference_data({"theta": torch.zeros(8)}, prior={"theta": torch.zeros(1)}, chains=2)


def test_calibration_of_npe_in_one_call():
    result = NPE(
        model,
        PROP,
        simulations=200,
        check_samples=0,
        progress=False,
        estimator_kwargs={"hidden_features": 10, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 15, "learning_rate": 5e-3},
    )
    assert not result.sequential
    report = calibration(result, n=20, posterior_samples=30, seed=0)
    assert report["ranks"].shape == (20, 1)
    assert ((report["ranks"] >= 0) & (report["ranks"] <= 30)).all()
    assert report["ks_pvals"].shape == (1,)
    coverage = report["coverage"]
    assert list(coverage.columns) == ["level", "empirical"]
    assert coverage["empirical"].is_monotonic_increasing
    assert coverage["empirical"].between(0, 1).all()


def test_calibration_needs_an_npe_result():
    result = SMCABC(model, PROP, simulations=200, particles=20, progress=False)
    with pytest.raises(TypeError, match="NPEResult"):
        calibration(result)


def test_calibration_refuses_a_sequential_npe():
    result = NPE(
        model, PROP, simulations=100, rounds=2, check_samples=0, progress=False,
        estimator_kwargs={"hidden_features": 10, "num_transforms": 1},
        train_kwargs={"max_num_epochs": 2},
    )  # fmt: skip
    assert result.sequential and len(result.history) == 2
    with pytest.raises(ValueError, match="sequential NPE \\(2 rounds\\).*rounds=1"):
        calibration(result)
    with pytest.raises(ValueError, match="posterior_samples"):
        calibration(result, posterior_samples=0)

"""One protocol test for every result: parameter posteriors (EPI, NPE, SMC-ABC) and
trial-conditioned fits (LFADS, the calcium ladder, the baselines)."""

import arviz as az
import pandas as pd
import pytest
import torch

from pyro_circuits import results
from pyro_circuits.baselines import ThresholdDeconvolution, condition_psth, gaussian_smoothing
from pyro_circuits.compare import summary_row
from pyro_circuits.datasets import lorenz
from pyro_circuits.epi import EPIConfig, FlowConfig, epi
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS, Rank2RNN
from pyro_circuits.models.calcium import ar1_calcium
from pyro_circuits.results import InferenceResult, TrialPosterior
from pyro_circuits.sbi import NPE, SMCABC
from pyro_circuits.svi import SVIFit, train

MODEL, PROP = Rank2RNN(2), Rank2RNN.stable_amplification()
TINY_EPI = EPIConfig(batch_size=40, epochs=1, iterations=10, test_batches=10, init_iterations=10)


def _epi():
    return epi(MODEL, PROP, config=TINY_EPI, flow=FlowConfig(units=8), progress=False)


def _npe():
    return NPE(
        MODEL,
        PROP,
        simulations=300,
        check_samples=100,
        progress=False,
        train_kwargs={"max_num_epochs": 3},
    )


def _smcabc():
    return SMCABC(MODEL, PROP, simulations=600, particles=50, progress=False)


@pytest.fixture(scope="module", params=[_epi, _npe, _smcabc], ids=["epi", "npe", "smcabc"])
def posterior(request):
    return request.param()


def test_parameter_draws_keep_each_sites_declared_shape(posterior):
    assert isinstance(posterior, InferenceResult)
    draws = posterior.sample(7, seed=1)
    assert set(draws) == {"U", "V"}
    assert all(value.shape == (7, 2, 2) for value in draws.values())  # U, V are n × 2
    again = posterior.sample(7, seed=1)
    assert all(torch.equal(draws[k], again[k]) for k in draws)


def test_predictive_log_prob_and_entropy(posterior):
    stats = posterior.predictive(5, seed=0)
    assert set(stats) == {"real_lambda", "sym_lambda"} and stats["real_lambda"].shape == (5,)
    draws = posterior.sample(5, seed=2)
    if posterior.method == "smcabc":  # weighted particles: no density
        with pytest.raises(NotImplementedError):
            posterior.log_prob(draws)
        assert posterior.entropy() is None
    else:
        assert posterior.log_prob(draws).shape == (5,)
        assert torch.isfinite(posterior.log_prob(draws)).all()
        assert isinstance(posterior.entropy(), float)


def test_cost_convergence_and_trace(posterior):
    assert posterior.wall_time > 0 and posterior.simulations > 0
    assert isinstance(posterior.converged, bool)
    trace = posterior.convergence_trace()
    median = ["median_distance"] if posterior.method == "npe" else []
    assert list(trace.columns) == ["simulations", "wall_time", "distance", *median]
    assert len(trace) >= 1 and trace["simulations"].is_monotonic_increasing
    assert (trace["distance"] >= 0).all()


def test_check_inference_data_and_the_comparison_row(posterior):
    table = posterior.check(batches=10, batch_size=20)
    assert isinstance(table, pd.DataFrame) and list(table["statistic"]) == PROP.names
    idata = posterior.to_inference_data(n=40)
    assert {"posterior", "posterior_predictive"} <= set(idata.groups())
    assert idata.posterior["U"].shape[-2:] == (2, 2)
    row = summary_row(posterior, draws=80)
    assert row["method"] == posterior.method and row["simulations"] == posterior.simulations


def test_simulations_of_a_result_run_the_model_in_chunks(posterior, monkeypatch, model_batch_sizes):
    sizes = model_batch_sizes
    monkeypatch.setattr(results, "SIMULATION_CHUNK", 30)
    assert posterior.predictive(70, seed=0)["real_lambda"].shape == (70,)
    assert posterior.prior_predictive(40)[1]["sym_lambda"].shape == (40,)
    assert sizes == [30, 30, 10, 30, 10]
    sizes.clear()
    posterior.to_inference_data(n=40)  # the draws' predictive and the prior's
    assert sizes == [30, 10, 30, 10]


def test_save_and_load_give_the_same_result(posterior, tmp_path):
    path = posterior.save(tmp_path / "result.pt")
    loaded = type(posterior).load(path)
    assert torch.equal(loaded.sample(5, seed=3)["U"], posterior.sample(5, seed=3)["U"])
    with pytest.raises(TypeError, match="not a"):
        SVIFit.load(path)


DATA = lorenz(n_conditions=4, n_trials=5, n_neurons=12, n_heldout=3)


def _lfads():
    model = LFADS(12, ic_dim=2, gen_dim=4, fac_dim=2)
    encoder = LFADSEncoder(model, enc_dim=4)
    fit = train(model, encoder, DATA.train.counts, max_epochs=2, progress=False)
    return fit, DATA.valid.counts


def _smoothing():  # reads the held-in neurons of the whole recording, predicts every neuron
    return gaussian_smoothing(DATA), DATA.valid.counts


def _psth():
    return condition_psth(DATA), DATA.valid.counts


@pytest.fixture(
    scope="module", params=[_lfads, _smoothing, _psth], ids=["lfads", "smoothing", "psth"]
)
def trial_fit(request):
    return request.param()


def test_trial_posteriors_share_one_interface(trial_fit, tmp_path):
    fit, counts = trial_fit
    assert isinstance(fit, TrialPosterior)
    mean = fit.posterior_mean(counts, num_samples=3, seed=0)
    assert mean["rates"].shape[:2] == counts.shape[:2]
    draws = fit.sample(counts, num_samples=3, seed=0)
    assert draws["rates"].shape[:3] == (3, *counts.shape[:2])
    idata = fit.to_inference_data(counts, num_samples=3, seed=0)
    assert {"posterior", "posterior_predictive", "observed_data"} <= set(idata.groups())
    az.summary(idata, var_names=["rates"], kind="stats")
    loaded = type(fit).load(fit.save(tmp_path / "fit.pt"))
    assert torch.equal(loaded.posterior_mean(counts, num_samples=3, seed=0)["rates"], mean["rates"])


def test_a_deconvolution_baseline_reads_spikes_out_of_fluorescence():
    spikes = torch.zeros(2, 60, 3)
    spikes[:, [10, 40], :] = 1.0
    fit = ThresholdDeconvolution(dt=0.01, tau=0.4)
    estimate = fit.posterior_mean(ar1_calcium(spikes, dt=0.01, tau=0.4))
    assert isinstance(fit, TrialPosterior)
    assert torch.equal(estimate["spikes"], spikes)

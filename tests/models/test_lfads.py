import math

import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.lfads import AR1Normal, AR1StudentT

SIZES = dict(ic_dim=3, gen_dim=6, fac_dim=2)


def counts(trials=4, steps=9, neurons=5, seed=0):
    return torch.poisson(
        torch.full((trials, steps, neurons), 0.7), generator=torch.Generator().manual_seed(seed)
    )


def sample_sites(trace):
    return {
        name: [frame.name for frame in site["cond_indep_stack"]]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name != "trials"
    }


@pytest.mark.parametrize("co_dim", [0, 2])
def test_model_and_guide_sites_and_plates_match(co_dim):
    model = LFADS(5, co_dim=co_dim, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)
    x = counts()
    guide_trace = poutine.trace(guide).get_trace(x, n_trials=20)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, n_trials=20)
    expected = {"ic": ["trials"]} | ({"co": ["trials"]} if co_dim else {})
    assert sample_sites(guide_trace) == expected
    latent = {k: v for k, v in sample_sites(model_trace).items() if k in expected}
    assert latent == expected
    assert model_trace.nodes["counts"]["scale"] == pytest.approx(5.0)  # minibatch of 4 out of 20
    assert model_trace.nodes["rates"]["value"].shape == (4, 9, 5)
    for name in expected:
        assert model_trace.nodes[name]["value"] is guide_trace.nodes[name]["value"]


def test_mixture_ic_prior_is_the_mean_of_its_components_densities():
    model = LFADS(5, ic_prior_components=3, **SIZES)
    ic = torch.randn(7, SIZES["ic_dim"])
    mean, scale = model.ic_prior_mean, model.ic_prior_log_scale.exp()
    each = torch.distributions.Normal(mean, scale).log_prob(ic[:, None]).sum(-1)  # [7, 3]
    expected = torch.logsumexp(each, -1) - math.log(3)
    torch.testing.assert_close(model.ic_prior().log_prob(ic), expected)
    single = LFADS(5, ic_prior_var=0.1, **SIZES).ic_prior()
    expected = torch.distributions.Normal(0.0, math.sqrt(0.1)).log_prob(ic).sum(-1)
    torch.testing.assert_close(single.log_prob(ic), expected)


def test_mixture_ic_prior_learns_shared_starts():
    """Fitted to initial conditions drawn near two shared starts, the mixture puts a component
    on each start and shrinks its scale to their spread, as the ELBO's ic term asks."""
    torch.manual_seed(0)
    starts = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5]])
    ic = starts.repeat(50, 1) + 0.05 * torch.randn(100, 3)
    model = LFADS(5, ic_prior_components=2, **SIZES)
    prior_params = [model.ic_prior_mean, model.ic_prior_log_scale]
    optimizer = torch.optim.Adam(prior_params, lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        (-model.ic_prior().log_prob(ic).mean()).backward()
        optimizer.step()
    distance = torch.cdist(starts, model.ic_prior_mean.detach())
    assert distance.min(1).values.max() < 0.05  # each start has a component on it
    assert model.ic_prior_log_scale.exp().max() < 0.1  # from √0.1 ≈ 0.32


def test_model_and_guide_train_with_a_mixture_ic_prior():
    model = LFADS(5, co_dim=1, ic_prior_components=4, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, counts())
    loss.backward()
    assert torch.isfinite(loss)
    assert model.ic_prior_mean.grad.abs().sum() > 0
    assert model.ic_prior_log_scale.grad.abs().sum() > 0


def test_model_reuses_the_guide_generator_run_exactly():
    torch.manual_seed(0)
    model = LFADS(5, co_dim=1, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)
    x = counts()
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    ic, co = guide_trace.nodes["ic"]["value"], guide_trace.nodes["co"]["value"]
    fresh = model.factors(ic, co.clone(), None, x.shape[1])  # step-by-step vs fused GRU run
    torch.testing.assert_close(model_trace.nodes["factors"]["value"], fresh, rtol=1e-5, atol=1e-6)


def test_ar1_prior_is_stationary_with_the_right_variance():
    alpha, scale = torch.tensor([0.9, 0.5]), torch.tensor([0.3, 1.0])
    prior = AR1Normal(alpha, scale, n_steps=6)
    draws = prior.sample((40000,))
    expected = scale**2 / (1 - alpha**2)
    torch.testing.assert_close(draws.var(0), expected.expand(6, 2), rtol=0.05, atol=0.0)
    lag1 = (draws[:, 1:] * draws[:, :-1]).mean((0, 1))
    torch.testing.assert_close(lag1, alpha * expected, rtol=0.06, atol=0.01)


def test_ar1_log_prob_matches_the_chain_rule():
    alpha, scale = torch.tensor([0.8]), torch.tensor([0.5])
    x = torch.tensor([[0.3], [-0.2], [0.1]])
    normal = torch.distributions.Normal
    expected = (
        normal(0, 0.5 / math.sqrt(1 - 0.64)).log_prob(x[0])
        + normal(0.8 * x[0], 0.5).log_prob(x[1])
        + normal(0.8 * x[1], 0.5).log_prob(x[2])
    ).sum()
    torch.testing.assert_close(AR1Normal(alpha, scale, 3).log_prob(x), expected)


def test_student_t_ar1_log_prob_matches_the_chain_rule():
    alpha, scale = torch.tensor([0.8]), torch.tensor([0.5])
    x = torch.tensor([[0.3], [-0.2], [1.5]])
    t = torch.distributions.StudentT
    expected = (
        t(3.0, 0, 0.5 / math.sqrt(1 - 0.64)).log_prob(x[0])
        + t(3.0, 0.8 * x[0], 0.5).log_prob(x[1])
        + t(3.0, 0.8 * x[1], 0.5).log_prob(x[2])
    ).sum()
    torch.testing.assert_close(AR1StudentT(alpha, scale, 3, df=3.0).log_prob(x), expected)


def test_student_t_ar1_has_the_stationary_variance():
    alpha, scale, df = torch.tensor([0.7]), torch.tensor([0.4]), 6.0
    draws = AR1StudentT(alpha, scale, n_steps=4, df=df).expand([2]).sample((40000,))
    expected = df / (df - 2) * scale**2 / (1 - alpha**2)
    torch.testing.assert_close(draws.var(0), expected.expand(2, 4, 1), rtol=0.1, atol=0.0)


def test_student_t_prior_prefers_one_pulse_to_the_same_input_spread_out():
    alpha, scale = torch.tensor([0.01]), torch.tensor([0.25])
    pulse = torch.zeros(8, 1)
    pulse[4] = 3.0
    spread = torch.zeros(8, 1)
    spread[2:7] = 0.6
    gaussian, student = AR1Normal(alpha, scale, 8), AR1StudentT(alpha, scale, 8, df=2.0)
    assert gaussian.log_prob(spread) > gaussian.log_prob(pulse) + 10
    assert student.log_prob(pulse) > student.log_prob(spread) + 2
    with pytest.raises(ValueError, match="df"):
        AR1StudentT(alpha, scale, 8, df=0.0)


def test_lfads_takes_a_student_t_input_prior():
    model = LFADS(5, co_dim=1, co_prior_df=2.0, **SIZES)
    assert isinstance(model.co_prior(4), AR1StudentT)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=4, con_dim=4)
    x = counts()
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    assert isinstance(model_trace.nodes["co"]["fn"], AR1StudentT)
    assert torch.isfinite(model_trace.nodes["co"]["log_prob"]).all()
    with pytest.raises(ValueError, match="co_prior_df"):
        LFADS(5, co_dim=1, co_prior_df=-1.0, **SIZES)


def test_co_prior_time_constant_and_variance_are_learnable():
    model = LFADS(5, co_dim=1, co_tau=10.0, co_noise_var=0.1, **SIZES)
    prior = model.co_prior(4)
    assert prior.alpha.item() == pytest.approx(math.exp(-0.1))
    assert prior.scale.item() ** 2 == pytest.approx(0.1)
    names = {n for n, _ in model.named_parameters()}
    assert {"co_log_tau", "co_log_noise_var"} <= names


def test_external_inputs_drive_the_generator():
    torch.manual_seed(1)
    model = LFADS(5, ext_dim=2, **SIZES)
    x, inputs = counts(), torch.randn(4, 9, 2)
    ic = torch.zeros(4, 3)
    changed = model.factors(ic, None, inputs + 1.0, 9)
    assert not torch.allclose(model.factors(ic, None, inputs, 9), changed)
    trace = poutine.trace(model).get_trace(x, inputs)
    assert trace.nodes["counts"]["fn"].batch_shape == (4,)
    with pytest.raises(ValueError, match="inputs"):
        model(x)


def test_gaussian_likelihood_accepts_real_valued_data():
    model = LFADS(5, likelihood="gaussian", **SIZES)
    trace = poutine.trace(model).get_trace(torch.randn(4, 9, 5))
    assert torch.isfinite(trace.log_prob_sum())


def test_coordinated_dropout_scores_only_the_dropped_entries():
    model = LFADS(5, **SIZES)
    x = counts()
    mask = torch.zeros_like(x)
    mask[:, :4] = 2.0  # kept (and scaled) entries: not scored
    pyro.set_rng_seed(0)
    masked = poutine.trace(model).get_trace(x, cd_mask=mask).nodes["counts"]
    pyro.set_rng_seed(0)
    full = poutine.trace(model).get_trace(x).nodes["counts"]
    base = full["fn"].base_dist
    expected = base.log_prob(x)[:, 4:].sum((-1, -2))
    torch.testing.assert_close(masked["fn"].log_prob(x), expected)


@pytest.mark.parametrize(
    "bad, message",
    [
        (-counts(), "non-negative integer"),
        (counts() + 0.5, "non-negative integer"),
        (counts().masked_fill(torch.eye(9, 5, dtype=torch.bool), float("nan")), "NaN"),
        (counts()[0], "shape"),
        (counts(neurons=4), "neurons"),
        ([[[1.0]]], "torch.Tensor"),
    ],
)
def test_malformed_counts_are_rejected(bad, message):
    model = LFADS(5, **SIZES)
    error = TypeError if message == "torch.Tensor" else ValueError
    with pytest.raises(error, match=message):
        model(bad)
    with pytest.raises(error, match=message):
        LFADSEncoder(model, enc_dim=4)(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ic_dim=0),
        dict(co_dim=-1),
        dict(likelihood="bernoulli"),
        dict(dt=0.0),
        dict(ic_prior_components=0),
    ],
)
def test_bad_configuration_is_rejected(kwargs):
    with pytest.raises(ValueError):
        LFADS(5, **(SIZES | kwargs))


def test_init_readout_sets_the_mean_log_rate():
    x = counts()
    model = LFADS(5, dt=0.01, **SIZES).init_readout(x)
    torch.testing.assert_close(model.readout.bias, torch.log(x.mean((0, 1)) / 0.01))

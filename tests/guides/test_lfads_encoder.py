import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS

SIZES = dict(ic_dim=3, gen_dim=6, fac_dim=2)


def counts(trials=3, steps=8, neurons=5):
    return torch.poisson(
        torch.full((trials, steps, neurons), 1.0), generator=torch.Generator().manual_seed(0)
    )


def test_controller_inputs_are_lagged():
    torch.manual_seed(0)
    model = LFADS(5, co_dim=1, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4, ci_lag=2).eval()
    x = counts()
    changed = x.clone()
    changed[:, 5] += 3.0  # a change at t = 5 reaches the forward half only from t = 7 on
    base, new = guide._controller_inputs(x), guide._controller_inputs(changed)
    forward_diff = (base[..., :3] - new[..., :3]).abs().amax((0, 2))
    backward_diff = (base[..., 3:] - new[..., 3:]).abs().amax((0, 2))
    assert (forward_diff[:7] == 0).all() and (forward_diff[7:] > 0).all()
    assert (backward_diff[4:] == 0).all() and (backward_diff[:4] > 0).all()


def test_encoder_reads_only_the_observed_neurons():
    torch.manual_seed(0)
    model = LFADS(5, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, observed=[0, 1, 2]).eval()
    x = counts()
    changed = x.clone()
    changed[..., 3:] += 5
    pyro.set_rng_seed(1)
    a = poutine.trace(guide).get_trace(x).nodes["ic"]["fn"].base_dist.loc
    pyro.set_rng_seed(1)
    b = poutine.trace(guide).get_trace(changed).nodes["ic"]["fn"].base_dist.loc
    torch.testing.assert_close(a, b)


def test_co_entropy_is_sampled_under_the_mean_field_elbo():
    torch.manual_seed(0)
    model = LFADS(5, co_dim=1, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)
    x = counts()
    pyro.set_rng_seed(0)
    mean_field = pyro.infer.TraceMeanField_ELBO().differentiable_loss(model, guide, x)
    pyro.set_rng_seed(0)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_q_co = guide_trace.nodes["co"]["fn"].log_density
    assert log_q_co.shape == (3,) and (log_q_co != 0).all()
    ic_q, ic_p = guide_trace.nodes["ic"]["fn"], model_trace.nodes["ic"]["fn"]
    expected = (
        torch.distributions.kl_divergence(ic_q, ic_p).sum()
        - model_trace.nodes["counts"]["fn"].log_prob(x).sum()
        - model_trace.nodes["co"]["fn"].log_prob(model_trace.nodes["co"]["value"]).sum()
        + log_q_co.sum()
    )
    torch.testing.assert_close(mean_field, expected)


def test_guide_requires_an_lfads_model_and_valid_sizes():
    with pytest.raises(TypeError, match="model"):
        LFADSEncoder(object())
    with pytest.raises(ValueError, match="enc_dim"):
        LFADSEncoder(LFADS(5, **SIZES), enc_dim=0)


def test_guide_samples_broadcast_over_a_particle_plate():
    model = LFADS(5, co_dim=1, **SIZES)
    guide = LFADSEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)
    with pyro.plate("particles", 7, dim=-2):
        trace = poutine.trace(guide).get_trace(counts())
    assert trace.nodes["ic"]["value"].shape == (7, 3, 3)
    assert trace.nodes["co"]["value"].shape == (7, 3, 8, 1)

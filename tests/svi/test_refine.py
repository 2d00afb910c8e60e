import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import SVIFit, refine, train

NOISE = 0.5  # x = ic + N(0, NOISE²), ic ~ N(0, 1): the posterior is N(0.8 x, 0.2)


class GaussianModel(PyroModule):
    def __init__(self) -> None:
        super().__init__()
        self.prior_scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x, inputs=None, *, n_trials=None):
        with pyro.plate("trials", len(x), dim=-1):
            ic = pyro.sample("ic", dist.Normal(0.0, self.prior_scale).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(ic, NOISE).to_event(1), obs=x)


class LinearEncoder(PyroModule):
    """q(ic | x) = N(gain·x, scale²), started far from the posterior: gain 0.25, scale 1."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.25))
        self.log_scale = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, inputs=None, *, n_trials=None):
        with pyro.plate("trials", len(x), dim=-1):
            pyro.sample("ic", dist.Normal(self.gain * x, self.log_scale.exp()).to_event(1))


def test_refine_reaches_the_exact_gaussian_posterior_and_leaves_the_fit_alone():
    x = 2 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    fit = SVIFit(GaussianModel(), LinearEncoder())
    refined = refine(fit, x, steps=300, lr=0.05, num_particles=64, progress=False)
    shrink = 1 / (1 + NOISE**2)
    assert refined.guide.gain.item() == pytest.approx(shrink, abs=0.02)
    assert refined.guide.log_scale.exp().item() == pytest.approx(
        math.sqrt(shrink) * NOISE, abs=0.02
    )
    post = refined.posterior_mean(x, num_samples=4000)
    torch.testing.assert_close(post["ic"], shrink * x, atol=0.06, rtol=0)
    assert (fit.guide.gain.item(), fit.guide.log_scale.item()) == (0.25, 0.0)
    assert refined.model.prior_scale.item() == 1.0 and fit.guide.training


def _lfads():
    model = LFADS(5, ic_dim=3, gen_dim=8, fac_dim=3, co_dim=1)
    return model, LFADSEncoder(model, enc_dim=6)


def _ladder():
    model = CalciumLFADS(5, z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2, co_dim=1)
    return model, LadderEncoder(model, enc_dim=5, con_dim=5, deep=dict(enc_dim=5, ci_dim=5))


@pytest.mark.parametrize(
    "build, data",
    [
        (_lfads, lambda spikes: spikes),
        (_ladder, lambda spikes: fluorescence_from_spikes(spikes, seed=0)[1]),
    ],
    ids=["lfads", "ladder"],
)
def test_refine_raises_the_elbo_of_the_trials_it_refines(build, data):
    torch.manual_seed(0)
    observed = data(torch.poisson(torch.linspace(0.2, 3.0, 5).expand(12, 15, 5)))
    fit = train(*build(), observed, max_epochs=3, progress=False)
    refined = refine(fit, observed, steps=60, lr=1e-2, progress=False)
    assert refined.guide.model is refined.model and refined.model is not fit.model

    def loss(f):
        pyro.set_rng_seed(1)
        elbo = pyro.infer.Trace_ELBO(
            num_particles=200, vectorize_particles=True, max_plate_nesting=1
        )
        f.model.eval()
        f.guide.eval()
        with torch.no_grad():
            return elbo.loss(f.model, f.guide, observed) / len(observed)

    assert loss(refined) < loss(fit) - 0.1
    torch.testing.assert_close(
        dict(refined.model.named_parameters()), dict(fit.model.named_parameters())
    )


def test_refine_checks_its_options():
    fit = SVIFit(GaussianModel(), LinearEncoder())
    with pytest.raises(ValueError, match="lr"):
        refine(fit, torch.zeros(2, 2), lr=0.0, progress=False)
    fit.guide.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        refine(fit, torch.zeros(2, 2), progress=False)

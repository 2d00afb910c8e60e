import pyro.distributions as dist
import pytest
import torch

from pyro_circuits.epi import FlowConfig
from pyro_circuits.epi.flow import SupportedFlow
from pyro_circuits.space import ParameterSpace

PRIORS = {
    "a": dist.Uniform(-10.0, 10.0),
    "u": dist.Uniform(-torch.ones(3), torch.ones(3)).to_event(1),
    "rate": dist.LogNormal(0.0, 1.0),
    "x": dist.Normal(0.0, 1.0),
}


def test_support_bijection_round_trips_and_respects_bounds():
    space = ParameterSpace(PRIORS)
    x = torch.randn(100, space.dim)
    theta, _ = space.forward(x)
    torch.testing.assert_close(space.inverse(theta), x, atol=1e-4, rtol=1e-4)
    low, high = space.bounds()
    assert ((theta >= low) & (theta <= high)).all()
    assert (theta[:, 4] > 0).all()
    assert space.coordinate_names == ["a", "u[0]", "u[1]", "u[2]", "rate", "x"]


def test_support_log_det_matches_autograd_jacobian():
    space = ParameterSpace(PRIORS)
    x = torch.randn(space.dim)
    jacobian = torch.autograd.functional.jacobian(lambda v: space.forward(v.unsqueeze(0))[0][0], x)
    _, log_det = space.forward(x.unsqueeze(0))
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jacobian)[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "permutations, coupling",
    [("lu", "affine"), ("shuffle", "affine"), ("none", "affine"), ("lu", "spline")],
)
def test_flow_log_prob_is_a_change_of_variables(permutations, coupling):
    space = ParameterSpace(
        {"a": dist.Uniform(-2.0, 2.0), "b": dist.Uniform(0.0, 1.0), "c": dist.Uniform(-1.0, 3.0)}
    )
    q = SupportedFlow(
        space,
        FlowConfig(units=8, permutations=permutations, coupling=coupling),
        torch.Generator().manual_seed(1),
    )
    # Perturb every parameter so the check does not rely on an identity initialisation.
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.1 * torch.randn_like(p))
    theta, log_q = q.rsample_and_log_prob(5)
    torch.testing.assert_close(q.log_prob(theta), log_q, atol=1e-4, rtol=1e-4)
    # Independent check: base density of the inverse, times |det ∂x/∂θ| by autograd.
    base = torch.distributions.Normal(0.0, 1.0)
    for point, expected in zip(theta, log_q, strict=True):
        x = space.inverse(point.unsqueeze(0))[0]
        z = q.flow().transform(x)
        jac = torch.autograd.functional.jacobian(
            lambda t: q.flow().transform(space.inverse(t.unsqueeze(0))[0]), point
        )
        manual = base.log_prob(z).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(manual, expected, atol=1e-3, rtol=1e-3)


def test_flow_config_validates():
    with pytest.raises(ValueError, match="stages"):
        FlowConfig(stages=0)
    with pytest.raises(ValueError, match="permutations"):
        FlowConfig(permutations="glow")
    with pytest.raises(ValueError, match="coupling"):
        FlowConfig(coupling="maf")

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from scipy import stats

from pyro_circuits import EmergentProperty, EPIConfig, FlowConfig, epi
from pyro_circuits.epi import EPIGuide, EPILoss
from pyro_circuits.models import LDS2D, Rank2RNN
from pyro_circuits.sites import CircuitProgram

SHORT = EPIConfig(batch_size=50, epochs=1, iterations=30, test_batches=20, init_iterations=20)
SMALL_FLOW = FlowConfig(units=16)


def uniform_model():
    x = pyro.sample("x", dist.Uniform(-5.0, 5.0))
    pyro.deterministic("f", x)


STANDARD = EmergentProperty(mean={"f": 0.0}, variance={"f": 1.0})


@pytest.fixture(scope="module")
def lds_fit():
    torch.manual_seed(0)
    return epi(LDS2D(), LDS2D.oscillation(), config=SHORT, flow=SMALL_FLOW, progress=False)


def test_predictive_on_the_trained_guide_matches_the_result(lds_fit):
    result, n = lds_fit, 4000
    assert isinstance(result.guide, EPIGuide)
    names = result.program.statistics
    model = result.program.model
    via_guide = Predictive(
        model, guide=result.guide, num_samples=n, return_sites=names, parallel=True
    )
    ours, theirs = via_guide(), result.predictive(n, seed=1)
    assert set(ours) == set(names)
    for name in names:
        a, b = ours[name].reshape(n), theirs[name]
        assert abs(a.mean() - b.mean()) < 4 * ((a.var() + b.var()) / n).sqrt()
        assert stats.ks_2samp(a.numpy(), b.numpy()).pvalue > 1e-3
    sequential = Predictive(model, guide=result.guide, num_samples=300, return_sites=names)()
    assert {k: tuple(v.shape) for k, v in sequential.items()} == {name: (300,) for name in names}
    for name in names:
        a, b = sequential[name], theirs[name]
        assert abs(a.mean() - b.mean()) < 4 * (a.var() / 300 + b.var() / n).sqrt()


@pytest.mark.filterwarnings("ignore:Found vars in model but not guide")  # the simulator noise
def test_guide_trace_has_the_parameter_sites_and_log_q():
    model = Rank2RNN(3)
    config = EPIConfig(batch_size=50, epochs=1, iterations=3, test_batches=10, init_iterations=3)
    result = epi(
        model, Rank2RNN.stable_amplification(), config=config, flow=SMALL_FLOW, progress=False
    )
    shapes = CircuitProgram(model).param_shapes
    trace = poutine.trace(result.guide).get_trace()
    sample_sites = {k: v for k, v in trace.nodes.items() if v["type"] == "sample"}
    assert {k: v["value"].shape for k, v in sample_sites.items()} == shapes
    draw = {k: v["value"].unsqueeze(0) for k, v in sample_sites.items()}
    torch.testing.assert_close(trace.log_prob_sum(), result.log_prob(draw)[0], atol=1e-4, rtol=1e-4)
    # Vectorised: one draw and one log q per particle.
    with pyro.plate("particles", 6):
        batched = poutine.trace(result.guide).get_trace()
    batched.compute_log_prob()
    values = {k: batched.nodes[k]["value"] for k in shapes}
    assert {k: v.shape for k, v in values.items()} == {k: (6, *s) for k, s in shapes.items()}
    log_q = sum(batched.nodes[k]["log_prob"] for k in shapes)
    torch.testing.assert_close(log_q, result.log_prob(values), atol=1e-4, rtol=1e-4)
    # The ELBO sees the guide's density: E[log p − log q] is finite and differentiable.
    elbo = Trace_ELBO().differentiable_loss(model, result.guide)
    elbo.backward()
    assert torch.isfinite(elbo)
    assert all(p.grad is not None for p in result.guide.parameters())


def test_plain_training_loop_reaches_the_max_entropy_answer():
    """With f(x) = x on [−5, 5], mean 0 and variance 1, the answer is N(0, 1) (barely truncated)."""
    guide = EPIGuide(uniform_model, flow=FlowConfig(units=16, stages=2), seed=0)
    loss = EPILoss(STANDARD, num_particles=200, test_batches=20, seed=0)
    optimizer = torch.optim.Adam(guide.parameters(), lr=1e-2)
    loss.update(loss.test(uniform_model, guide))
    losses = []
    for _ in range(3):
        for _ in range(100):
            optimizer.zero_grad()
            value = loss(uniform_model, guide)
            value.backward()
            optimizer.step()
            losses.append(value.item())
        test = loss.test(uniform_model, guide)
        loss.update(test)
    assert sum(losses[-20:]) < sum(losses[:20])
    assert test.moment.converged
    assert test.entropy == pytest.approx(
        0.5 * torch.log(torch.tensor(2 * torch.pi * torch.e)).item(), abs=0.1
    )
    x = guide.rsample_and_log_prob(20_000)[0].detach()
    assert abs(x.mean()) < 0.1
    assert x.std() == pytest.approx(1.0, abs=0.1)
    assert (loss.eta != 0).all()


def test_the_loss_takes_any_reparameterised_guide():
    with pyro.settings.context(module_local_params=True):
        guide = AutoNormal(uniform_model)
        loss = EPILoss(STANDARD, num_particles=64, test_batches=4)
        value = loss(uniform_model, guide)
        value.backward()
        test = loss.test(uniform_model, guide)
    assert torch.isfinite(value)
    assert all(p.grad is not None for p in guide.parameters())
    assert test.norms.shape == (4,)


def test_conditioning_fixes_a_site():
    guide = EPIGuide(LDS2D(), flow=SMALL_FLOW, seed=0)
    conditioned = poutine.condition(guide, data={"a12": torch.tensor(1.5)})
    trace = poutine.trace(conditioned).get_trace()
    assert trace.nodes["a12"]["value"].item() == 1.5
    assert trace.nodes["a11"]["value"].item() != 1.5
    with pyro.plate("particles", 5):
        values = conditioned()
    assert (values["a12"] == 1.5).all() and values["a11"].shape == (5,)


def test_seeded_guides_start_alike_and_leave_the_global_rng_alone():
    program = CircuitProgram(uniform_model)
    state = torch.get_rng_state()
    first = EPIGuide(program, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    second = EPIGuide(program, seed=4)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="generator or a seed"):
        EPIGuide(uniform_model, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="num_particles"):
        EPILoss(STANDARD, num_particles=5)


def test_max_penalty_caps_the_penalty_growth():
    """An untrained guide never shrinks ‖R‖², so every update grows c: by β, then up to the cap."""
    guide = EPIGuide(uniform_model, flow=FlowConfig(units=8), seed=0)
    capped = EPILoss(STANDARD, num_particles=50, test_batches=10, c0=1.0, max_penalty=10.0, seed=0)
    free = EPILoss(STANDARD, num_particles=50, test_batches=10, c0=1.0, seed=0)
    test = capped.test(uniform_model, guide)
    for loss in (capped, free):
        for _ in range(4):  # the first update only records the baseline
            loss.update(test)
    assert free.c == 4.0**3
    assert capped.c == 10.0
    with pytest.raises(ValueError, match="max_penalty"):
        EPILoss(STANDARD, c0=5.0, max_penalty=1.0)
    with pytest.raises(ValueError, match="max_penalty"):
        EPIConfig(c0=5.0, max_penalty=1.0)

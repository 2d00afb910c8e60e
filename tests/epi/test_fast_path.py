"""EPI's light simulator call (StatisticsRun) against the traced program it replaces."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_circuits import SimulationError
from pyro_circuits.epi import EPIGuide, EPILoss, FlowConfig
from pyro_circuits.epi.program import StatisticsRun
from pyro_circuits.handlers.perturb import optogenetic
from pyro_circuits.models import LDS2D, STG, Rank2RNN
from pyro_circuits.sites import CircuitProgram, noise

MODELS = {
    "lds2d": (LDS2D(), LDS2D.oscillation()),
    "rank2_rnn": (Rank2RNN(50), Rank2RNN.stable_amplification()),
    "stg": (STG(steps=60), STG.intermediate_hub_frequency()),
}


class TracedLoss(EPILoss):
    """The loss with the model run by the full trace, as before the light path."""

    def _simulator(self, program):
        return program


def _step(loss_type, model, prop, seed=0):
    """One seeded loss evaluation and backward pass: the loss and the flow's gradients."""
    guide = EPIGuide(model, flow=FlowConfig(units=8), seed=0)
    pyro.set_rng_seed(seed)
    value = loss_type(prop, num_particles=16)(model, guide)
    value.backward()
    return value.detach(), [p.grad.clone() for p in guide.parameters()]


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_and_gradients_are_those_of_the_traced_program(name):
    model, prop = MODELS[name]
    fast, fast_grads = _step(EPILoss, model, prop)
    traced, traced_grads = _step(TracedLoss, model, prop)
    assert torch.equal(fast, traced)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, traced_grads, strict=True))
    other, _ = _step(EPILoss, model, prop, seed=1)  # the comparison can tell draws apart
    assert not torch.equal(fast, other)


def _both(program, values, seed=0):
    pyro.set_rng_seed(seed)
    fast = StatisticsRun(program).simulate(values)
    pyro.set_rng_seed(seed)
    return fast, program.simulate(values)


def _equal(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_perturbation_handlers_act_on_the_loss_as_on_the_trace():
    model, prop = MODELS["stg"]
    with optogenetic("hub", gain=0.5):
        fast, _ = _step(EPILoss, model, prop)
        traced, _ = _step(TracedLoss, model, prop)
    plain, _ = _step(EPILoss, model, prop)
    assert torch.equal(fast, traced)
    assert not torch.equal(fast, plain)


def test_end_of_epoch_test_is_that_of_the_traced_program():
    model, prop = MODELS["lds2d"]
    guide = EPIGuide(model, flow=FlowConfig(units=8), seed=0)
    tests = []
    for loss_type in (EPILoss, TracedLoss):
        pyro.set_rng_seed(0)
        tests.append(loss_type(prop, num_particles=16, test_batches=4).test(model, guide))
    fast, traced = tests
    assert torch.equal(fast.norms, traced.norms) and fast.entropy == traced.entropy


def plated_model():
    """A parameter feeding a plate of trials with noise inside it."""
    rate = pyro.sample("rate", dist.Uniform(0.0, 2.0))
    with pyro.plate("trials", 3):
        x = rate + noise("eps")
    pyro.deterministic("spread", x.std(-1))


def changing_model():
    """A model whose sites change from call to call: noise on a coin flip."""
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    if torch.rand(()) < 0.5:
        a = a + noise("eps", like=a)
    pyro.deterministic("f", a)


def test_inner_plates_and_changing_sites_run_as_traced():
    program = CircuitProgram(plated_model)
    assert program.plate_nesting == 1
    fast, traced = _both(program, {"rate": torch.linspace(0.1, 1.9, 5)})
    assert _equal(fast, traced) and fast["spread"].shape == (5,)
    program = CircuitProgram(changing_model)
    branches = set()
    for seed in range(6):
        fast, traced = _both(program, {"a": torch.zeros(6)}, seed)
        assert _equal(fast, traced)
        branches.add(bool((fast["f"] == 0).all()))
    assert branches == {True, False}  # both structures ran


def missing_statistic_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    if a.dim() == 0:  # the statistic is declared only in the unbatched structure trace
        pyro.deterministic("f", a)


def duplicate_model():
    a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
    noise("eps")
    noise("eps")
    pyro.deterministic("f", a)


def test_missing_statistics_and_duplicate_sites_are_refused():
    values = {"a": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"did not reach its statistic sites \['f'\]"):
        StatisticsRun(CircuitProgram(missing_statistic_model)).simulate(values)
    with pytest.raises(RuntimeError, match="Multiple sample sites named 'eps'"):
        StatisticsRun(_duplicate_program()).simulate(values)
    with pytest.raises(TypeError, match="program must be a CircuitProgram"):
        StatisticsRun(duplicate_model)


def _duplicate_program():
    """A program of :func:`duplicate_model` (a trace refuses it, so it is resolved by hand)."""
    program = CircuitProgram(missing_statistic_model)
    program.model = duplicate_model
    return program


def test_non_finite_statistics_raise_as_before():
    def exploding():
        a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
        pyro.deterministic("f", a / 0.0)

    program = CircuitProgram(exploding)
    with pytest.raises(SimulationError, match="NaN/inf for 3 of 3"):
        StatisticsRun(program).simulate({"a": torch.ones(3)})
    assert StatisticsRun(program).simulate({"a": torch.ones(3)}, check=False)["f"].isinf().all()

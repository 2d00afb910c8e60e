import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_circuits import CircuitProgram, SimulationError, noise


def plated_model():
    gain = pyro.sample("gain", dist.Uniform(0.0, 2.0))
    noise("eps", (3,))
    with pyro.plate("trials", 4, dim=-1):
        x = pyro.sample("x", dist.Normal(gain, 1.0))
    pyro.deterministic("mean_x", x.mean(-1))
    pyro.deterministic("double_gain", 2 * gain)


def test_finds_parameters_statistics_and_skips_noise_and_plated_sites():
    program = CircuitProgram(plated_model)
    assert program.params == ["gain"]
    assert program.statistics == ["mean_x", "double_gain"]
    assert program.plate_nesting == 1


def test_simulate_is_vectorised_over_particles():
    program = CircuitProgram(plated_model)
    stats = program.simulate({"gain": torch.tensor([0.5, 1.0, 1.5])})
    torch.testing.assert_close(stats["double_gain"], torch.tensor([1.0, 2.0, 3.0]))
    assert stats["mean_x"].shape == (3,)


def test_simulate_in_chunks_keeps_each_draws_statistics():
    program = CircuitProgram(plated_model)
    gain = torch.linspace(0.1, 1.9, 7)
    stats = program.simulate({"gain": gain}, chunk=3)
    torch.testing.assert_close(stats["double_gain"], 2 * gain)
    assert stats["mean_x"].shape == (7,)
    with pytest.raises(ValueError, match="chunk"):
        program.simulate({"gain": gain}, chunk=0)


def test_noise_is_reparameterised():
    def model():
        a = pyro.sample("a", dist.Uniform(0.0, 1.0))
        pyro.deterministic("f", a * noise("eps"))

    a = torch.full((5,), 0.5, requires_grad=True)
    CircuitProgram(model).simulate({"a": a})["f"].sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_batch_shaped_parameter_is_rejected():
    def model():
        pyro.sample("w", dist.Uniform(-torch.ones(3), torch.ones(3)))

    with pytest.raises(ValueError, match="to_event"):
        CircuitProgram(model)


def test_nan_statistic_names_the_parameters():
    def model():
        a = pyro.sample("a", dist.Uniform(-1.0, 1.0))
        pyro.deterministic("f", torch.log(a))

    with pytest.raises(SimulationError, match=r"-0\.5"):
        CircuitProgram(model).simulate({"a": torch.tensor([0.5, -0.5])})


def test_non_callable_model():
    with pytest.raises(TypeError, match="callable"):
        CircuitProgram("lds2d")

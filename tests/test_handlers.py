import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.handlers import PushMean, standard_normal


def test_push_mean_takes_each_latent_site_s_mean_and_leaves_data_alone():
    def program(data):
        with pyro.plate("trials", 3):
            x = pyro.sample("x", dist.Normal(torch.arange(3.0), 2.0))
            y = pyro.sample("y", dist.Gamma(x.exp(), 1.0))
            pyro.sample("obs", dist.Normal(y, 1.0), obs=data)

    data = torch.tensor([5.0, 6.0, 7.0])
    with PushMean():
        trace = pyro.poutine.trace(program).get_trace(data)
    x = trace.nodes["x"]["value"]
    torch.testing.assert_close(x, torch.arange(3.0))
    torch.testing.assert_close(trace.nodes["y"]["value"], x.exp())  # a Gamma(a, 1)'s mean is a
    assert torch.equal(trace.nodes["obs"]["value"], data)


def test_standard_normal_is_zero_only_under_push_mean():
    pyro.set_rng_seed(0)
    noise = standard_normal((4000,))
    assert noise.abs().max() > 1 and abs(noise.std().item() - 1) < 0.05
    with PushMean():
        assert torch.equal(standard_normal((5, 2)), torch.zeros(5, 2))


def test_push_mean_ends_with_its_block():
    with PushMean():
        pass
    pyro.set_rng_seed(1)
    assert pyro.sample("x", dist.Normal(0.0, 1.0)).item() != 0.0
    assert standard_normal((3,)).abs().sum() > 0

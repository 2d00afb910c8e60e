import numpy as np
import torch

from pyro_circuits.epi.convergence import penalty_should_grow
from pyro_circuits.property import EmergentProperty, moment_test


def _batch_violations(loc, scale, prop, batches=200, size=500):
    """Batch means of T − μ_opt for Gaussian statistics with the given loc and scale."""
    f = loc + scale * torch.randn(batches, size, 1)
    t = prop.sufficient_statistics({"f": f.reshape(-1, 1)[:, 0]}) - prop.target
    return t.reshape(batches, size, -1).mean(1)


def test_passes_for_a_distribution_satisfying_the_constraints():
    prop = EmergentProperty(mean={"f": 2.0}, variance={"f": 0.25})
    test = moment_test(_batch_violations(2.0, 0.5, prop), alpha=0.05)
    assert test.converged
    assert test.threshold == 0.05 / 2


def test_fails_for_a_shifted_distribution():
    prop = EmergentProperty(mean={"f": 2.0}, variance={"f": 0.25})
    assert not moment_test(_batch_violations(2.2, 0.5, prop)).converged


def test_fails_for_a_too_narrow_distribution():
    prop = EmergentProperty(mean={"f": 2.0}, variance={"f": 0.25})
    test = moment_test(_batch_violations(2.0, 0.4, prop))
    assert not test.converged
    assert test.p_values[0] > test.threshold  # the mean is right, the variance is not


def test_penalty_grows_only_when_the_violation_did_not_shrink():
    rng = np.random.default_rng(0)
    previous = torch.full((200,), 1.0) + 0.01 * torch.randn(200)
    stalled = torch.full((200,), 1.0) + 0.01 * torch.randn(200)
    shrunk = torch.full((200,), 0.01) + 0.001 * torch.randn(200)
    assert penalty_should_grow(stalled, previous, 0.25, rng)
    assert not penalty_should_grow(shrunk, previous, 0.25, rng)

import numpy as np
import pytest
import torch

from pyro_circuits import CircuitProgram
from pyro_circuits.models import Rank2RNN
from pyro_circuits.models.rank2_rnn import symmetric_max_eigenvalue


@pytest.mark.parametrize("n", [2, 5, 12])
def test_statistics_match_full_eigendecompositions(n):
    program = CircuitProgram(Rank2RNN(n, g=0.0))
    u, v = torch.empty(2, 50, 2 * n).uniform_(-1, 1)
    stats = program.simulate({"U": u, "V": v})
    w = (u.reshape(50, n, 2) @ v.reshape(50, n, 2).transpose(-1, -2)).double().numpy()
    eig = np.linalg.eigvals(w)
    # W has rank 2: the statistic is the largest real part among its two non-zero eigenvalues.
    nonzero = np.take_along_axis(eig, np.argsort(-np.abs(eig), axis=-1)[:, :2], axis=-1)
    np.testing.assert_allclose(stats["real_lambda"].numpy(), nonzero.real.max(-1), atol=1e-4)
    sym = np.linalg.eigvalsh((w + w.transpose(0, 2, 1)) / 2)[:, -1]
    np.testing.assert_allclose(stats["sym_lambda"].numpy(), sym, atol=1e-4)


def test_noise_perturbs_connectivity_by_g():
    u = torch.full((1000, 4), 0.5)
    noisy = CircuitProgram(Rank2RNN(2, g=0.01)).simulate({"U": u, "V": u})["sym_lambda"]
    clean = CircuitProgram(Rank2RNN(2, g=0.0)).simulate({"U": u[:1], "V": u[:1]})["sym_lambda"]
    assert 0 < noisy.std() < 0.05
    assert abs(noisy.mean() - clean[0]) < 0.01


def test_reduced_eigenvalue_has_gradients():
    u = torch.randn(3, 10, 2, requires_grad=True)
    symmetric_max_eigenvalue(u, torch.randn(3, 10, 2)).sum().backward()
    assert torch.isfinite(u.grad).all()


def test_size_is_validated():
    with pytest.raises(ValueError, match="n must be"):
        Rank2RNN(1)


def test_bounds_set_the_prior_box():
    # the reference pyABC run's prior, scipy's uniform(loc=-1, scale=1): entries in [-1, 0]
    program = CircuitProgram(Rank2RNN(2, g=0.0, bounds=(-1.0, 0.0)))
    u = program.priors["U"].sample((2000,))
    assert u.min() >= -1 and u.max() <= 0 and u.max() > -0.01
    # then W = U Vᵀ is entrywise non-negative: its Perron root is real and non-negative
    v = program.priors["V"].sample((2000,))
    stats = program.simulate({"U": u.reshape(2000, -1), "V": v.reshape(2000, -1)})
    assert (stats["real_lambda"] >= -1e-5).all()


def test_bounds_are_validated():
    with pytest.raises(ValueError, match="low < high"):
        Rank2RNN(2, bounds=(1.0, -1.0))

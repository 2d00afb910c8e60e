import torch
from torch.distributions import MultivariateNormal

from pyro_circuits.epi import hessian_sensitivity


def test_hessian_sensitivity_of_a_gaussian_is_minus_the_precision():
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    point = torch.tensor([0.3, -0.2])
    s = hessian_sensitivity(MultivariateNormal(torch.zeros(2), cov).log_prob, point, ["x", "y"])
    expected_values, expected_vectors = torch.linalg.eigh(-torch.linalg.inv(cov))
    torch.testing.assert_close(s.eigenvalues, expected_values)
    # Precision eigenvalues 1/0.2 along (1, 1) and 1/1.8 along (1, -1): (1, 1) is the most sensitive.
    torch.testing.assert_close(s.eigenvalues, torch.tensor([-5.0, -1 / 1.8]))
    direction = torch.tensor(list(s.most_sensitive.values()))
    assert torch.allclose(direction.abs(), torch.full((2,), 2**-0.5), atol=1e-5)
    assert torch.allclose((s.eigenvectors.T @ expected_vectors).abs(), torch.eye(2), atol=1e-5)

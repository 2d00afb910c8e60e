import pytest
import torch
from zuko.transforms import LULinearTransform

from pyro_circuits.epi.lu import MatrixLULinearTransform


def _factors(dim: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=generator)


@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7)])
def test_inverse_and_gradients_match_zuko(shape):
    lu = _factors(7)
    y = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    results = []
    for cls in (LULinearTransform, MatrixLULinearTransform):
        factors = lu.clone().requires_grad_()
        x = cls(factors).inv(y)
        x.square().sum().backward()
        results.append((x, factors.grad))
    (x_zuko, grad_zuko), (x_ours, grad_ours) = results
    assert x_ours.shape == y.shape
    torch.testing.assert_close(x_ours, x_zuko, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_ours, grad_zuko, atol=1e-4, rtol=1e-4)


def test_inverse_undoes_forward():
    f = MatrixLULinearTransform(_factors(6))
    x = torch.randn(4, 6)
    torch.testing.assert_close(f.inv(f(x)), x, atol=1e-5, rtol=1e-5)


def test_batched_factors_fall_back_to_zuko():
    lu = torch.stack([_factors(4, 0), _factors(4, 1)])
    y = torch.randn(2, 4)
    torch.testing.assert_close(
        MatrixLULinearTransform(lu).inv(y), LULinearTransform(lu).inv(y), atol=1e-6, rtol=1e-6
    )

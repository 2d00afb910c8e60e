import math

import numpy as np
import pytest
import torch

from pyro_circuits import CircuitProgram
from pyro_circuits.models import LDS2D


def test_statistics_match_numpy_eigenvalues():
    a = torch.empty(200, 4).uniform_(-10, 10)
    stats = CircuitProgram(LDS2D(tau=2.0)).simulate(
        dict(zip(["a11", "a12", "a21", "a22"], a.T, strict=True))
    )
    eig = np.linalg.eigvals(a.numpy().astype(np.float64).reshape(-1, 2, 2) / 2.0)
    principal = eig[np.arange(len(eig)), np.argmax(eig.real + 1e-9 * eig.imag, axis=1)]
    np.testing.assert_allclose(stats["real_lambda"].numpy(), principal.real, atol=1e-4)
    np.testing.assert_allclose(stats["imag_lambda"].numpy(), np.abs(principal.imag), atol=1e-4)


def test_rotation_oscillates_at_one_hertz():
    w = 2 * math.pi
    values = {
        "a11": torch.zeros(1),
        "a12": torch.tensor([w]),
        "a21": torch.tensor([-w]),
        "a22": torch.zeros(1),
    }
    stats = CircuitProgram(LDS2D()).simulate(values)
    torch.testing.assert_close(stats["imag_lambda"], torch.tensor([w]))
    torch.testing.assert_close(stats["real_lambda"], torch.zeros(1))


@pytest.mark.slow
def test_epi_reproduces_the_papers_distribution():
    """Issue #2 acceptance on the demo settings: converged, std of (a11+a22)/2 ≈ 0.25, two modes."""
    from benchmarks.epi_lds2d import run

    row = run(seed=0)
    assert row["converged"]
    assert all(r["converged"] for r in row["achieved"])
    assert abs(row["std_half_trace"] - 0.25) <= 0.05
    assert min(row["mode_a12_pos"], row["mode_a12_neg"]) >= 0.25

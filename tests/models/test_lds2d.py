import math

import numpy as np
import pytest
import torch

from pyro_circuits import CircuitProgram
from pyro_circuits.catalog import MODELS
from pyro_circuits.epi import epi
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
    entry = MODELS["lds2d"]
    result = epi(
        entry.build(0),
        entry.property(),
        flow=entry.flow,
        config=entry.config,
        seed=0,
        progress=False,
    )
    assert result.converged
    assert result.check()["converged"].all()
    draws = result.sample(20_000, seed=0)
    half_trace = (draws["a11"] + draws["a22"]) / 2
    assert abs(half_trace.std().item() - 0.25) <= 0.05
    mode_pos = ((draws["a12"] > 0) & (draws["a21"] < 0)).float().mean().item()
    mode_neg = ((draws["a12"] < 0) & (draws["a21"] > 0)).float().mean().item()
    assert min(mode_pos, mode_neg) >= 0.25

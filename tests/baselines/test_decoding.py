"""The factor → behaviour ridge decoder (issue #49's "decoding kinematics from factors")."""

import numpy as np
import pytest
import torch

from pyro_circuits.baselines.decoding import ridge_decoder


def test_decodes_a_lagged_linear_readout_and_not_noise():
    g = torch.Generator().manual_seed(0)
    factors = torch.randn(40, 50, 5, generator=g)
    weights = torch.randn(5, 2, generator=g)
    behaviour = torch.zeros(40, 50, 2)
    behaviour[:, 3:] = factors[:, :-3] @ weights  # factors lead behaviour by 3 bins
    behaviour += 0.1 * torch.randn(40, 50, 2, generator=g)
    lagged = ridge_decoder(factors[:30], behaviour[:30], lag=3)
    assert lagged.predict(factors[30:]).shape == (10, 47, 2)
    assert lagged.score(factors[30:], behaviour[30:]) > 0.95
    assert ridge_decoder(factors[:30], behaviour[:30]).score(factors[30:], behaviour[30:]) < 0.2
    noise = torch.randn(40, 50, 2, generator=g)
    assert ridge_decoder(factors[:30], noise[:30]).score(factors[30:], noise[30:]) < 0.05


@pytest.mark.parametrize(
    "factors, behaviour, lag, message",
    [
        (np.zeros((4, 5)), np.zeros((4, 5, 1)), 0, "factors must be"),
        (np.zeros((4, 5, 2)), np.zeros((4, 6, 1)), 0, "must share"),
        (np.zeros((4, 5, 2)), np.zeros((4, 5, 1)), 5, "lag must be"),
        (np.full((4, 5, 2), np.nan), np.zeros((4, 5, 1)), 0, "NaN"),
    ],
)
def test_bad_arguments(factors, behaviour, lag, message):
    with pytest.raises(ValueError, match=message):
        ridge_decoder(factors, behaviour, lag=lag)

"""EPI's pre-check of the property's reach: the issue's 2 Hz oscillation on lds2d."""

import math
import warnings

import pytest
import torch
from torch.distributions import Normal

from pyro_circuits import EmergentProperty
from pyro_circuits.epi import EPIConfig, epi
from pyro_circuits.epi.attainable import (
    AttainableRange,
    UnreachablePropertyWarning,
    attainable_ranges,
    warn_unreachable,
)
from pyro_circuits.models import LDS2D
from pyro_circuits.sites import CircuitProgram

TINY = EPIConfig(batch_size=20, epochs=1, iterations=2, test_batches=4, init_iterations=2)


def oscillation(hz: float) -> EmergentProperty:
    """Re λ = 0 ± 0.25 and Im λ = 2π·hz ± π/5, the paper's property at ``hz``."""
    return EmergentProperty(
        mean={"real_lambda": 0.0, "imag_lambda": 2 * math.pi * hz},
        variance={"real_lambda": 0.25**2, "imag_lambda": (math.pi / 5) ** 2},
    )


def test_two_hz_on_lds2d_warns_naming_statistic_target_and_range():
    # Entries in ±10 bound |Im λ| by 10 (a12 = −a21 = ±10, a11 = a22) < 4π.
    with pytest.warns(UnreachablePropertyWarning) as caught:
        epi(LDS2D(), oscillation(2.0), config=TINY, progress=False)
    messages = [str(w.message) for w in caught if w.category is UnreachablePropertyWarning]
    assert len(messages) == 1
    assert "imag_lambda" in messages[0] and "12.57" in messages[0]
    high = float(messages[0].split("[")[1].split(",")[1].split("]")[0])
    assert 8.0 < high <= 10.0


def test_one_hz_on_lds2d_gives_no_warning():
    program = CircuitProgram(LDS2D())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreachablePropertyWarning)
        assert warn_unreachable(program, LDS2D.oscillation()) == []


def test_a_variance_no_distribution_on_the_range_can_have():
    prop = EmergentProperty({"real_lambda": 0.0}, {"real_lambda": 1e4})
    with pytest.warns(UnreachablePropertyWarning, match="target variance of real_lambda"):
        (flagged,) = warn_unreachable(CircuitProgram(LDS2D()), prop)
    assert flagged.low < 0 < flagged.high and flagged.high <= 20.0
    assert "variance" in flagged.problem and flagged.max_variance < 1e4


def test_bhatia_davis_bound():
    assert AttainableRange("f", 0.0, 1.0, 0.5, 0.25, 10).problem is None  # two points at 0, 1
    assert "variance" in AttainableRange("f", 0.0, 1.0, 0.5, 0.26, 10).problem
    assert AttainableRange("f", 0.0, 1.0, 0.9, 0.1, 10).max_variance == pytest.approx(0.09)
    assert "outside" in AttainableRange("f", 0.0, 1.0, 1.5, 0.1, 10).problem


def test_initialisation_draws_inside_the_support_count_and_the_random_state_is_kept():
    program = CircuitProgram(LDS2D())
    state = torch.get_rng_state()
    inside = Normal(torch.zeros(4), torch.ones(4))  # every draw inside (−10, 10)⁴
    ranges = attainable_ranges(program, LDS2D.oscillation(), inside, n=50, seed=3)
    assert all(r.draws == 100 for r in ranges)
    outside = Normal(torch.full((4,), 30.0), torch.ones(4))  # no draw inside
    assert attainable_ranges(program, LDS2D.oscillation(), outside, n=50)[0].draws == 50
    assert torch.equal(torch.get_rng_state(), state)
    again = attainable_ranges(program, LDS2D.oscillation(), inside, n=50, seed=3)
    assert again == ranges


@pytest.mark.parametrize("kwargs, error", [({"n": 0}, ValueError), ({"seed": -1}, ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        attainable_ranges(CircuitProgram(LDS2D()), LDS2D.oscillation(), **kwargs)

"""Property-based fuzzing of the public API (issue 46): malformed values thrown at every public
entry point must end in a ``ValueError`` or ``TypeError`` whose message names the argument,
raised before any work (every case is fast because nothing is fitted).

Each row of ``CASES`` is one entry point and one argument; hypothesis draws ``MAX_EXAMPLES``
bad values for it. ``test_the_suite_covers_the_promised_counts`` checks the totals that
``docs/reliability.md`` reports (entry points, arguments, generated cases).
"""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pyro_circuits import checks, metrics
from pyro_circuits.baselines import ThresholdDeconvolution, condition_psth, gaussian_smoothing
from pyro_circuits.compare import compare
from pyro_circuits.datasets import SpikeData, lorenz
from pyro_circuits.epi import EPIConfig, EPILoss, epi
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LDS2D, LFADS
from pyro_circuits.property import EmergentProperty, moment_test
from pyro_circuits.results import atomic_save
from pyro_circuits.sbi import NPE, SMCABC
from pyro_circuits.svi import Checkpoint, MovingAverage, SVIFit, refine, train
from pyro_circuits.svi.loop import Optimiser

MAX_EXAMPLES = 12
RAN: Counter = Counter()  # generated cases per (entry point, argument)

# --- Strategies of bad values -------------------------------------------------------------

junk = st.one_of(
    st.none(), st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2), st.just({})
)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def not_int(low: int):
    """Values that are not an integer >= low."""
    return st.one_of(st.integers(max_value=low - 1), st.floats(allow_nan=True), non_finite, junk)


def not_real(low=None, high=None, *, low_open=False, high_open=False):
    """Values that are not a finite real in the range."""
    outside = []
    if low is not None:
        outside.append(
            st.floats(max_value=low, exclude_max=not low_open, allow_nan=False).filter(
                lambda v: v < low or (low_open and v == low)
            )
        )
    if high is not None:
        outside.append(
            st.floats(min_value=high, exclude_min=not high_open, allow_nan=False).filter(
                lambda v: v > high or (high_open and v == high)
            )
        )
    return st.one_of(*outside, non_finite, st.text(max_size=2), st.none(), st.booleans())


positive = not_real(0.0, low_open=True)
probability_open = not_real(0.0, 1.0, low_open=True, high_open=True)


def bad_counts(dims: int = 3, *, optional: bool = False):
    """Arrays that are not valid [trials, time, neurons] spike counts."""
    shapes = st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(
        lambda s: len(s) != dims or 0 in s
    )
    wrong_shape = shapes.map(lambda s: np.ones(s))
    poisoned = st.tuples(st.sampled_from([math.nan, math.inf, -1.0, 0.5]), st.integers(0, 5)).map(
        lambda v: _poison(np.ones((2, 3, 2)), *v)
    )
    missing = st.nothing() if optional else st.none()
    return st.one_of(wrong_shape, poisoned, st.text(max_size=2), missing, st.just([["a"]]))


def _poison(array, value, index):
    array.flat[index % array.size] = value
    return array


def bad_index(size: int):
    return st.one_of(
        st.lists(st.integers(min_value=size, max_value=size + 5), min_size=1, max_size=3),
        st.lists(st.integers(max_value=-1), min_size=1, max_size=3),
        st.lists(st.booleans(), min_size=1, max_size=size + 3).filter(lambda m: len(m) != size),
        st.lists(st.floats(allow_nan=True), min_size=1, max_size=3),
        st.text(min_size=1, max_size=2),
    )


# --- Fixed valid arguments ------------------------------------------------------------------

COUNTS = torch.poisson(torch.ones(4, 5, 3), generator=torch.Generator().manual_seed(0))
MODEL = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
GUIDE = LFADSEncoder(MODEL, enc_dim=4)
FIT = SVIFit(MODEL, GUIDE)
DATA = SpikeData(COUNTS, dt=0.01, heldout=[2])
PROP = LDS2D.oscillation()
RATES = np.ones((4, 5, 3))


def _train(**kwargs):
    return train(MODEL, GUIDE, kwargs.pop("counts", COUNTS), progress=False, **kwargs)


def _epi(**kwargs):
    return epi(LDS2D(), kwargs.pop("prop", PROP), progress=False, **kwargs)


def _prop_mean(value):
    return EmergentProperty({"f": value}, {"f": 1.0})


def _prop_variance(value):
    return EmergentProperty({"f": 0.0}, {"f": value})


CASES = [
    # (entry point, argument, call(bad), strategy)
    ("SpikeData", "counts", lambda v: SpikeData(v, dt=0.01), bad_counts()),
    ("SpikeData", "dt", lambda v: SpikeData(COUNTS, dt=v), positive),
    ("SpikeData", "train_idx", lambda v: SpikeData(COUNTS, dt=0.01, train_idx=v), bad_index(4)),
    ("SpikeData", "heldout", lambda v: SpikeData(COUNTS, dt=0.01, heldout=v), bad_index(3)),
    ("SpikeData", "rates", lambda v: SpikeData(COUNTS, dt=0.01, rates=v), bad_counts(optional=True)),
    ("train", "counts", lambda v: _train(counts=v), bad_counts()),
    ("train", "lr", lambda v: _train(lr=v), positive),
    ("train", "clip_norm", lambda v: _train(clip_norm=v), positive),
    ("train", "lr_decay", lambda v: _train(lr_decay=v), probability_open),
    ("train", "l2_scale", lambda v: _train(l2_scale=v), not_real(0.0)),
    ("train", "kl_warmup", lambda v: _train(kl_warmup=v), not_int(0)),
    ("train", "batch_size", lambda v: _train(batch_size=v), not_int(1)),
    ("train", "patience", lambda v: _train(patience=v), not_int(1).filter(lambda v: v is not None)),
    ("train", "max_time", lambda v: _train(max_time=v), not_real(0.0).filter(lambda v: v is not None)),
    ("train", "cd_rate", lambda v: _train(cd_rate=v), not_real(0.0, 1.0, high_open=True)),
    ("train", "seed", lambda v: _train(seed=v), not_int(0)),
    ("refine", "lr", lambda v: refine(FIT, COUNTS, lr=v, progress=False), positive),
    ("refine", "steps", lambda v: refine(FIT, COUNTS, steps=v, progress=False), not_int(1)),
    ("refine", "counts", lambda v: refine(FIT, v, progress=False), bad_counts()),
    ("Optimiser", "lr", lambda v: Optimiser(lr=v), positive),
    ("MovingAverage", "average_decay", lambda v: MovingAverage(v), probability_open),
    ("Checkpoint", "checkpoint", lambda v: Checkpoint(v),
     st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.text(), max_size=2))),
    ("EPIConfig", "batch_size", lambda v: EPIConfig(batch_size=v), not_int(4)),
    ("EPIConfig", "test_batches", lambda v: EPIConfig(test_batches=v), not_int(2)),
    ("EPIConfig", "c0", lambda v: EPIConfig(c0=v), positive),
    ("EPIConfig", "alpha", lambda v: EPIConfig(alpha=v), probability_open),
    ("EPIConfig", "init_iterations", lambda v: EPIConfig(init_iterations=v), not_int(0)),
    ("EPILoss", "c0", lambda v: EPILoss(PROP, c0=v), positive),
    ("epi", "seed", lambda v: _epi(seed=v), not_int(0).filter(lambda v: v != [])),
    ("epi", "config", lambda v: _epi(config=v), junk.filter(lambda v: v is not None)),
    ("epi", "prop", lambda v: _epi(prop=v), junk),
    ("EmergentProperty", "mean", _prop_mean, st.one_of(non_finite, st.text(max_size=2), st.none())),
    ("EmergentProperty", "variance", _prop_variance, not_real(0.0, low_open=True)),
    ("moment_test", "alpha", lambda v: moment_test(torch.zeros(4, 2), v), probability_open),
    ("NPE", "executor", lambda v: NPE(LDS2D(), PROP, executor=v, progress=False),
     junk.filter(lambda v: v is not None)),
    ("NPE", "simulation_batch_size",
     lambda v: NPE(LDS2D(), PROP, simulation_batch_size=v, progress=False), not_int(1)),
    ("NPE", "train_kwargs",
     lambda v: NPE(LDS2D(), PROP, train_kwargs={v: 1}, progress=False),
     st.text(min_size=1, max_size=4)),
    ("SMCABC", "kernel_variance_scale",
     lambda v: SMCABC(LDS2D(), PROP, kernel_variance_scale=v, progress=False), positive),
    ("SMCABC", "epsilon_decay",
     lambda v: SMCABC(LDS2D(), PROP, epsilon_decay=v, progress=False), probability_open),
    ("compare", "moment_batches",
     lambda v: compare(LDS2D(), PROP, ["smcabc"], moment_batches=v, progress=False), not_int(2)),
    ("compare", "methods",
     lambda v: compare(LDS2D(), PROP, v, progress=False),
     st.lists(st.text(max_size=4), max_size=2)),
    ("compare", "budget", lambda v: compare(LDS2D(), PROP, budget=v, progress=False), not_int(1)),
    ("bits_per_spike", "rates", lambda v: metrics.bits_per_spike(v, RATES, 0.01), bad_counts()),
    ("bits_per_spike", "dt", lambda v: metrics.bits_per_spike(RATES, RATES, v), positive),
    ("co_bps", "heldout", lambda v: metrics.co_bps(RATES, RATES, v, 0.01), bad_index(3)),
    ("fp_bps", "n_forward", lambda v: metrics.fp_bps(RATES, RATES, v, 0.01), not_int(1)),
    ("r2_by_segment", "n_segments", lambda v: metrics.r2_by_segment(RATES, RATES, v), not_int(1)),
    ("exp_readout_fit", "lr", lambda v: metrics.exp_readout_fit(RATES, 2, lr=v), positive),
    ("lorenz", "dt", lambda v: lorenz(2, 2, 4, 5, dt=v), positive),
    ("lorenz", "train_fraction",
     lambda v: lorenz(2, 2, 4, 5, train_fraction=v), not_real(0.0, 1.0, low_open=True)),
    ("gaussian_smoothing", "sigma", lambda v: gaussian_smoothing(DATA, sigma=v), positive),
    ("condition_psth", "sigma", lambda v: condition_psth(DATA, sigma=v), positive),
    ("ThresholdDeconvolution", "sigma", lambda v: ThresholdDeconvolution(sigma=v),
     positive.filter(lambda v: v is not None)),
    ("check_counts", "counts", lambda v: checks.check_counts(v, convert=True), bad_counts()),
    ("atomic_save", "path", lambda v: atomic_save(v, print), st.one_of(st.none(), st.integers())),
    ("SVIFit.load", "path", lambda v: SVIFit.load(v), st.one_of(st.none(), st.integers())),
]  # fmt: skip


def _expected_name(argument: str) -> str:
    return {"checkpoint": "checkpoint", "path": "path", "average_decay": "average_decay"}.get(
        argument, argument
    )


@pytest.mark.parametrize(
    "entry, argument, call, strategy", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES]
)
def test_malformed_values_are_clear_errors_before_any_work(entry, argument, call, strategy):
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure fast
    )
    @given(bad=strategy)
    def check(bad):
        RAN[(entry, argument)] += 1
        with pytest.raises((ValueError, TypeError)) as raised:
            call(bad)
        message = str(raised.value)
        assert _expected_name(argument) in message or entry in message, (entry, argument, message)

    check()


def test_the_suite_covers_the_promised_counts():
    """The counts docs/reliability.md reports: at least 25 entry points and 300 cases."""
    if len(RAN) < len(CASES):
        pytest.skip("only part of the fuzz suite ran")
    entry_points = {entry for entry, _ in RAN}
    assert len(entry_points) >= 25, sorted(entry_points)
    assert sum(RAN.values()) >= 300, sum(RAN.values())
    print(
        f"fuzz: {len(entry_points)} entry points, {len(RAN)} arguments, {sum(RAN.values())} cases"
    )

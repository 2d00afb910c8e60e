"""Tests for pyro_circuits.perturb: the perturbation point and the optogenetic handler."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_circuits.handlers import perturb

POPS = ("a", "b", "c")


def timeline(value=None, steps=10, dt=0.1, name="activity"):
    """Pass a constant activity through a perturbation point at t = 0, dt, …; return the outputs."""
    value = torch.tensor([1.0, 2.0, 3.0]) if value is None else value
    return torch.stack(
        [perturb.site(name, value, t=round(k * dt, 9), populations=POPS) for k in range(steps)]
    )


def test_site_is_identity_without_handler():
    x = torch.randn(4, 3)
    assert perturb.site("activity", x, t=0.3, populations=POPS) is x
    with poutine.trace():
        assert perturb.site("activity", x) is x


def test_silencing_scales_by_one_minus_gain_inside_window_only():
    base = timeline()
    with perturb.optogenetic("b", window=(0.3, 0.6), gain=0.675):
        out = timeline()
    inside = torch.tensor([0.3 <= round(k * 0.1, 9) < 0.6 for k in range(10)])
    assert inside.sum() == 3
    torch.testing.assert_close(out[~inside], base[~inside], rtol=0, atol=0)
    expected = base[inside].clone()
    expected[:, 1] = expected[:, 1] * (1 - 0.675)
    torch.testing.assert_close(out[inside], expected, rtol=0, atol=0)


def test_activation_adds_current_and_mask_equals_names():
    with perturb.optogenetic(["a", "c"], current=0.5):
        by_name = timeline()
    with perturb.optogenetic([True, False, True], current=0.5):
        by_mask = timeline()
    torch.testing.assert_close(by_name, torch.tensor([1.5, 2.0, 3.5]).expand(10, 3))
    torch.testing.assert_close(by_mask, by_name)


def test_handlers_nest_innermost_first():
    with perturb.optogenetic("a", current=1.0), perturb.optogenetic("a", gain=0.5):
        gain_then_current = timeline(steps=1)
    with perturb.optogenetic("a", gain=0.5), perturb.optogenetic("a", current=1.0):
        current_then_gain = timeline(steps=1)
    with perturb.optogenetic("a", gain=0.5), perturb.optogenetic(["a", "b"], gain=0.5):
        both = timeline(steps=1)
    assert gain_then_current[0, 0] == 1.0 * 0.5 + 1.0
    assert current_then_gain[0, 0] == (1.0 + 1.0) * 0.5
    torch.testing.assert_close(both[0], torch.tensor([0.25, 1.0, 3.0]))


def test_site_filter_selects_points_by_name():
    with perturb.optogenetic("a", gain=1.0, site="current"):
        untouched = timeline(steps=1)
        silenced = timeline(steps=1, name="current")
    assert untouched[0, 0] == 1.0 and silenced[0, 0] == 0.0


def model():
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    x = perturb.site("activity", a * torch.ones(3), t=0.0, populations=POPS)
    pyro.deterministic("x", x)


def test_composes_with_condition_do_and_trace():
    with perturb.optogenetic("a", gain=0.5):
        trace = poutine.trace(poutine.condition(model, data={"a": torch.tensor(2.0)})).get_trace()
        intervened = poutine.trace(poutine.do(model, data={"a": torch.tensor(4.0)})).get_trace()
    torch.testing.assert_close(trace.nodes["x"]["value"], torch.tensor([1.0, 2.0, 2.0]))
    torch.testing.assert_close(intervened.nodes["x"]["value"], torch.tensor([2.0, 4.0, 4.0]))
    assert {n for n, s in trace.nodes.items() if s["type"] == "sample"} == {"a", "x"}


def test_unknown_population_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown population\(s\) \['XX'\].*known populations"):
        with perturb.optogenetic("XX", window=(5.0, 6.0), gain=0.5):
            timeline(steps=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": "a"}, "needs gain"),
        ({"target": "a", "gain": 1.5}, "gain must lie"),
        ({"target": "a", "gain": 0.5, "window": (1.0, 0.5)}, "window must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        perturb.optogenetic(**kwargs)


def test_mask_length_names_without_populations_and_untimed_points():
    with pytest.raises(ValueError, match="selects"), perturb.optogenetic([True, False], gain=0.5):
        timeline(steps=1)
    with pytest.raises(ValueError, match="no population names"), perturb.optogenetic("a", gain=0.5):
        perturb.site("activity", torch.ones(3))
    with (
        pytest.raises(ValueError, match="no time"),
        perturb.optogenetic([1, 0, 0], (0, 1), gain=0.5),
    ):
        perturb.site("activity", torch.ones(3))


def test_stimulus_gradient_analytic():
    def readout():
        x = torch.stack(
            [
                perturb.site("activity", torch.tensor([2.0, 3.0, 4.0]), t=k * 0.1, populations=POPS)
                for k in range(10)
            ]
        )
        pyro.deterministic("total", (x**2).sum())

    # Σ over the 4 in-window steps of ((1 - g)·3)², derivative -2·9·(1 - g)·4 at g = 0.25.
    grad = perturb.stimulus_gradient(readout, "total", "b", (0.2, 0.6), gain=0.25)
    torch.testing.assert_close(grad, torch.tensor(-2 * 9 * 0.75 * 4))
    # Σ over all 10 steps of (2 + c)², derivative 2·(2 + c)·10 at c = 1.
    torch.testing.assert_close(
        perturb.stimulus_gradient(readout, "total", "a", current=1.0), torch.tensor(60.0)
    )
    with pytest.raises(ValueError, match="exactly one"):
        perturb.stimulus_gradient(readout, "total", "a")


def test_time_varying_current_callable_and_step_indexed():
    with perturb.optogenetic("a", current=lambda t: 10 * t):
        out = timeline(steps=3)
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 2.0, 3.0]))
    per_step = torch.arange(12.0).reshape(4, 3)
    with perturb.optogenetic(["a", "b", "c"], current=per_step):
        out = torch.stack(
            [perturb.site("x", torch.zeros(3), populations=POPS, step=k) for k in range(4)]
        )
    torch.testing.assert_close(out, per_step)
    with perturb.optogenetic("b", current=torch.tensor([5.0, 6.0])):
        assert perturb.site("x", torch.zeros(3), populations=POPS, step=1).tolist() == [0, 6, 0]
        with pytest.raises(ValueError, match="needs points with a step"):
            perturb.site("x", torch.zeros(3), populations=POPS)
        with pytest.raises(ValueError, match="2 steps"):
            perturb.site("x", torch.zeros(3), populations=POPS, step=2)


def test_index_lists_and_masks_are_not_confused():
    with perturb.optogenetic([2], current=1.0):
        assert timeline(steps=1)[0].tolist() == [1.0, 2.0, 4.0]
    with perturb.optogenetic(torch.tensor([0, 2]), current=1.0):
        assert timeline(steps=1)[0].tolist() == [2.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="repeats"), perturb.optogenetic([1, 0, 0], current=1.0):
        timeline(steps=1)
    with pytest.raises(ValueError, match="out of range"), perturb.optogenetic([3], current=1.0):
        timeline(steps=1)
    with pytest.raises(TypeError, match="float"):
        perturb.optogenetic(torch.tensor([1.0, 0.0, 0.0]), current=1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"gain": torch.tensor([0.5, 1.5])}, ValueError, "gain must lie"),
        ({"gain": torch.tensor(-0.1)}, ValueError, "gain must lie"),
        ({"gain": float("nan")}, ValueError, "NaN"),
        ({"current": torch.tensor([1.0, float("nan")])}, ValueError, "NaN"),
        ({"current": "bright"}, TypeError, "current must be"),
        ({"current": torch.zeros(2, 3, 4)}, ValueError, r"\[T\] or \[T, N\]"),
    ],
)
def test_bad_gain_and_current(kwargs, error, match):
    with pytest.raises(error, match=match):
        perturb.optogenetic("a", **kwargs)


def test_nan_from_callable_current_raises():
    with (
        pytest.raises(ValueError, match="NaN"),
        perturb.optogenetic("a", current=lambda t: t / 0 * 0 if False else float("nan")),
    ):
        timeline(steps=1)


def test_unmatched_site_name_warns_on_exit():
    with pytest.warns(UserWarning, match="matched no perturbation point"):
        with perturb.optogenetic("a", current=1.0, site="drvie"):
            timeline(steps=2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with perturb.optogenetic("a", current=1.0, site="activity"):
            timeline(steps=2)

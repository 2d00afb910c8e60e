"""The figures a run writes: what they mark."""

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pyro_circuits.models import LDS2D
from pyro_circuits.plots import plot_epi_history, plot_predictive_scatter

TRACE = pd.DataFrame({"simulations": [0, 50, 100], "entropy": [1.0, 0.5, 0.4]})


@pytest.mark.parametrize("passed", [[False, False, True], [False, False, False]])
def test_history_marks_the_converged_epochs_or_says_none_did(passed):
    history = pd.DataFrame(
        {
            "simulations": [0, 50, 100],
            "entropy": [1.0, 0.6, 0.4],
            "R E[f]": [3.0, 0.5, -0.1],
            "converged": passed,
        }
    )
    figure = plot_epi_history(history, TRACE)
    bottom = figure.axes[1]
    labels = bottom.get_legend_handles_labels()[1]
    assert ("converged" in labels) == any(passed)
    assert (bottom.get_title() == "no epoch passed the moment test") == (not any(passed))
    plt.close(figure)


def test_predictive_scatter_legend_shows_every_marker_at_one_size():
    prop = LDS2D.oscillation()
    rng = np.random.default_rng(0)
    idatas = {
        method: az.from_dict(
            posterior={"a": rng.normal(size=(1, 50))},
            posterior_predictive={
                "real_lambda": rng.normal(size=(1, 50)),
                "imag_lambda": rng.normal(6.0, 1.0, size=(1, 50)),
            },
        )
        for method in ("epi", "npe")
    }
    figure = plot_predictive_scatter(idatas, prop)
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.texts] == ["epi", "npe", "property mean"]
    sizes = {float(h.get_sizes()[0]) for h in legend.legend_handles}
    assert len(sizes) == 1 and all(h.get_alpha() == 1 for h in legend.legend_handles)
    plt.close(figure)

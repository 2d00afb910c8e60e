"""The figures a run writes: what they mark."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from pyro_circuits.plots import plot_epi_history

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

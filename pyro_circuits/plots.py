"""Figures a person would rather look at than tables."""

from __future__ import annotations

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_epi_history", "plot_pairs"]


def plot_pairs(idata: az.InferenceData, color_by: str | None = "log_q"):
    """Pair plot of the posterior draws (ArviZ), coloured by log q when available."""
    axes = az.plot_pair(idata, kind="scatter", marginals=True, scatter_kwargs={"alpha": 0.3, "s": 4})
    figure = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
    return figure


def plot_epi_history(history, trace):
    """Entropy and constraint violations over the augmented-Lagrangian optimisation."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(trace["simulations"], trace["entropy"], lw=0.8, label="minibatch")
    top.plot(history["simulations"], history["entropy"], "o-", label="end of epoch")
    top.set_ylabel("entropy H(q) [nats]")
    top.legend()
    for column in [c for c in history.columns if c.startswith("R ")]:
        bottom.plot(history["simulations"], history[column].abs(), "o-", label=column[2:])
    converged = history[history["converged"]]
    bottom.scatter(converged["simulations"], [bottom.get_ylim()[1]] * len(converged), marker="v", c="k", label="converged")
    bottom.set_yscale("log")
    bottom.set_xlabel("simulations")
    bottom.set_ylabel("|constraint violation|")
    bottom.legend(fontsize="small")
    figure.tight_layout()
    return figure

"""Figures a person would rather look at than tables."""

from __future__ import annotations

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "plot_epi_history",
    "plot_method_pairs",
    "plot_pairs",
    "plot_predictive_scatter",
]


def plot_pairs(idata: az.InferenceData):
    """Pair plot of the posterior draws (ArviZ) with marginal densities."""
    axes = az.plot_pair(
        idata, kind="scatter", marginals=True, scatter_kwargs={"alpha": 0.3, "s": 4}
    )
    figure = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
    return figure


def plot_epi_history(history, trace):
    """Entropy and constraint violations over the augmented-Lagrangian optimisation, with the
    epochs that passed the moment test marked (or a title saying that none did)."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(trace["simulations"], trace["entropy"], lw=0.8, label="minibatch")
    top.plot(history["simulations"], history["entropy"], "o-", label="end of epoch")
    top.set_ylabel("entropy H(q) [nats]")
    top.legend()
    for column in [c for c in history.columns if c.startswith("R ")]:
        bottom.plot(history["simulations"], history[column].abs(), "o-", label=column[2:])
    converged = history[history["converged"]]
    if len(converged):
        top_edge = [bottom.get_ylim()[1]] * len(converged)
        bottom.scatter(converged["simulations"], top_edge, marker="v", c="k", label="converged")
    else:
        bottom.set_title("no epoch passed the moment test", fontsize="small")
    bottom.set_yscale("log")
    bottom.set_xlabel("simulations")
    bottom.set_ylabel("|constraint violation|")
    bottom.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _flat_group(idata: az.InferenceData, group: str) -> tuple[list[str], np.ndarray]:
    """Every variable of a group as columns ``(draws, coordinates)`` with readable names."""
    names, columns = [], []
    for name, values in idata[group].data_vars.items():
        array = values.values.reshape(values.shape[0] * values.shape[1], -1)
        for i in range(array.shape[1]):
            names.append(name if array.shape[1] == 1 else f"{name}[{i}]")
            columns.append(array[:, i])
    return names, np.stack(columns, axis=1)


def _by_method(idatas: dict) -> dict:
    """One InferenceData per method (the first seed), labelled by its ``method`` attribute."""
    chosen = {}
    for key, idata in idatas.items():
        chosen.setdefault(idata.posterior.attrs.get("method", key), idata)
    return chosen


def plot_method_pairs(idatas: dict, max_dims: int = 4, max_points: int = 500):
    """Overlaid pair plot of the parameter draws of several methods (first ``max_dims`` coords).

    ``idatas`` maps run names to InferenceData (as returned by :func:`~pyro_circuits.compare`);
    one colour per method, histograms on the diagonal.
    """
    runs = _by_method(idatas)
    names = _flat_group(next(iter(runs.values())), "posterior")[0][:max_dims]
    k = len(names)
    figure, axes = plt.subplots(k, k, figsize=(2.2 * k + 1, 2.2 * k), squeeze=False)
    for colour, (method, idata) in enumerate(runs.items()):
        values = _flat_group(idata, "posterior")[1][:max_points, :k]
        for i in range(k):
            for j in range(k):
                ax = axes[i, j]
                if i == j:
                    ax.hist(values[:, i], bins=30, density=True, alpha=0.4, color=f"C{colour}")
                elif i > j:
                    ax.scatter(values[:, j], values[:, i], s=3, alpha=0.3, color=f"C{colour}")
                else:
                    ax.axis("off")
                if i == k - 1:
                    ax.set_xlabel(names[j])
                if j == 0 and i > 0:
                    ax.set_ylabel(names[i])
        axes[0, -1].scatter([], [], color=f"C{colour}", label=method)
    axes[0, -1].legend(loc="center", frameon=False)
    figure.tight_layout()
    return figure


def plot_predictive_scatter(idatas: dict, prop, stats: tuple[int, int] = (0, 1)):
    """Predictive scatter of two statistics per method with the property mean starred (Fig. 2C).

    ``stats`` picks two coordinates of the property's flat statistic vector.
    """
    runs = _by_method(idatas)
    target = prop.mean_vector.numpy()
    labels = [c[2:-1] for c in prop.constraint_names[: len(target)]]
    first, second = stats if len(target) > 1 else (0, 0)
    figure, ax = plt.subplots(figsize=(5, 4.5))
    for colour, (method, idata) in enumerate(runs.items()):
        names, values = _flat_group(idata, "posterior_predictive")
        order = [names.index(label) for label in labels]
        values = values[:, order]
        ax.scatter(
            values[:, first], values[:, second], s=4, alpha=0.3, color=f"C{colour}", label=method
        )
    ax.scatter(target[first], target[second], marker="*", s=250, c="k", label="property mean")
    ax.set_xlabel(labels[first])
    ax.set_ylabel(labels[second])
    for handle in ax.legend().legend_handles:  # one readable marker size, opaque
        handle.set_sizes([40])
        handle.set_alpha(1)
    figure.tight_layout()
    return figure

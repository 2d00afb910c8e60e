"""The files a run leaves in its output folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from pyro_circuits.checks import positive_int, writable_dir
from pyro_circuits.epi import EPIResult
from pyro_circuits.plots import plot_epi_history, plot_pairs
from pyro_circuits.results import atomic_save

__all__ = ["write_epi_report"]


def write_epi_report(
    result: EPIResult, out: str | Path, n: int = 2000, table: pd.DataFrame | None = None
) -> list[Path]:
    """Write InferenceData (NetCDF) of ``n`` draws, pair plot, optimisation history and
    constraint table (``table``, else ``result.check()``), each file atomically
    (:func:`~pyro_circuits.results.atomic_save`) into the checked folder ``out``."""
    if not isinstance(result, EPIResult):
        raise TypeError(f"result must be an EPIResult, got {type(result).__name__}")
    n = positive_int("n", n)
    out = writable_dir("out", out)
    idata = result.to_inference_data(n=n)
    paths = [atomic_save(out / "inference_data.nc", lambda tmp: idata.to_netcdf(str(tmp)))]
    for figure, name in (
        (plot_pairs(idata), "pairs.png"),
        (plot_epi_history(result.history, result.trace), "history.png"),
    ):
        paths.append(
            atomic_save(out / name, lambda tmp, f=figure: f.savefig(tmp, dpi=110, format="png"))
        )
        plt.close(figure)
    paths.append(
        atomic_save(out / "history.csv", lambda tmp: result.history.to_csv(tmp, index=False))
    )
    table = result.check() if table is None else table
    paths.append(atomic_save(out / "constraints.csv", lambda tmp: table.to_csv(tmp, index=False)))
    return paths

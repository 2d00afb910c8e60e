"""The files a run leaves in its output folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from pyro_circuits.epi import EPIResult
from pyro_circuits.plots import plot_epi_history, plot_pairs

__all__ = ["write_epi_report"]


def write_epi_report(result: EPIResult, out: str | Path, n: int = 2000) -> list[Path]:
    """Write InferenceData (NetCDF), pair plot, optimisation history and constraint table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    idata = result.to_inference_data(n=n)
    paths = [
        out / "inference_data.nc",
        out / "pairs.png",
        out / "history.png",
        out / "history.csv",
        out / "constraints.csv",
    ]
    idata.to_netcdf(str(paths[0]))
    for figure, path in (
        (plot_pairs(idata), paths[1]),
        (plot_epi_history(result.history, result.trace), paths[2]),
    ):
        figure.savefig(path, dpi=110)
        plt.close(figure)
    result.history.to_csv(paths[3], index=False)
    result.check().to_csv(paths[4], index=False)
    return paths

"""The rates R² an exponential readout of k factors can reach at best, on the benchmarks' data.

LFADS writes rates as exp(W f_t + b) with ``fac_dim`` factors f_t. Fitting f_t freely for every
validation trial and time step (``metrics.exp_readout_fit``, 300 trials) gives the best rates R²
any such model can reach, whatever its generator and encoder: a ceiling set by ``fac_dim``
alone. The chaotic networks' rates are min–max normalised tanh of a 50-dimensional state, not
the exponential of a low-dimensional one, so their ceiling falls short of 1 at the reference's
20 factors, most in the first bins, where the random initial state has not yet settled.

Regenerate (one record, ``benchmarks/records/readout_ceiling/all.json``)::

    .venv/bin/python -m benchmarks.studies.readout_ceiling
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.catalog import CALCIUM_CONFIGS, LFADS_CONFIGS

STUDY = "readout_ceiling"
N_TRIALS = 300
SEGMENT = 10  # bins


def _datasets():
    """(name, configured fac_dim, factor counts to try, data recipe) for each benchmark
    dataset (the settings of :mod:`pyro_circuits.catalog`)."""
    lfads, calcium = LFADS_CONFIGS, CALCIUM_CONFIGS
    return [
        ("LFADS lorenz", lfads["lorenz"].model["fac_dim"], (3, 8), lfads["lorenz"].data),
        (
            "LFADS chaotic_rnn",
            lfads["chaotic_rnn"].model["fac_dim"],
            (8, 20, 40),
            lfads["chaotic_rnn"].data,
        ),
        (
            "calcium chaotic_rnn",
            calcium["chaotic_rnn"].deep["fac_dim"],
            (8, 20, 40),
            calcium["chaotic_rnn"].data,
        ),
    ]


def run() -> list[dict]:
    """Ceiling R² (all bins and per 10-bin segment) for every dataset and factor count."""
    rows = []
    for name, configured, factor_counts, recipe in _datasets():
        rates = recipe.make().valid.rates[:N_TRIALS].numpy()
        for n_factors in factor_counts:
            fitted = metrics.exp_readout_fit(rates, n_factors)
            segments = metrics.r2_by_segment(rates, fitted, rates.shape[1] // SEGMENT)
            rows.append(
                dict(
                    dataset=name,
                    data=str(recipe),
                    configured_fac_dim=configured,
                    n_factors=n_factors,
                    r2=metrics.r2_score(rates, fitted),
                    segments=segments,
                )
            )
            print(f"{name} k={n_factors}: R² {rows[-1]['r2']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(parser.parse_args().threads)
    rows = run()
    path = write_record(
        STUDY,
        "all",
        command(f"benchmarks.studies.{STUDY}"),
        {"n_trials": N_TRIALS, "segment_bins": SEGMENT},
        {"rows": rows},
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

"""The rates R² an exponential readout of k factors can reach at best, on the benchmarks' data.

LFADS writes rates as exp(W f_t + b) with ``fac_dim`` factors f_t. Fitting f_t freely for every
validation trial and time step (``metrics.exp_readout_fit``, 300 trials) gives the best rates R²
any such model can reach, whatever its generator and encoder: a ceiling set by ``fac_dim``
alone. The chaotic networks' rates are min–max normalised tanh of a 50-dimensional state, not
the exponential of a low-dimensional one, so their ceiling falls short of 1 at the reference's
20 factors, most in the first bins, where the random initial state has not yet settled.

Regenerate::

    .venv/bin/python -m benchmarks.readout_ceiling
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import calcium_synthetic, lfads_synthetic
from benchmarks._report import machine, update_section, write_json
from pyro_circuits import metrics

COMMAND = ".venv/bin/python -m benchmarks.readout_ceiling"
N_TRIALS = 300
SEGMENT = 10  # bins


def _datasets():
    """(name, configured fac_dim, factor counts to try, data) for each benchmark dataset."""
    lfads, calcium = lfads_synthetic.CONFIGS, calcium_synthetic.CONFIGS
    make_calcium_chaotic, options = calcium["chaotic_rnn"]["data"]
    return [
        ("LFADS lorenz", lfads["lorenz"]["model"]["fac_dim"], (3, 8), lfads["lorenz"]["data"]),
        (
            "LFADS chaotic_rnn",
            lfads["chaotic_rnn"]["model"]["fac_dim"],
            (8, 20, 40),
            lfads["chaotic_rnn"]["data"],
        ),
        (
            "calcium chaotic_rnn",
            calcium["chaotic_rnn"]["deep"]["fac_dim"],
            (8, 20, 40),
            lambda: make_calcium_chaotic(**options),
        ),
    ]


def run() -> list[dict]:
    """Ceiling R² (all bins and per 10-bin segment) for every dataset and factor count."""
    rows = []
    for name, configured, factor_counts, make_data in _datasets():
        rates = make_data().valid.rates[:N_TRIALS].numpy()
        for n_factors in factor_counts:
            fitted = metrics.exp_readout_fit(rates, n_factors)
            segments = metrics.r2_by_segment(rates, fitted, rates.shape[1] // SEGMENT)
            rows.append(
                dict(
                    dataset=name,
                    configured_fac_dim=configured,
                    n_factors=n_factors,
                    r2=metrics.r2_score(rates, fitted),
                    segments=segments,
                )
            )
            print(f"{name} k={n_factors}: R² {rows[-1]['r2']:.3f}", flush=True)
    return rows


def _markdown(rows: list[dict]) -> str:
    lines = [
        "## Rates R² ceiling of an exponential readout of k factors",
        "",
        f"Regenerate: `{COMMAND}` (`benchmarks/readout_ceiling.py`). {machine()}.",
        f"Factors fitted freely per trial and time step on {N_TRIALS} validation trials "
        "(`metrics.exp_readout_fit`): no model with k factors and an exponential readout can "
        "score higher rates R² on these data.",
        "",
        "| data | benchmark's fac_dim | k | rates R² ceiling | per 10-bin segment |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        segments = " / ".join(f"{s:.2f}" for s in row["segments"])
        lines.append(
            f"| {row['dataset']} | {row['configured_fac_dim']} | {row['n_factors']} "
            f"| {row['r2']:.3f} | {segments} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(parser.parse_args().threads)
    rows = run()
    write_json("readout_ceiling", {"rows": rows})
    update_section("readout_ceiling", _markdown(rows))


if __name__ == "__main__":
    main()

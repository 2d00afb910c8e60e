"""EPI, NPE and SMC-ABC on the 2-D linear system from one model function, in one call.

The script has no per-method code: ``compare`` reads the parameters and statistics from the
Pyro model, runs each method with the same simulation budget and writes the table, the
InferenceData of every run and the two comparison plots.

    python examples/compare_methods.py --budget 2000 --out compare-lds2d
"""

from __future__ import annotations

import argparse

import arviz as az
import torch

from pyro_circuits.compare import compare, markdown_table
from pyro_circuits.models import LDS2D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2000, help="simulations per method")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="compare-lds2d", help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(1)

    table, idatas = compare(
        LDS2D(), LDS2D.oscillation(), budget=args.budget, seeds=args.seeds, out=args.out
    )
    columns = ["method", "seed", "converged", "distance", "wall_time", "simulations"]
    print(markdown_table(table[columns + [c for c in table if c.startswith("mean ")]]))
    for name, idata in idatas.items():
        print(f"\n{name}\n{az.summary(idata, kind='stats').round(2)}")
    print(f"\nwrote {args.out}/")


if __name__ == "__main__":
    main()

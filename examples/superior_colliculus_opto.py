"""Delay-period optogenetic silencing of the superior colliculus Pro/Anti model.

Simulates one connectivity with and without silencing of all four populations during the delay
(0.8-1.2 s, x = (1 - γ)·φ(u), Bittner et al. 2021, Fig. 5), prints Pro and Anti accuracy, and the
gradient of Anti accuracy with respect to the silencing strength γ.

    python examples/superior_colliculus_opto.py --trials 200 --seed 0
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro import poutine

from pyro_circuits.handlers import perturb
from pyro_circuits.models import SuperiorColliculus
from pyro_circuits.models.superior_colliculus import POPULATIONS
from pyro_circuits.sites import CircuitProgram

DELAY = (0.8, 1.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weights", type=float, nargs=4, default=(0.88, -1.88, -1.65, -1.48), help="sW vW dW hW"
    )
    args = parser.parse_args()

    model = SuperiorColliculus(trials=args.trials)
    program = CircuitProgram(model)
    values = {name: torch.tensor([w]) for name, w in zip(program.params, args.weights, strict=True)}
    print(f"connectivity {dict(zip(program.params, args.weights, strict=True))}")
    for gamma in (0.0, 0.5, 0.675, 0.85):
        pyro.set_rng_seed(args.seed)  # the same noise for every γ
        with perturb.optogenetic(POPULATIONS, window=DELAY, gain=gamma):
            stats = program.simulate(values)
        print(
            f"γ = {gamma:<5}  Pro accuracy {stats['pro_accuracy'].item():.3f}  "
            f"Anti accuracy {stats['anti_accuracy'].item():.3f}"
        )
    conditioned = poutine.condition(model, data={k: v[0] for k, v in values.items()})
    grad = perturb.stimulus_gradient(
        conditioned, "anti_accuracy", POPULATIONS, DELAY, gain=0.675, seed=args.seed
    )
    print(f"d(Anti accuracy)/dγ at γ = 0.675: {grad.item():+.3f}")


if __name__ == "__main__":
    main()

"""How often SMC-ABC's perturbation kernel lands inside the prior's box on ``rank2_rnn(n)``.

Mimics population 0 → 1 of sbi's ``SMCABC`` as ``benchmarks.compare_rank2`` runs it: 2,000
prior draws are simulated, the 1,000 nearest to x₀ are kept, and each is perturbed with a
Gaussian kernel whose covariance is theirs × the kernel scale. The fraction of perturbed draws
inside the box is what :func:`pyro_circuits.sbi.SMCABC` compares with ``min_kernel_acceptance``.

Regenerate (about a minute; one record, ``benchmarks/records/smc_kernel_support/all.json``)::

    .venv/bin/python -m benchmarks.studies.smc_kernel_support
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.records import command, write_record
from pyro_circuits.catalog import MODELS
from pyro_circuits.sbi import Simulator, observation, sbi_prior
from pyro_circuits.sites import CircuitProgram

STUDY = "smc_kernel_support"


def fraction_inside(n: int, scale: float, draws: int, seed: int) -> float:
    """Fraction of ``draws`` kernel perturbations of population 0 inside the prior's box."""
    torch.manual_seed(seed)
    entry = MODELS["rank2_rnn"]
    prop = entry.property()
    simulator = Simulator(CircuitProgram(entry.build(n)), prop.names)
    prior = sbi_prior(simulator.space)
    theta = prior.sample((2000,))
    distance = (simulator(theta) - observation(prop)).norm(dim=-1)
    kept = theta[distance.argsort()[:1000]]
    kernel = torch.distributions.MultivariateNormal(kept, covariance_matrix=scale * kept.T.cov())
    inside = sum(int(prior.support.check(kernel.sample()).sum()) for _ in range(draws // len(kept)))
    return inside / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 25, 50])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--draws", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        {"n": n, "dim": 4 * n, "scale": s, "inside": fraction_inside(n, s, args.draws, args.seed)}
        for n in args.sizes
        for s in args.scales
    ]
    path = write_record(
        STUDY,
        "all",
        command(f"benchmarks.studies.{STUDY}", *_options(args)),
        {"sizes": args.sizes, "scales": args.scales, "draws": args.draws, "seed": args.seed},
        {"rows": rows},
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


def _options(args) -> list:
    """The command-line options that differ from the defaults."""
    options = []
    for flag, value, default in (
        ("--sizes", args.sizes, [2, 5, 10, 25, 50]),
        ("--scales", args.scales, [1.0, 0.1]),
        ("--draws", [args.draws], [300_000]),
        ("--seed", [args.seed], [0]),
    ):
        if list(value) != default:
            options += [flag, *value]
    return options


if __name__ == "__main__":
    main()

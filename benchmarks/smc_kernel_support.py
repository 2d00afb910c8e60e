"""How often SMC-ABC's perturbation kernel lands inside the prior's box on ``rank2_rnn(n)``.

Mimics population 0 → 1 of sbi's ``SMCABC`` as ``benchmarks.compare_rank2`` runs it: 2,000
prior draws are simulated, the 1,000 nearest to x₀ are kept, and each is perturbed with a
Gaussian kernel whose covariance is theirs × the kernel scale. The fraction of perturbed draws
inside the box is what :func:`pyro_circuits.sbi.SMCABC` compares with ``min_kernel_acceptance``.

Regenerate (about a minute)::

    .venv/bin/python -m benchmarks.smc_kernel_support
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._report import machine, update_section, write_json
from pyro_circuits.models import Rank2RNN
from pyro_circuits.sbi import Simulator, observation, sbi_prior
from pyro_circuits.sites import CircuitProgram

COMMAND = ".venv/bin/python -m benchmarks.smc_kernel_support"


def fraction_inside(n: int, scale: float, draws: int, seed: int) -> float:
    """Fraction of ``draws`` kernel perturbations of population 0 inside the prior's box."""
    torch.manual_seed(seed)
    prop = Rank2RNN.stable_amplification()
    simulator = Simulator(CircuitProgram(Rank2RNN(n)), prop.names)
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
    write_json("smc_kernel_support", {"machine": machine(), "draws": args.draws, "rows": rows})
    lines = [
        "## SMC-ABC: perturbation-kernel draws inside the prior (rank-2 RNN)",
        "",
        f"Regenerate: `{COMMAND}` (`benchmarks/smc_kernel_support.py`). {machine()}.",
        f"Population 0 of the compare_rank2 protocol (1,000 of 2,000 prior draws nearest x₀), "
        f"{args.draws:,} kernel draws per cell; 0 means none of them. `SMCABC` stops a population "
        "below 1e-5 (`min_kernel_acceptance`).",
        "",
        "| n | dim z | " + " | ".join(f"kernel × {s:g}" for s in args.scales) + " |",
        "|---|---|" + "---|" * len(args.scales),
    ]
    for n in args.sizes:
        cells = [f"{r['inside']:.2g}" for r in rows if r["n"] == n]
        lines.append(f"| {n} | {4 * n} | " + " | ".join(cells) + " |")
    update_section("smc_kernel_support", "\n".join(lines))


if __name__ == "__main__":
    main()

"""How close does the paper's SNPE flow get to x₀ when fitted to the exact posterior?

NPE on ``rank2_rnn`` (x₀ = (0.5, 1.5)) stalls at a predictive distance of 0.55–0.6 at n = 2 and
above 2 at n = 25, whatever the rounds, flow size, flow kind or truncation (``npe_rank2_tail``).
This study gives the density estimator the best data a round could hope for, draws of the posterior
given ‖f − x₀‖ < ε, and measures the predictive of the fit: is the flow, or the rounds, what stops
NPE?

* Posterior draws. At n = 2 by rejection: ``--prior-draws`` uniform prior draws simulated in
  chunks, those within ε of x₀ kept, and ``--kept`` of them drawn at random. At n ≥ 5, where
  rejection is out of reach, by a random walk confined to the box and the ε-ball (the posterior is
  uniform there): ``--kept`` chains start from prior draws scaled onto x₀ (f is homogeneous of
  degree two in θ, J = UVᵀ), take ``--steps`` steps, the first half adapting the step to accept
  a quarter of the moves, and their last states are the draws. The mean ‖θ‖ at each quarter of
  the walk tells whether the chains have settled.
* Their own predictive (each draw simulated again with fresh noise) is the reference: what an exact
  posterior reaches.
* Fit: one round of sbi's ``NPE_C`` on the (θ, x) pairs, the estimator built as the package's NPE
  builds it (``estimator_builder``: the support map onto the prior's box), trained to sbi's stop
  with batch 200. On draws that are not from the prior its loss is plain maximum likelihood, so it
  is the closest this flow gets to the posterior with as many draws. Its predictive (``--check``
  draws at x₀): the distances of its mean and median, and the share within 0.5 of x₀.

``--flows`` picks the fits among ``FLOWS``, the paper's always among them (by default the first
three: 1, 6 and 8 times the paper's weights at n = 25); the two 5 × 256 flows, with 28 and 84
times them, say whether capacity is what keeps the fit from x₀.

Several ε at one count say whether the fit at x₀ degrades as the training x spread around it, as
an NPE round's do. With ``--npe-rounds R``, instead: the package's ``NPE`` with the paper's
protocol (``npe_rank2_tail``'s rounds) for R rounds at ``--n``, recording each round's share of
simulations within one target s.d. of x₀ (``near_x0``): how near x₀ the rounds gather their data.

With ``--jitter S …``, instead: why the fit misses, and why more at larger n. The draws at the
first ε, each coordinate moved by independent Gaussian noise of s.d. S, and their predictive: the
mean of each statistic and the distance. The largest eigenvalue of (W + Wᵀ)/2 is convex in W and
E[(U + S·A)(V + S·B)ᵀ] = UVᵀ, so spread of any kind raises ``sym_lambda``'s mean (Jensen), by an
amount that grows with the n − 4 directions the noise can push the top eigenvector into; the
paper's flow fitted to the same draws is recorded beside it, with its per-statistic means, to say
whether its miss is that bias.

Regenerate (``benchmarks/records/npe_flow_ceiling/``: ``n2.json``, ``n25.json``,
``n25_kept20000.json``, ``n25_kept20000_capacity.json``, ``n2_npe.json`` and ``n25_npe.json``;
about 20, 40, 35, 50, 10 and 15 minutes on one core)::

    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --n 25 --epsilons 0.25 0.5
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --n 25 --epsilons 0.25 \
        --kept 20000 --steps 10000
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --n 25 --epsilons 0.25 \
        --kept 20000 --steps 10000 --tag capacity \
        --flows "zuko_maf 3 × 50 (paper)" "zuko_maf 5 × 256" "zuko_nsf 5 × 256"
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --npe-rounds 10
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --npe-rounds 5 --n 25
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --epsilons 0.25 \
        --prior-draws 20000000 --jitter 0.02 0.05 0.1 0.2 0.5
    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling --n 25 --epsilons 0.25 \
        --steps 10000 --kept 2000 --jitter 0.02 0.05 0.1 0.2 0.5

(``n2_jitter.json`` and ``n25_jitter.json``: about 5 minutes each.)
"""

from __future__ import annotations

import argparse
import math

import torch
from tqdm import trange

from benchmarks.records import changed_flags, command, write_record
from benchmarks.studies.npe_rank2_tail import fit_once, many_rounds, setup
from pyro_circuits.sbi.npe import estimator_builder

STUDY = "npe_flow_ceiling"
PAPER = "zuko_maf 3 × 50 (paper)"
FLOWS = {
    PAPER: ("zuko_maf", 3, 50),
    "zuko_maf 5 × 100": ("zuko_maf", 5, 100),
    "zuko_nsf 3 × 50": ("zuko_nsf", 3, 50),
    "zuko_maf 5 × 256": ("zuko_maf", 5, 256),
    "zuko_nsf 5 × 256": ("zuko_nsf", 5, 256),
}
COMPARED = list(FLOWS)[:3]


def rejection(simulator, prior, x0, draws: int, epsilon: float, chunk: int = 1_000_000):
    """The prior draws among ``draws`` whose statistics fall within ``epsilon`` of ``x0``, and
    those statistics."""
    kept_theta, kept_x = [], []
    for start in range(0, draws, chunk):
        theta = prior.sample((min(chunk, draws - start),))
        x = simulator(theta)
        inside = (x - x0).norm(dim=1) < epsilon
        kept_theta.append(theta[inside])
        kept_x.append(x[inside])
    return torch.cat(kept_theta), torch.cat(kept_x)


def scaled_starts(simulator, prior, x0, chains: int, epsilon: float, batch: int = 50_000):
    """``chains`` points within ``epsilon`` of ``x0``: prior draws whose two statistics have x₀'s
    ratio (within 5 %), scaled by √(x₀₁ / f₁)."""
    ratio = x0[1] / x0[0]
    found = []
    while sum(len(theta) for theta in found) < chains:
        theta = prior.sample((batch,))
        x = simulator(theta)
        near = (x[:, 0] > 0) & ((x[:, 1] / x[:, 0] - ratio).abs() < 0.05 * ratio)
        scaled = theta[near] * (x0[0] / x[near, 0]).sqrt()[:, None]
        inside = (simulator(scaled) - x0).norm(dim=1) < epsilon
        found.append(scaled[inside])
    return torch.cat(found)[:chains]


def confined_walk(simulator, start, x0, epsilon: float, steps: int, low=-1.0, high=1.0):
    """Random-walk Metropolis on the uniform distribution over the box ∩ {‖f − x₀‖ < ε}, one
    chain per row of ``start``: the last states, their statistics, the mean ‖θ‖ at each quarter
    of the walk and the acceptance rate of the second half."""
    theta, x, step_size = start.clone(), simulator(start), 0.02
    norms, accepted = [], []
    for step in trange(steps, desc=f"walk ε={epsilon}", mininterval=10.0):
        proposal = theta + step_size * torch.randn_like(theta)
        proposed_x = simulator(proposal.clamp(low, high))
        inside = ((proposal > low) & (proposal < high)).all(1)
        accept = inside & ((proposed_x - x0).norm(dim=1) < epsilon)
        theta = torch.where(accept[:, None], proposal, theta)
        x = torch.where(accept[:, None], proposed_x, x)
        rate = accept.float().mean().item()
        if step < steps // 2:
            step_size *= math.exp(0.1 * (rate - 0.25))
        else:
            accepted.append(rate)
        if (step + 1) % (steps // 4) == 0:
            norms.append(theta.norm(dim=1).mean().item())
    return theta, x, {"mean_norm_by_quarter": norms, "acceptance": sum(accepted) / len(accepted)}


def predictive_summary(x: torch.Tensor, x0: torch.Tensor) -> dict:
    """The predictive's mean of each statistic, the distances to x₀ of its mean and median, and
    its share within 0.5 of x₀."""
    return {
        "mean": x.mean(0).tolist(),
        "distance": (x.mean(0) - x0).norm().item(),
        "median_distance": (x.median(0).values - x0).norm().item(),
        "within_0.5": ((x - x0).norm(dim=1) < 0.5).float().mean().item(),
    }


def fit(theta, x, x0, prior, simulator, flow: tuple[str, int, int], check: int) -> dict:
    """One round of ``NPE_C`` on the (θ, x) pairs with ``flow``, and its predictive at x₀."""
    estimator, transforms, hidden = flow
    kwargs = {"hidden_features": hidden, "num_transforms": transforms}
    build = estimator_builder(estimator, kwargs, prior)
    fitted = fit_once(build, prior, theta, x, x0, simulator, check)
    predictive = fitted.pop("predictive")
    return {**fitted, **predictive_summary(predictive, x0)}


def jittered(theta, x, x0, prior, simulator, scales, check: int) -> dict:
    """The predictive of the draws ``theta`` moved by Gaussian noise of each s.d. in ``scales``,
    and of the paper's flow fitted to (``theta``, ``x``)."""
    rows = [{"sd": 0.0, **predictive_summary(simulator(theta), x0)}]
    for scale in scales:
        moved = theta + scale * torch.randn_like(theta)
        rows.append({"sd": scale, **predictive_summary(simulator(moved), x0)})
        print(rows[-1], flush=True)
    flow = fit(theta, x, x0, prior, simulator, FLOWS[PAPER], check)
    return {"jitter": rows, "flow": flow}


def posterior_draws(args, simulator, prior, x0, epsilon: float, pool):
    """``args.kept`` draws of the posterior given ‖f − x₀‖ < ``epsilon``, their statistics, and
    how they were found."""
    if pool is not None:
        theta, x = pool
        inside = ((x - x0).norm(dim=1) < epsilon).nonzero().squeeze(1)
        chosen = inside[torch.randperm(len(inside))[: args.kept]]
        found = {"acceptance": len(inside) / args.prior_draws}
        return theta[chosen], x[chosen], found
    start = scaled_starts(simulator, prior, x0, args.kept, epsilon)
    return confined_walk(simulator, start, x0, epsilon, args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2, help="network size (n = 2: rejection)")
    parser.add_argument("--prior-draws", type=int, default=100_000_000, help="rejection's")
    parser.add_argument("--steps", type=int, default=20_000, help="random walk's (n > 2)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--kept", type=int, default=5000, help="posterior draws per ε")
    parser.add_argument("--check", type=int, default=2000, help="predictive draws of each fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--npe-rounds", type=int, default=0, help="NPE's rounds instead (seed 1)")
    parser.add_argument(
        "--jitter", type=float, nargs="*", default=[], help="noise s.d.s on the first ε's draws"
    )
    parser.add_argument("--flows", nargs="+", choices=list(FLOWS), default=COMPARED)
    parser.add_argument("--tag", default="", help="suffix of the record's variant")
    args = parser.parse_args()
    if PAPER not in args.flows:
        parser.error(f"--flows must include {PAPER!r}, the flow the others are compared with")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    regenerate = command(f"benchmarks.studies.{STUDY}", *changed_flags(parser, args))
    if args.npe_rounds:
        runs = many_rounds(args.npe_rounds, [1], 3, 50, None, n=args.n)
        write_record(STUDY, f"n{args.n}_npe", regenerate, vars(args), {"runs": runs})
        return
    simulator, x0, prior = setup(args.n)
    pool = None
    if args.n == 2:
        pool = rejection(simulator, prior, x0, args.prior_draws, max(args.epsilons))
    if args.jitter:
        theta, x, found = posterior_draws(args, simulator, prior, x0, args.epsilons[0], pool)
        measured = jittered(theta, x, x0, prior, simulator, args.jitter, args.check)
        print(measured["flow"], flush=True)
        metrics = {"epsilon": args.epsilons[0], "kept": len(theta), **found, **measured}
        write_record(STUDY, f"n{args.n}_jitter", regenerate, vars(args), metrics)
        return
    rows = []
    for epsilon in args.epsilons:
        theta, x, found = posterior_draws(args, simulator, prior, x0, epsilon, pool)
        exact = predictive_summary(simulator(theta), x0)
        row = {"epsilon": epsilon, "kept": len(theta), **found, "exact": exact, "fits": {}}
        print(row, flush=True)
        for name in args.flows:
            torch.manual_seed(args.seed)
            row["fits"][name] = fit(theta, x, x0, prior, simulator, FLOWS[name], args.check)
            print(epsilon, name, row["fits"][name], flush=True)
        rows.append(row)
    kept = "" if args.kept == parser.get_default("kept") else f"_kept{args.kept}"
    tag = f"_{args.tag}" if args.tag else ""
    write_record(STUDY, f"n{args.n}{kept}{tag}", regenerate, vars(args), {"rows": rows})


if __name__ == "__main__":
    main()

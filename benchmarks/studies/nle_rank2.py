"""Does sbi's sequential NLE meet the rank-2 RNN's criterion where NPE's flow cannot?

NPE's flow models p(θ | x) over all 4n parameters, and at n = 25 it misses x₀ = (0.5, 1.5) by
more than 2 even when fitted to exact posterior draws (``npe_flow_ceiling``): the fit must hold
the 100-dimensional posterior within about 0.1 per coordinate. NLE models p(x | θ) instead, a
density over the two statistics, and draws the posterior from its likelihood times the prior.
This study runs it with the paper's budget per round: rounds of 1,000 simulations drawn from the
last round's posterior (the first from the prior), and sbi's ``NLE_A`` with a 3 × 50 MAF trained
to sbi's stop with batch 200 on all rounds' simulations. Its posterior is drawn two ways
(``--sampler``): sbi's vectorised slice sampler (``mcmc``: ``--chains`` chains, ``--warmup``
sweeps, every ``--thin``-th state kept), where no flow holds the posterior's shape; or sbi's
variational posterior (``vi``: a 5 × 50 MAF fitted by reverse KL for up to ``--vi-steps``
steps without sbi's quality control, SNVI), whose fit seeks the posterior's modes where NPE's maximum likelihood covers its
mass. Each round's draws, simulated, are both the next round's data and the last posterior's
predictive: the distance of their mean (and median) to x₀, recorded per round with the wall time
so far; the run stops at ``--stop-distance``.

Regenerate (``benchmarks/records/nle_rank2/n25_vi.json``)::

    .venv/bin/python -m benchmarks.studies.nle_rank2 --n 25
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.records import changed_flags, command, write_record
from benchmarks.studies.npe_rank2_tail import setup
from pyro_circuits.sbi.npe import NoTracker

STUDY = "nle_rank2"


def rounds(n: int, count: int, simulations: int, draw, stop_distance: float, seed: int) -> list:
    """Per round: the simulations so far, the wall time, and the distances to x₀ of the mean
    and median of the round's draws simulated (the previous round's posterior predictive).
    ``draw(inference, net, x0, count)`` draws the next round's parameters."""
    from sbi.inference import NLE_A
    from sbi.neural_nets import likelihood_nn

    simulator, x0, prior = setup(n)
    torch.manual_seed(seed)
    build = likelihood_nn(model="maf", hidden_features=50, num_transforms=3)
    inference = NLE_A(
        prior=prior, density_estimator=build, show_progress_bars=False, tracker=NoTracker()
    )
    theta, history, start = prior.sample((simulations,)), [], time.perf_counter()
    for index in range(count + 1):
        with torch.no_grad():
            x = simulator(theta)
        if index:
            history.append(
                {
                    "round": index,
                    "simulations": index * simulations,
                    "wall_time": time.perf_counter() - start,
                    "distance": (x.mean(0) - x0).norm().item(),
                    "median_distance": (x.median(0).values - x0).norm().item(),
                    "within_0.5": ((x - x0).norm(dim=1) < 0.5).float().mean().item(),
                }
            )
            print(history[-1], flush=True)
            if history[-1]["distance"] < stop_distance or index == count:
                return history
        net = inference.append_simulations(theta, x).train(training_batch_size=200)
        theta = draw(inference, net, x0, simulations)
    return history


def slice_sampler(chains: int, warmup: int, thin: int):
    """Draws from NLE's posterior by sbi's vectorised slice sampler."""
    from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters

    parameters = MCMCPosteriorParameters(
        method="slice_np_vectorized", num_chains=chains, warmup_steps=warmup, thin=thin
    )

    def draw(inference, net, x0, count):
        posterior = inference.build_posterior(net, posterior_parameters=parameters)
        return posterior.sample((count,), x=x0, show_progress_bars=False)

    return draw


def variational(steps: int):
    """Draws from NLE's posterior by sbi's variational posterior, fitted by reverse KL."""
    from sbi.inference.posteriors.posterior_parameters import VIPosteriorParameters

    parameters = VIPosteriorParameters(q="maf", vi_method="rKL")

    def draw(inference, net, x0, count):
        posterior = inference.build_posterior(net, posterior_parameters=parameters)
        posterior.set_default_x(x0)
        posterior.train(max_num_iters=steps, show_progress_bar=False, quality_control=False)
        return posterior.sample((count,), show_progress_bars=False)

    return draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=25, help="network size")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--simulations", type=int, default=1000, help="per round")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--sampler", choices=["vi", "mcmc"], default="vi")
    parser.add_argument("--chains", type=int, default=50, help="slice sampler's")
    parser.add_argument("--warmup", type=int, default=100, help="slice sampler's sweeps")
    parser.add_argument("--thin", type=int, default=5, help="slice sampler's")
    parser.add_argument("--vi-steps", type=int, default=2000, help="reverse-KL steps at most")
    parser.add_argument("--stop-distance", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.sampler == "vi":
        draw = variational(args.vi_steps)
    else:
        draw = slice_sampler(args.chains, args.warmup, args.thin)
    runs = [
        {
            "seed": seed,
            "history": rounds(
                args.n, args.rounds, args.simulations, draw, args.stop_distance, seed
            ),
        }
        for seed in args.seeds
    ]
    regenerate = command(f"benchmarks.studies.{STUDY}", *changed_flags(parser, args))
    write_record(STUDY, f"n{args.n}_{args.sampler}", regenerate, vars(args), {"runs": runs})


if __name__ == "__main__":
    main()

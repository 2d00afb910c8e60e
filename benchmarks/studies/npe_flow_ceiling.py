"""Can the paper's SNPE flow, fitted to the exact posterior at x₀, meet the criterion at n = 2?

NPE at n = 2 (``rank2_rnn(2)``, x₀ = (0.5, 1.5)) stalls at a predictive distance of 0.55–0.6
whatever the rounds, flow size, flow kind or truncation (``npe_rank2_tail``). This study asks
whether any round could do better: it gives the density estimator the best data a sequential
round could hope for, draws from the exact (rejection-ABC) posterior, and measures the predictive
of the fit.

* Rejection: ``--prior-draws`` uniform prior draws are simulated in chunks, and those whose
  statistics fall within ε of x₀ (ε ∈ ``--epsilons``) kept: samples of the posterior given
  ‖f − x₀‖ < ε. Their own predictive (each kept θ simulated again, with the simulator's fresh
  noise) is the reference: the distance an exact posterior reaches.
* Fit: one round of sbi's ``NPE_C`` on the kept (θ, x) pairs, the estimator built as the package's
  NPE builds it (``estimator_builder``: the support map onto the prior's box), trained to sbi's
  stop with batch 200. Its loss on draws that are not from the prior is plain maximum likelihood,
  so it is the closest this flow gets to the posterior. Its predictive distance (mean and median of
  ``--check`` draws at x₀) is what a round would reach at best; the share of its draws within 0.5 of
  x₀ says how much of its mass lies off the posterior.

The flows: the paper's ``zuko_maf`` 3 transforms × 50 units, a larger 5 × 100, and ``zuko_nsf``
3 × 50.

Regenerate (``benchmarks/records/npe_flow_ceiling/all.json``; about 10 minutes on one core)::

    .venv/bin/python -m benchmarks.studies.npe_flow_ceiling
"""

from __future__ import annotations

import argparse
import math

import torch

from benchmarks.records import changed_flags, command, write_record
from benchmarks.studies.npe_rank2_tail import setup
from pyro_circuits.sbi.npe import estimator_builder

STUDY = "npe_flow_ceiling"
FLOWS = {
    "zuko_maf 3 × 50 (paper)": ("zuko_maf", 3, 50),
    "zuko_maf 5 × 100": ("zuko_maf", 5, 100),
    "zuko_nsf 3 × 50": ("zuko_nsf", 3, 50),
}


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


def distances(x: torch.Tensor, x0: torch.Tensor) -> dict:
    """The predictive's distances to x₀: of its mean, of its median, and the share within 0.5."""
    return {
        "distance": (x.mean(0) - x0).norm().item(),
        "median_distance": (x.median(0).values - x0).norm().item(),
        "within_0.5": ((x - x0).norm(dim=1) < 0.5).float().mean().item(),
    }


def fit(theta, x, x0, prior, simulator, flow: tuple[str, int, int], check: int) -> dict:
    """One round of ``NPE_C`` on the (θ, x) pairs with ``flow``, and its predictive at x₀."""
    from sbi.inference import NPE_C

    estimator, transforms, hidden = flow
    kwargs = {"hidden_features": hidden, "num_transforms": transforms}
    build = estimator_builder(estimator, kwargs, prior)
    inference = NPE_C(prior=prior, density_estimator=build, show_progress_bars=False)
    net = inference.append_simulations(theta, x).train(training_batch_size=200)
    posterior = inference.build_posterior(net)
    with torch.no_grad():
        draws = posterior.sample((check,), x=x0, show_progress_bars=False)
        predictive = simulator(draws)
    return {
        "validation_log_prob": -float(inference.summary["best_validation_loss"][-1]),
        "epochs": int(inference.summary["epochs_trained"][-1]),
        **distances(predictive, x0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior-draws", type=int, default=100_000_000)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--check", type=int, default=2000, help="predictive draws of each fit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    simulator, x0, prior = setup(2)
    theta, x = rejection(simulator, prior, x0, args.prior_draws, max(args.epsilons))
    rows = []
    for epsilon in args.epsilons:
        inside = (x - x0).norm(dim=1) < epsilon
        kept_theta, kept_x = theta[inside], x[inside]
        with torch.no_grad():
            exact = distances(simulator(kept_theta), x0)
        row = {
            "epsilon": epsilon,
            "kept": len(kept_theta),
            "acceptance": len(kept_theta) / args.prior_draws,
            "exact": exact,
            "fits": {},
        }
        for name, flow in FLOWS.items():
            torch.manual_seed(args.seed)
            row["fits"][name] = fit(kept_theta, kept_x, x0, prior, simulator, flow, args.check)
            print(epsilon, name, row["fits"][name], flush=True)
        rows.append(row)
    prior_log_prob = -theta.shape[1] * math.log(2.0)
    write_record(
        STUDY,
        "all",
        command(f"benchmarks.studies.{STUDY}", *changed_flags(parser, args)),
        vars(args),
        {"prior_log_prob": prior_log_prob, "rows": rows},
    )


if __name__ == "__main__":
    main()

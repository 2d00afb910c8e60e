"""Why does NPE miss the rank-2 RNN's x₀ even with the paper's SNPE protocol?

Two measurements on ``rank2_rnn(n)`` and its stable-amplification property (x₀ = (0.5, 1.5)):

* the prior predictive: the mean and s.d. of the two statistics over uniform prior draws, their
  distance to x₀, and the fraction of draws within 0.25 of x₀ (what a first round of NPE sees
  near the observation);
* one round of NPE at n = 2 on ``--simulations`` prior draws, trained to sbi's stop, three ways
  (``zuko_maf`` with the package's support map, ``zuko_maf`` without it, sbi's nflows ``maf``;
  3 transforms × 50 units): the best validation log-probability against the prior's (the
  information the round gained about θ) and the posterior predictive's distance to x₀ on 2,000
  draws;
* with ``--rounds R``, instead: the package's ``NPE`` at n = 2 with the paper's protocol (rounds
  of 1,000, trained to sbi's stop, batch 200) for R rounds without the patience stop, each
  round's predictive distance and validation log-probability, for ``--seeds`` (does the
  reference's stop end the rounds before they would converge?); ``--transforms`` and
  ``--hidden`` change the flow (is the paper's 3 × 50 too small?), ``--estimator`` its kind
  (``zuko_nsf``: are affine layers too rigid?), and ``--truncate Q`` runs
  truncated sequential NPE instead of the atomic loss (is it the paper's SNPE variant?), and
  ``--calibration W`` weights each simulation's loss by exp(−‖x − x₀‖² / 2W²) (sbi's
  ``calibration_kernel``, Lueckmann et al. 2017: the target posterior is unchanged, the flow's
  capacity goes to simulations near x₀; does NPE converge once its fit is local?);
  ``--atoms 100 --raw-x`` are the settings the paper's figure loader names (100 atoms in the
  atomic loss, sbi's default 10; ``z_score_x=False``, the statistics fed to the flow unscaled):
  does the figure's own configuration converge?

Regenerate (a few minutes; ``benchmarks/records/npe_rank2_tail/all.json``; with ``--rounds 20
--seeds 1 2``, ``rounds.json``, about an hour)::

    .venv/bin/python -m benchmarks.studies.npe_rank2_tail
    .venv/bin/python -m benchmarks.studies.npe_rank2_tail --rounds 20 --seeds 1 2
"""

from __future__ import annotations

import argparse
import math

import torch

from benchmarks.records import changed_flags, command, write_record
from pyro_circuits.catalog import MODELS
from pyro_circuits.sbi import NPE
from pyro_circuits.sbi.bridge import prepare, sbi_prior
from pyro_circuits.sbi.npe import NoTracker, estimator_builder
from pyro_circuits.space import ParameterSpace

STUDY = "npe_rank2_tail"
WAYS = {
    "zuko_maf, support map": ("zuko_maf", True),
    "zuko_maf, no support map": ("zuko_maf", False),
    "maf (nflows)": ("maf", False),
}


def setup(n: int):
    entry = MODELS["rank2_rnn"]
    model, prop = entry.build(n), entry.property()
    program, simulator, x0 = prepare(model, prop, None, (), {}, None, torch.device("cpu"))
    return simulator, x0.squeeze(0), sbi_prior(ParameterSpace(program.priors))


def prior_predictive(n: int, draws: int) -> dict:
    simulator, x0, prior = setup(n)
    x = simulator(prior.sample((draws,)))
    return {
        "n": n,
        "mean": x.mean(0).tolist(),
        "sd": x.std(0).tolist(),
        "distance_of_mean": (x.mean(0) - x0).norm().item(),
        "within_0.25": ((x - x0).norm(dim=1) < 0.25).float().mean().item(),
    }


def fit_once(build, prior, theta, x, x0, simulator, draws: int) -> dict:
    """One round of sbi's ``NPE_C`` with the estimator ``build`` on the (θ, x) pairs, trained to
    sbi's stop with batch 200: its best validation log-probability, epochs, and the statistics
    of ``draws`` posterior draws at ``x0`` (``predictive``)."""
    from sbi.inference import NPE_C

    inference = NPE_C(
        prior=prior, density_estimator=build, show_progress_bars=False, tracker=NoTracker()
    )
    net = inference.append_simulations(theta, x).train(training_batch_size=200)
    posterior = inference.build_posterior(net)
    with torch.no_grad():
        predictive = simulator(posterior.sample((draws,), x=x0, show_progress_bars=False))
    return {
        "validation_log_prob": -float(inference.summary["best_validation_loss"][-1]),
        "epochs": int(inference.summary["epochs_trained"][-1]),
        "predictive": predictive,
    }


def one_round(simulations: int, seed: int) -> list[dict]:
    from sbi.neural_nets import posterior_nn

    simulator, x0, prior = setup(2)
    torch.manual_seed(seed)
    theta = prior.sample((simulations,))
    x = simulator(theta)
    prior_log_prob = -theta.shape[1] * math.log(2.0)  # uniform on [-1, 1] per coordinate
    rows = []
    for name, (estimator, support) in WAYS.items():
        kwargs = {"hidden_features": 50, "num_transforms": 3}
        build = (
            estimator_builder(estimator, kwargs, prior)
            if support
            else posterior_nn(model=estimator, **kwargs)
        )
        fitted = fit_once(build, prior, theta, x, x0, simulator, 2000)
        predictive = fitted.pop("predictive")
        rows.append(
            {
                "way": name,
                **fitted,
                "gain_over_prior": fitted["validation_log_prob"] - prior_log_prob,
                "predictive_mean": predictive.mean(0).tolist(),
                "distance": (predictive.mean(0) - x0).norm().item(),
            }
        )
        print(rows[-1], flush=True)
    return rows


class NearObservation:
    """sbi calibration kernel: the Gaussian weight exp(−‖x − x₀‖² / 2 width²) of each
    simulation (a class, so that the result pickles)."""

    def __init__(self, x0: torch.Tensor, width: float):
        self.x0, self.width = x0, width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((x - self.x0) ** 2).sum(-1) / (2 * self.width**2))


class InsideBall(NearObservation):
    """sbi calibration kernel: weight 1 for a simulation within ``width`` of x₀, else 0 (the
    round trains only on the pairs with x in the ball, where p(θ | x) is unchanged)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.x0).norm(dim=-1) < self.width).to(x.dtype)


def many_rounds(
    rounds: int,
    seeds: list[int],
    transforms: int,
    hidden: int,
    truncate: float | None,
    estimator: str = "zuko_maf",
    n: int = 2,
    stop_distance: float | None = None,
    calibration: float | None = None,
    ball: float | None = None,
    simulations: int = 1000,
    atoms: int = 0,
    raw_x: bool = False,
) -> list[dict]:
    """The per-round history of the paper's SNPE protocol at size ``n``, with no patience stop
    (stopping at ``stop_distance`` where given; the loss weighted by :class:`NearObservation`
    of width ``calibration``, or by :class:`InsideBall` of radius ``ball``, where given; with
    ``atoms`` in the atomic loss where nonzero, and the flow fed unscaled statistics with
    ``raw_x``)."""
    entry = MODELS["rank2_rnn"]
    train_kwargs = {"training_batch_size": 200, **({"num_atoms": atoms} if atoms else {})}
    flow = {"hidden_features": hidden, "num_transforms": transforms}
    if raw_x:
        flow["z_score_x"] = None
    kernel = InsideBall if ball else NearObservation if calibration else None
    if kernel:
        train_kwargs["calibration_kernel"] = kernel(setup(n)[1], ball or calibration)
    runs = []
    for seed in seeds:
        result = NPE(
            entry.build(n),
            entry.property(),
            simulations=simulations,
            rounds=rounds,
            stop_distance=stop_distance,
            density_estimator=estimator,
            estimator_kwargs=flow,
            train_kwargs=train_kwargs,
            check_samples=1000,
            truncate=truncate,
            seed=seed,
            progress=False,
            threads=1,
        )
        runs.append({"seed": seed, "history": result.history.to_dict("records")})
        print(result.history.to_string(), flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--simulations", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=0, help="NPE rounds without the stop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--transforms", type=int, default=3, help="flow transforms (--rounds)")
    parser.add_argument("--hidden", type=int, default=50, help="hidden units (--rounds)")
    parser.add_argument("--estimator", default="zuko_maf", help="sbi's estimator (--rounds)")
    parser.add_argument(
        "--truncate", type=float, default=0.0, help="truncated NPE's quantile (--rounds; 0: off)"
    )
    parser.add_argument("--n", type=int, default=2, help="network size (--rounds)")
    parser.add_argument(
        "--ball", type=float, default=0.0, help="train only within this of x₀ (--rounds; 0: off)"
    )
    parser.add_argument(
        "--round-simulations", type=int, default=1000, help="simulations per round (--rounds)"
    )
    parser.add_argument("--tag", default="", help="suffix of the rounds record's variant")
    parser.add_argument(
        "--stop-distance", type=float, default=0.0, help="end at this distance (--rounds; 0: off)"
    )
    parser.add_argument(
        "--calibration", type=float, default=0.0, help="kernel width (--rounds; 0: off)"
    )
    parser.add_argument(
        "--atoms", type=int, default=0, help="atoms of the atomic loss (--rounds; 0: sbi's 10)"
    )
    parser.add_argument("--raw-x", action="store_true", help="no z-scoring of x (--rounds)")
    args = parser.parse_args()
    if args.ball and args.calibration:
        parser.error("--ball and --calibration are alternative kernels: give one")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    flags = changed_flags(parser, args)
    regenerate = command(f"benchmarks.studies.{STUDY}", *flags)
    if args.rounds:
        runs = many_rounds(
            args.rounds,
            args.seeds,
            args.transforms,
            args.hidden,
            args.truncate or None,
            args.estimator,
            args.n,
            args.stop_distance or None,
            args.calibration or None,
            args.ball or None,
            args.round_simulations,
            args.atoms,
            args.raw_x,
        )
        paper = (args.transforms, args.hidden) == (3, 50)
        variant = "rounds" if paper else f"rounds_{args.transforms}x{args.hidden}"
        variant += "_truncated" if args.truncate else ""
        variant += "" if args.estimator == "zuko_maf" else f"_{args.estimator}"
        variant += "" if args.n == 2 else f"_n{args.n}"
        variant += f"_calibration{args.calibration:g}" if args.calibration else ""
        variant += f"_ball{args.ball:g}" if args.ball else ""
        variant += "" if args.round_simulations == 1000 else f"_{args.round_simulations}"
        variant += f"_atoms{args.atoms}" if args.atoms else ""
        variant += "_raw_x" if args.raw_x else ""
        variant += f"_{args.tag}" if args.tag else ""
        write_record(STUDY, variant, regenerate, vars(args), {"runs": runs})
        return
    predictive = [prior_predictive(n, args.draws) for n in (2, 5, 10, 25, 50, 100)]
    rows = one_round(args.simulations, args.seed)
    write_record(
        STUDY,
        "all",
        regenerate,
        vars(args),
        {"prior_predictive": predictive, "one_round": rows},
    )


if __name__ == "__main__":
    main()

"""EPI vs NPE vs SMC-ABC on rank-2 RNN stable amplification across sizes (paper Fig. 2A/B).

Regenerate (defaults are the budgets reported in docs/benchmarks.md):
``.venv/bin/python -m benchmarks.compare_rank2 --sizes 2 5 10 25 50 --seeds 1 2``

EPI runs with the settings of ``MODELS["rank2_rnn"]`` of :mod:`pyro_circuits.catalog` (the
paper's, raw constraint units), its budget cut to ``--epi-epochs`` × ``--epi-iterations``. The
recorded figures were measured before this script read the catalog, with ``standardize=True``
(c0 = 1e3 in standardized units; ``docs/notes/rank2_settings.md``).

For each n, :func:`pyro_circuits.compare.compare` runs every method on ``Rank2RNN(n)`` with
the same property and records the wall time and simulation count at the first checkpoint
whose predictive mean is within 0.5 of μ = (0.5, 1.5) (the paper's shared criterion; EPI:
end of each epoch, NPE: each round, SMC-ABC: each population), or "not converged within
budget". The run's record (variant ``--tag``, ``main`` without one) is written after every size,
so an interrupted run keeps what it finished; the figure is drawn from every record.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from benchmarks.records import ROOT, read_records, write_record  # noqa: E402
from benchmarks.report.compare_rank2 import (  # noqa: E402
    METHODS,
    RERUN,
    label,
    label_order,
    rows_of,
)
from pyro_circuits.catalog import MODELS  # noqa: E402
from pyro_circuits.compare import compare  # noqa: E402
from pyro_circuits.sbi import SMCABCStalled  # noqa: E402

BENCHMARK = "compare_rank2"
FIGURE = ROOT / "docs" / "figures" / "compare_rank2.png"
RERUN_FIGURE = ROOT / "docs" / "figures" / "compare_rank2_rerun.png"


def settings(args) -> tuple[dict, dict]:
    """Per-method budgets and options (the paper's settings where affordable on this CPU)."""
    entry = MODELS["rank2_rnn"]
    epi_config = dataclasses.replace(
        entry.config,
        iterations=args.epi_iterations,
        init_iterations=args.epi_init,
        stop_early=True,
    )
    budgets = {
        "epi": args.epi_epochs * args.epi_iterations * 200,
        "npe": args.npe_rounds * args.npe_round,
        "smcabc": args.smc_budget,
    }
    options = {
        "epi": {"config": epi_config, "flow": entry.flow},
        "npe": {
            "rounds": args.npe_rounds,
            "stop_distance": 0.5,
            "patience": args.npe_patience or None,
            "max_time": args.npe_max_time * 60 or None,
            "density_estimator": "zuko_maf",
            "estimator_kwargs": {"hidden_features": 50, "num_transforms": 3},
            "train_kwargs": npe_training(args),
            "check_samples": 1000,
        },
        "smcabc": {
            "particles": 1000,
            "epsilon_decay": 0.5,
            "distance_based_decay": True,
            "kernel_variance_scale": args.smc_kernel_scale,
        },
    }
    return budgets, options


def npe_training(args) -> dict:
    """sbi's training keywords: ``--npe-epochs 0`` trains each round until sbi's own stop (20
    epochs without a better validation loss), as the paper's SNPE did."""
    train = {"training_batch_size": args.npe_batch}
    if args.npe_epochs:
        train["max_num_epochs"] = args.npe_epochs
    return train


def plot(rows: list[dict], path=FIGURE) -> None:
    if not rows:
        return
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted({label(r) for r in rows}, key=label_order)
    for colour, name in enumerate(names):
        mine = [r for r in rows if label(r) == name]
        # side by side, so markers do not hide each other
        shift = 1 + 0.05 * (colour - (len(names) - 1) / 2)
        for ax, key in zip(axes, ("wall_time_to_converge", "simulations_to_converge"), strict=True):
            done = [r for r in mine if r[key] is not None and r[key] > 0]
            at_zero = [r for r in mine if r[key] == 0]
            failed = [r for r in mine if r[key] is None]
            ax.scatter(
                [r["n"] * shift for r in done],
                [r[key] for r in done],
                color=f"C{colour}",
                label=name if done else None,
            )
            if at_zero:
                ax.scatter(
                    [r["n"] * shift for r in at_zero],
                    [1e3] * len(at_zero),
                    color=f"C{colour}",
                    marker="v",
                    label=f"{name}: within 0.5 at initialisation (0)",
                )
            total = "wall_time" if key.startswith("wall") else "simulations"
            ax.scatter(
                [r["n"] * shift for r in failed],
                [max(r[total], 1) for r in failed],
                color=f"C{colour}",
                marker="x",
                label=f"{name}: not converged (at budget)" if failed else None,
            )
    sizes = sorted({r["n"] for r in rows})
    for ax, title in zip(
        axes, ("wall time to convergence (s)", "simulations to convergence"), strict=True
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("n (neurons)")
        ax.set_ylabel(title)
    axes[1].legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle("rank-2 RNN stable amplification: ‖E f − μ‖₂ < 0.5")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def report(rows, budgets, args, command, skipped) -> None:
    """Write the run's record and redraw the figure from every record."""
    for row in rows:
        row["budget"] = budgets[row["method"]]
    main_command, _, note = command.partition("  # ")
    config = {k: v for k, v in vars(args).items() if k != "report_only"}
    write_record(
        BENCHMARK,
        args.tag or "main",
        main_command,
        {
            "budgets": budgets,
            "args": config,
            "epi_config": repr(settings(args)[1]["epi"]["config"]),
        },
        {"rows": rows, "skipped": skipped},
        notes=note or None,
    )
    publish()


def publish() -> None:
    """The figures, from every record: the first protocols' and the re-run's (variants
    ``fair*``) apart (the docs section: ``python -m benchmarks report``)."""
    records = read_records(BENCHMARK)
    plot(rows_of([r for r in records if not r["variant"].startswith(RERUN)]))
    plot(rows_of([r for r in records if r["variant"].startswith(RERUN)]), RERUN_FIGURE)


def run(method: str, n: int, seed: int, budget: int, options: dict) -> dict:
    """One method on ``rank2_rnn(n)``: the comparison row (a stalled SMC-ABC run says so)."""
    start = time.perf_counter()
    try:
        entry = MODELS["rank2_rnn"]
        frame, idatas = compare(
            entry.build(n),
            entry.property(),
            [method],
            budget=budget,
            seeds=[seed],
            options={method: dict(options)},
            progress=False,
        )
        row = frame.iloc[0].to_dict()
        if method == "npe":  # which rule ended the rounds
            row["stopped_by"] = idatas[f"npe_seed{seed}"].posterior.attrs["stopped_by"]
    except SMCABCStalled as stalled:
        row = {
            "method": method,
            "seed": seed,
            "distance": math.nan,
            "simulations_to_converge": math.nan,
            "wall_time_to_converge": math.nan,
            "simulations": stalled.simulations,
            "wall_time": time.perf_counter() - start,
            "stalled": {
                "population": stalled.population,
                "inside": round(stalled.acceptance * stalled.kernel_draws),
                "kernel_draws": stalled.kernel_draws,
            },
        }
    if method == "smcabc":
        row["kernel_scale"] = options["kernel_variance_scale"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 25, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--epi-epochs", type=int, default=3)
    parser.add_argument("--epi-iterations", type=int, default=250)
    parser.add_argument("--epi-init", type=int, default=300)
    parser.add_argument("--npe-round", type=int, default=1000)
    parser.add_argument("--npe-rounds", type=int, default=3)
    parser.add_argument(
        "--npe-epochs", type=int, default=30, help="training epochs per round (0: sbi's stop)"
    )
    parser.add_argument("--npe-batch", type=int, default=200, help="NPE training batch size")
    parser.add_argument(
        "--npe-patience",
        type=int,
        default=0,
        help="stop NPE after this many rounds without a better validation log-prob (0: never)",
    )
    parser.add_argument(
        "--npe-max-time",
        type=float,
        default=0,
        help="NPE starts no new round after this many minutes (0: no limit)",
    )
    parser.add_argument("--smc-budget", type=int, default=20_000)
    parser.add_argument(
        "--smc-kernel-scale",
        type=lambda v: v if v == "silverman" else float(v),
        default=1.0,
        help="SMC-ABC kernel_variance_scale: a number or 'silverman' (pyABC's default)",
    )
    parser.add_argument("--deadline", help="HH:MM (UTC): start no new size after this time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="", help="the record's variant (default: main)")
    parser.add_argument("--report-only", action="store_true", help="only redraw the figure")
    args = parser.parse_args()
    if args.report_only:
        publish()
        return
    torch.set_num_threads(args.threads)
    budgets, options = settings(args)
    command = (
        f"python -m benchmarks.compare_rank2 --sizes {' '.join(map(str, args.sizes))} "
        f"--seeds {' '.join(map(str, args.seeds))}"
        + "".join(
            f" --{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("sizes", "seeds", "methods", "deadline", "threads", "report_only")
            and v != parser.get_default(k)
        )
        + (f" --methods {' '.join(args.methods)}" if list(args.methods) != list(METHODS) else "")
    )
    rows, skipped = [], []
    deadline = None
    if args.deadline:
        now = datetime.datetime.now(datetime.UTC)
        hour, minute = map(int, args.deadline.split(":"))
        deadline = now.replace(hour=hour, minute=minute, second=0)
        if deadline < now:
            deadline += datetime.timedelta(days=1)
    for n in args.sizes:
        if deadline and datetime.datetime.now(datetime.UTC) >= deadline:
            skipped.append(f"n = {n}")
            continue
        for method in args.methods:
            for seed in args.seeds:
                row = {"n": n, **run(method, n, seed, budgets[method], options[method])}
                rows.append(row)
                print(
                    {
                        k: row.get(k)
                        for k in (
                            "n",
                            "method",
                            "seed",
                            "distance",
                            "median_distance",
                            "simulations_to_converge",
                            "simulations_to_median_converge",
                            "wall_time_to_converge",
                            "simulations",
                            "wall_time",
                        )
                    },
                    flush=True,
                )
        report(rows, budgets, args, command, skipped)
    report(rows, budgets, args, command, skipped)


if __name__ == "__main__":
    main()

"""EPI vs NPE vs SMC-ABC on rank-2 RNN stable amplification across sizes (paper Fig. 2A/B).

Regenerate (defaults are the budgets reported in docs/benchmarks.md):
``.venv/bin/python -m benchmarks.compare_rank2 --sizes 2 5 10 25 50 --seeds 1 2``

For each n, :func:`pyro_circuits.compare.compare` runs every method on ``Rank2RNN(n)`` with
the same property and records the wall time and simulation count at the first checkpoint
whose predictive mean is within 0.5 of μ = (0.5, 1.5) (the paper's shared criterion; EPI:
end of each epoch, NPE: each round, SMC-ABC: each population), or "not converged within
budget". Results are written after every size, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import datetime
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from benchmarks._report import ROOT, machine, read_all_json, update_section, write_json  # noqa: E402
from pyro_circuits.compare import compare  # noqa: E402
from pyro_circuits.epi import EPIConfig, FlowConfig  # noqa: E402
from pyro_circuits.models import Rank2RNN  # noqa: E402
from pyro_circuits.sbi import SMCABCStalled  # noqa: E402

FIGURE = ROOT / "docs" / "figures" / "compare_rank2.png"
METHODS = ("epi", "npe", "smcabc")


def settings(args) -> tuple[dict, dict]:
    """Per-method budgets and options (the paper's settings where affordable on this CPU)."""
    epi_config = EPIConfig(
        batch_size=200,
        iterations=args.epi_iterations,
        c0=1e3,
        test_batch_size=200,
        init_iterations=args.epi_init,
        stop_early=True,
    )
    budgets = {
        "epi": args.epi_epochs * args.epi_iterations * 200,
        "npe": args.npe_rounds * args.npe_round,
        "smcabc": args.smc_budget,
    }
    options = {
        "epi": {"config": epi_config, "flow": FlowConfig(units=100)},
        "npe": {
            "rounds": args.npe_rounds,
            "stop_distance": 0.5,
            "density_estimator": "zuko_maf",
            "estimator_kwargs": {"hidden_features": 50, "num_transforms": 3},
            "train_kwargs": {"max_num_epochs": args.npe_epochs},
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


def fmt(value, digits: str = ".0f") -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, digits)
    )


def label(row: dict) -> str:
    """The method, with NPE's round size and SMC-ABC's kernel scale where not sbi's default 1."""
    if row["method"] == "npe":
        return f"npe (rounds of {row['npe_round']:,})"
    scale = row.get("kernel_scale", 1.0)
    return row["method"] + (f" (kernel × {scale:g})" if scale != 1.0 else "")


def label_order(name: str) -> tuple:
    """Sort key of a :func:`label`: the method's place in METHODS, then the label."""
    return METHODS.index(name.split()[0]), name


def table(rows: list[dict]) -> str:
    lines = [
        "| n | dim z | method | budget | seed | sims to ‖E f − μ‖ < 0.5 | wall time to < 0.5 (s) | "
        "final ‖E f − μ‖ | moment test | simulations used | total wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        converged = not math.isnan(r["simulations_to_converge"])
        stalled = r.get("stalled")
        sims = (
            f"{r['simulations_to_converge']:,.0f}"
            if converged
            else f"stalled in population {stalled['population']}: {stalled['inside']:,} of "
            f"{stalled['kernel_draws']:,} kernel draws inside the prior"
            if stalled
            else "not converged within budget"
        )
        lines.append(
            f"| {r['n']} | {4 * r['n']} | {label(r)} | {r['budget']:,} | {r['seed']} | {sims} | "
            f"{fmt(r['wall_time_to_converge']) if converged else '—'} | {fmt(r['distance'], '.2f')} | "
            f"{ {True: 'pass', False: 'fail'}.get(r.get('moment_test'), '—') } | {r['simulations']:,} | "
            f"{r['wall_time']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict]) -> None:
    if not rows:
        return
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted({label(r) for r in rows}, key=label_order)
    for colour, name in enumerate(names):
        mine = [r for r in rows if label(r) == name]
        # side by side, so markers do not hide each other
        shift = 1 + 0.05 * (colour - (len(names) - 1) / 2)
        for ax, key in zip(axes, ("wall_time_to_converge", "simulations_to_converge"), strict=True):
            done = [r for r in mine if not math.isnan(r[key]) and r[key] > 0]
            at_zero = [r for r in mine if r[key] == 0]
            failed = [r for r in mine if math.isnan(r[key])]
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
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=110)
    plt.close(figure)


def overview(rows: list[dict]) -> str:
    """Seeds that met the criterion / seeds run, per n and method (and budget)."""
    keys = sorted({(label(r), r["budget"]) for r in rows}, key=lambda k: (label_order(k[0]), k[1]))
    sizes = sorted({r["n"] for r in rows})
    lines = [
        "| n | " + " | ".join(f"{name} ({b:,})" for name, b in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for n in sizes:
        cells = []
        for name, budget in keys:
            mine = [r for r in rows if (r["n"], label(r), r["budget"]) == (n, name, budget)]
            done = sum(not math.isnan(r["simulations_to_converge"]) for r in mine)
            cells.append(f"{done}/{len(mine)}" if mine else "not run (time)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merged_runs() -> list[dict]:
    """Every ``compare_rank2*.json`` run file (the main sweep and tagged supplements)."""
    runs = []
    for run in read_all_json("compare_rank2"):
        for row in run["rows"]:
            row.setdefault("budget", run["budgets"][row["method"]])
            if row["method"] == "npe":
                row.setdefault("npe_round", run["args"]["npe_round"])
        runs.append(run)
    return runs


def report(rows, budgets, args, command, skipped, tag: str) -> None:
    for row in rows:
        row["budget"] = budgets[row["method"]]
    write_json(
        "compare_rank2" + (f"_{tag}" if tag else ""),
        {
            "machine": machine(),
            "command": command,
            "budgets": budgets,
            "args": vars(args),
            "rows": rows,
            "skipped": skipped,
        },
    )
    publish(args)


def publish(args) -> None:
    """Merge every run file into the docs section and the figure."""
    runs = merged_runs()
    main_args = next((r["args"] for r in runs if "args" in r and not r["args"].get("tag")), None)
    a = argparse.Namespace(**(main_args or vars(args)))
    rows = sorted(
        [row for run in runs for row in run["rows"]],
        key=lambda r: (r["n"], METHODS.index(r["method"]), r["budget"], label(r), r["seed"]),
    )
    skipped = sorted({s for run in runs for s in run.get("skipped", [])})
    commands = "\n".join(f"    {run.get('command', '(earlier run)')}" for run in runs)
    plot(rows)
    smc = " and ".join(
        f"{b:,}" for b in sorted({r["budget"] for r in rows if r["method"] == "smcabc"})
    )
    npe_rounds = sorted(
        {
            (run["args"]["npe_round"], run["args"]["npe_rounds"], run["args"]["npe_epochs"])
            for run in runs
            if "args" in run and "npe" in run["args"]["methods"]
        }
    )
    npe = " and ".join(
        f"{size * count:,} (rounds of {size:,}, ≤ {count} rounds, ≤ {epochs} training epochs "
        "per round)"
        for size, count, epochs in npe_rounds
    )
    note = f"\n\nNot run (out of time) in some sweep: {', '.join(skipped)}." if skipped else ""
    update_section(
        "compare_rank2",
        f"""## EPI vs NPE vs SMC-ABC: rank-2 RNN stable amplification (paper Fig. 2A/B)

{runs[0]["machine"]}; CPU shared with other jobs (1 torch thread; timings are indicative only).
Regenerate with

{commands}

Budgets (simulations per run): EPI {a.epi_epochs * a.epi_iterations * 200:,} in Adam steps
(batch 200, {a.epi_iterations} steps per epoch, ≤ {a.epi_epochs} epochs, c0 = 1e3, 3 coupling
stages × 2 × 100 units, {a.epi_init} initialisation steps, stop at the first epoch passing the
moment test); NPE {npe} (sbi `NPE_C`, `zuko_maf` with 3 transforms × 50 units and the support
map, stop at the first round within 0.5); SMC-ABC {smc}
(sbi `SMCABC`, 1000 particles, initial population 2000, ε = 0.5-quantile of the last
population's distances, perturbation-kernel covariance × 1, sbi's default, or × 0.1 where
marked; "stalled" = fewer than 1e-5 of the kernel's draws fell inside the prior's box, so the
population could not be filled: see docs/comparison.md). Convergence is the paper's shared criterion ‖E f − μ‖₂ < 0.5, checked
at EPI epoch ends (200 × 200 test draws), after each NPE round (1,000 posterior-predictive
draws) and for each SMC-ABC population (its accepted simulations); simulations are counted when
the criterion is first met (EPI: Adam-step simulations, initialisation and test batches
excluded, as in the paper; 0 = already within 0.5 after the initialisation). "moment test" is
EPI's test on means and variances applied to 2,000 predictive draws of the final result.

Seeds meeting the criterion within budget / seeds run:

{overview(rows)}

{table(rows)}{note}

![wall time and simulations to convergence vs n](figures/compare_rank2.png)
""",
    )


def run(method: str, n: int, seed: int, budget: int, options: dict) -> dict:
    """One method on ``rank2_rnn(n)``: the comparison row (a stalled SMC-ABC run says so)."""
    start = time.perf_counter()
    try:
        frame, _ = compare(
            Rank2RNN(n),
            Rank2RNN.stable_amplification(),
            [method],
            budget=budget,
            seeds=[seed],
            options={method: dict(options)},
            progress=False,
        )
        row = frame.iloc[0].to_dict()
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
    parser.add_argument("--npe-epochs", type=int, default=30)
    parser.add_argument("--smc-budget", type=int, default=20_000)
    parser.add_argument(
        "--smc-kernel-scale", type=float, default=1.0, help="SMC-ABC kernel_variance_scale"
    )
    parser.add_argument("--deadline", help="HH:MM (UTC): start no new size after this time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="", help="save as a supplement (compare_rank2_TAG.json)")
    parser.add_argument("--report-only", action="store_true", help="only merge the run files")
    args = parser.parse_args()
    if args.report_only:
        publish(args)
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
                        k: row[k]
                        for k in (
                            "n",
                            "method",
                            "seed",
                            "distance",
                            "simulations_to_converge",
                            "wall_time_to_converge",
                            "simulations",
                            "wall_time",
                        )
                    },
                    flush=True,
                )
        report(rows, budgets, args, command, skipped, args.tag)
    report(rows, budgets, args, command, skipped, args.tag)


if __name__ == "__main__":
    main()

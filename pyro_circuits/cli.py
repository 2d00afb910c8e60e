"""The ``pyro-circuits`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pyro_circuits.epi import EmergentProperty, EPIConfig, FlowConfig, epi
from pyro_circuits.models import LDS2D, STG, Rank2RNN, SuperiorColliculus

__all__ = ["MODELS", "main"]


@dataclass(frozen=True)
class BuiltinModel:
    """A model of the CLI's table: how to build it, its property and its EPI settings."""

    build: Callable[[int], Callable]  # from the size argument --n
    property: Callable[[], EmergentProperty]
    config: EPIConfig
    flow: FlowConfig
    summary: str


MODELS: dict[str, BuiltinModel] = {
    "lds2d": BuiltinModel(
        build=lambda n: LDS2D(),
        property=LDS2D.oscillation,
        config=EPIConfig(batch_size=500, epochs=10, iterations=1000, c0=1e-3, beta=8.0),
        flow=FlowConfig(units=50),
        summary="2-D linear system, property: 1 Hz oscillation (Bittner et al. 2021, Fig. 1)",
    ),
    "rank2_rnn": BuiltinModel(
        build=lambda n: Rank2RNN(n),
        property=Rank2RNN.stable_amplification,
        config=EPIConfig(
            batch_size=200,
            epochs=10,
            iterations=500,
            c0=1e3,
            test_batch_size=200,
            standardize=False,
        ),
        flow=FlowConfig(units=100),
        summary="rank-2 RNN of --n neurons, property: stable amplification (Fig. 2)",
    ),
    "stg": BuiltinModel(
        build=lambda n: STG(),
        property=STG.intermediate_hub_frequency,
        config=EPIConfig(batch_size=100, epochs=4, iterations=300, beta=2.0, test_batch_size=100),
        flow=FlowConfig(units=25),
        summary="stomatogastric subcircuit, property: hub frequency 0.55 Hz (Fig. 3)",
    ),
    "superior_colliculus": BuiltinModel(
        build=lambda n: SuperiorColliculus(),
        property=SuperiorColliculus.rapid_task_switching,
        config=EPIConfig(
            batch_size=100,
            epochs=8,
            iterations=400,
            c0=1e2,
            beta=2.0,
            test_batch_size=25,
            standardize=False,
        ),
        flow=FlowConfig(units=50),
        summary="superior colliculus Pro/Anti task, property: 75 % accuracy in both (Fig. 5)",
    ),
}


def _model_list() -> str:
    return "\n".join(f"  {name:<22} {entry.summary}" for name, entry in MODELS.items())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-circuits",
        description="Inference for neural circuit models written as Pyro programs.",
        epilog=f"built-in models:\n{_model_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "epi",
        help="run emergent property inference on a built-in model",
        epilog=f"built-in models:\n{_model_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("model", choices=sorted(MODELS), metavar="MODEL", help="built-in model name")
    run.add_argument("--n", type=int, default=2, help="network size for sized models (default 2)")
    run.add_argument("--out", type=Path, default=Path("epi-output"), help="output folder")
    run.add_argument(
        "--seed", type=int, nargs="+", default=[0], help="random seed(s); best converged kept"
    )
    run.add_argument("--epochs", type=int, help="augmented-Lagrangian epochs")
    run.add_argument("--iterations", type=int, help="Adam steps per epoch")
    run.add_argument("--batch-size", type=int, help="parameter draws per step")
    run.add_argument("--c0", type=float, help="initial penalty")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp = commands.add_parser(
        "compare",
        help="run EPI, NPE and SMC-ABC on a built-in model and compare them",
        epilog=f"built-in models:\n{_model_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument("model", choices=sorted(MODELS), metavar="MODEL", help="built-in model name")
    cmp.add_argument("--n", type=int, default=2, help="network size for sized models (default 2)")
    cmp.add_argument(
        "--methods", nargs="+", default=["epi", "npe", "smcabc"], help="methods to run"
    )
    cmp.add_argument("--budget", type=int, default=10_000, help="simulations per method and seed")
    cmp.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    cmp.add_argument("--draws", type=int, default=2000, help="predictive draws per run")
    cmp.add_argument("--out", type=Path, default=Path("compare-output"), help="output folder")
    cmp.add_argument("--quiet", action="store_true", help="no progress bars")
    commands.add_parser("models", help="list the built-in models")
    return parser


def _run_epi(args: argparse.Namespace) -> int:
    from pyro_circuits.reports import write_epi_report

    entry = MODELS[args.model]
    overrides = {
        key: value
        for key, value in {
            "epochs": args.epochs,
            "iterations": args.iterations,
            "batch_size": args.batch_size,
            "c0": args.c0,
        }.items()
        if value is not None
    }
    config = replace(entry.config, **overrides)
    prop = entry.property()
    print(f"EPI on {args.model} for {prop}")
    result = epi(
        entry.build(args.n),
        prop,
        flow=entry.flow,
        config=config,
        seed=args.seed,
        progress=not args.quiet,
    )
    paths = write_epi_report(result, args.out)
    print(
        f"converged: {'yes' if result.converged else 'no'} (epoch {result.epoch}), "
        f"entropy {result.selected_entropy:.3f} nats, "
        f"{result.simulations} simulations, {result.wall_time:.1f} s"
    )
    print(result.check().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from pyro_circuits.compare import compare, markdown_table

    entry = MODELS[args.model]
    prop = entry.property()
    print(f"comparing {', '.join(args.methods)} on {args.model} for {prop}")
    options = {"epi": {"config": replace(entry.config, stop_early=True), "flow": entry.flow}}
    table, _ = compare(
        entry.build(args.n),
        prop,
        args.methods,
        budget=args.budget,
        seeds=args.seeds,
        options=options,
        draws=args.draws,
        out=args.out,
        progress=not args.quiet,
    )
    columns = ["method", "seed", "converged", "distance", "moment_test", "wall_time", "simulations"]
    print(markdown_table(table[columns]))
    print(f"wrote {args.out}/comparison.csv, comparison.md, pairs.png, predictive.png, *.nc")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "models":
        print(_model_list())
        return 0
    if args.command == "compare":
        return _run_compare(args)
    return _run_epi(args)


if __name__ == "__main__":
    sys.exit(main())

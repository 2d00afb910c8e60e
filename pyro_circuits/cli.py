"""The ``pyro-circuits`` command."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pyro_circuits.catalog import MODELS, BuiltinModel, resolve
from pyro_circuits.checks import positive_int, writable_dir
from pyro_circuits.epi import epi

__all__ = ["main"]

MODEL_HELP = "a built-in model name, or your own as package.module:callable"


def _model_list() -> str:
    return "\n".join(f"  {name:<22} {entry.summary}" for name, entry in MODELS.items())


def _model_command(commands, name: str, help: str, out: str) -> argparse.ArgumentParser:
    """A subcommand on one model, with the arguments every such command shares."""
    command = commands.add_parser(
        name,
        help=help,
        epilog=f"built-in models:\n{_model_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    command.add_argument(
        "--n", type=int, default=2, help="network size of sized models (default 2)"
    )
    command.add_argument("--out", type=Path, default=Path(out), help="output folder")
    command.add_argument("--quiet", action="store_true", help="no progress bars")
    command.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-circuits",
        description="Inference for neural circuit models written as Pyro programs.",
        epilog=f"built-in models:\n{_model_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = _model_command(
        commands, "epi", "run emergent property inference on a built-in or user model", "epi-output"
    )
    run.add_argument(
        "--seed", type=int, nargs="+", default=[0], help="random seed(s); best converged kept"
    )
    run.add_argument("--epochs", type=int, help="augmented-Lagrangian epochs")
    run.add_argument("--iterations", type=int, help="Adam steps per epoch")
    run.add_argument("--batch-size", type=int, help="parameter draws per step")
    run.add_argument("--c0", type=float, help="initial penalty")
    cmp = _model_command(
        commands,
        "compare",
        "run EPI, NPE and SMC-ABC on a built-in or user model and compare them",
        "compare-output",
    )
    cmp.add_argument(
        "--methods", nargs="+", default=["epi", "npe", "smcabc"], help="methods to run"
    )
    cmp.add_argument("--budget", type=int, default=10_000, help="simulations per method and seed")
    cmp.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    cmp.add_argument("--draws", type=int, default=2000, help="predictive draws per run")
    commands.add_parser("models", help="list the built-in models")
    return parser


def _run_epi(args: argparse.Namespace, entry: BuiltinModel) -> int:
    from pyro_circuits.reports import write_epi_report

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
    config = replace(entry.config, **overrides)  # EPIConfig checks the values
    prop = entry.property()
    writable_dir("--out", args.out)  # before the run, not after it
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
    if result.stopped is not None:
        print(f"stopped early: {result.stopped}")
    print(
        f"converged: {'yes' if result.converged else 'no'} (epoch {result.epoch}), "
        f"entropy {result.selected_entropy:.3f} nats, "
        f"{result.simulations} simulations, {result.wall_time:.1f} s"
    )
    print(result.check().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _run_compare(args: argparse.Namespace, entry: BuiltinModel) -> int:
    from pyro_circuits.compare import compare, markdown_table

    prop = entry.property()
    for name in ("budget", "draws"):
        positive_int(f"--{name}", getattr(args, name))
    writable_dir("--out", args.out)  # before the runs, not after them
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


#: Errors that mean the command was asked something it cannot do: one line and status 2.
USER_ERRORS = (ValueError, TypeError, LookupError, OSError, ImportError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    """Run the command; a semantic error (a bad value, a model that cannot be imported, an
    unwritable folder) prints one line ``pyro-circuits: error: ...`` and returns 2, with the
    traceback only under ``--debug``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "models":
        print(_model_list())
        return 0
    if (
        str(Path.cwd()) not in sys.path
    ):  # a user's module in the working folder, as python -m finds it
        sys.path.insert(0, str(Path.cwd()))
    try:
        entry = resolve(args.model)
    except (ValueError, TypeError) as error:
        parser.error(str(error))  # a usage error: usage line, message, status 2
    try:
        positive_int("--n", args.n)
        run = _run_compare if args.command == "compare" else _run_epi
        return run(args, entry)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

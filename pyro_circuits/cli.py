"""The ``pyro-circuits`` command."""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, redirect_stdout
from dataclasses import replace
from pathlib import Path

import pyro
import torch

from pyro_circuits.catalog import MODELS, BuiltinModel, resolve
from pyro_circuits.checks import positive_int, torch_device, writable_dir
from pyro_circuits.epi import EPIConfig, EPIGuide, FlowConfig, epi
from pyro_circuits.epi.fit import epi_loss
from pyro_circuits.property import EmergentProperty
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.threads import thread_count, torch_threads

__all__ = ["about", "epi_estimate", "main", "simulation_estimate"]

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
    command.add_argument(
        "--device", default="cpu", help="torch device of the runs: cpu (default), cuda, cuda:1"
    )
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
    run.add_argument(
        "--max-penalty", type=float, help="cap on the penalty's growth (default: none, the paper)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: as fast as more on an idle machine for EPI's "
        "small tensors, and several times faster when the machine has other work)",
    )
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
    cmp.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads of every method (default: torch's, one per core, for NPE "
        "and SMC-ABC, and EPI's own default of 1 for EPI)",
    )
    cmp.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    cmp.add_argument("--draws", type=int, default=2000, help="predictive draws per run")
    commands.add_parser("models", help="list the built-in models")
    return parser


#: Steps (after one warm-up) timed for the duration estimate printed before a run.
PROBE_STEPS = 3


def about(seconds: float) -> str:
    """A duration as people read it.

    Example:
        >>> about(0.2), about(42.0), about(150.0), about(9000.0)
        ('under 1 s', 'about 42 s', 'about 2.5 min', 'about 2.5 h')
    """
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"about {seconds:.0f} s"
    if seconds < 3600:
        return f"about {seconds / 60:.2g} min"
    return f"about {seconds / 3600:.2g} h"


def _median_time(step: Callable[[], object], clock: Callable[[], float]) -> float:
    """The median duration of ``PROBE_STEPS`` calls of ``step``, after one warm-up call."""
    step()
    times = []
    for _ in range(PROBE_STEPS):
        start = clock()
        step()
        times.append(clock() - start)
    return statistics.median(times)


def epi_estimate(
    model,
    prop: EmergentProperty,
    flow: FlowConfig,
    config: EPIConfig,
    seeds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds an EPI run of ``config`` takes over ``seeds`` seeds, from a few timed Adam steps
    and test batches: epochs × (iterations × step + test_batches × test batch), plus the test
    before the first epoch (the Gaussian initialisation, which simulates nothing, is left out).
    With ``stop_early`` the run may end sooner. RNG states and Pyro's parameter store are left
    as they were.
    """
    with pyro.get_param_store().scope(), torch.random.fork_rng():
        program = CircuitProgram(model)
        guide = EPIGuide(program, flow=flow, seed=0)
        loss = epi_loss(prop, config, seed=0)
        optimizer = torch.optim.Adam(guide.parameters(), lr=config.lr)

        def adam_step():
            optimizer.zero_grad()
            loss(guide.model, guide).backward()
            optimizer.step()

        draws = {n: prior.sample((config.n_test,)) for n, prior in program.priors.items()}
        step = _median_time(adam_step, clock)
        test = _median_time(lambda: program.simulate(draws, check=False), clock)
    per_epoch = config.iterations * step + config.test_batches * test
    return seeds * (config.epochs * per_epoch + config.test_batches * test)


def simulation_estimate(
    model, simulations: int, clock: Callable[[], float] = time.perf_counter, batch: int = 100
) -> float:
    """Seconds ``simulations`` prior draws of ``model`` take to simulate, from a timed batch."""
    with torch.random.fork_rng(), torch.no_grad():
        program = CircuitProgram(model)
        draws = {n: prior.sample((batch,)) for n, prior in program.priors.items()}
        per_batch = _median_time(lambda: program.simulate(draws, check=False), clock)
    return simulations / batch * per_batch


class _NotFromSbi(logging.Filter):
    """Drops records that sbi's modules log through the root logger (``logging.warning``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}sbi{os.sep}" not in record.pathname


@contextmanager
def _quiet_sbi(quiet: bool):
    """Under ``--quiet``, nothing sbi says reaches the terminal, so it cannot break the tables:
    its loggers and warnings are silenced and its ``print`` lines (the round's loss, the
    "Epochs trained" counter left without a newline) are swallowed with the run's stdout. The
    package's own warnings still show on stderr."""
    if not quiet:
        yield
        return
    logger, root, drop = logging.getLogger("sbi"), logging.getLogger(), _NotFromSbi()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    root.addFilter(drop)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", module=r"sbi(\.|$)")
            yield
    finally:
        logger.setLevel(level)
        root.removeFilter(drop)


def _run_epi(args: argparse.Namespace, entry: BuiltinModel) -> int:
    from pyro_circuits.reports import write_epi_report

    overrides = {
        key: value
        for key, value in {
            "epochs": args.epochs,
            "iterations": args.iterations,
            "batch_size": args.batch_size,
            "c0": args.c0,
            "max_penalty": args.max_penalty,
        }.items()
        if value is not None
    }
    config = replace(entry.config, **overrides)  # EPIConfig checks the values
    prop = entry.property()
    device = torch_device("--device", args.device)
    writable_dir("--out", args.out)  # before the run, not after it
    print(f"EPI on {args.model} for {prop}")
    model = entry.build(args.n)
    seconds = epi_estimate(model, prop, entry.flow, config, len(args.seed))
    limit = ", or sooner: it stops at the first converged epoch" if config.stop_early else ""
    print(f"estimated duration: {about(seconds)}{limit}", flush=True)
    result = epi(
        model,
        prop,
        flow=entry.flow,
        config=config,
        seed=args.seed,
        progress=not args.quiet,
        device=device,
        threads=args.threads,
    )
    table = result.check()
    paths = write_epi_report(result, args.out, table=table)
    if result.stopped is not None:
        print(f"stopped early: {result.stopped}")
    print(
        f"converged: {'yes' if result.converged else 'no'} (epoch {result.epoch}), "
        f"entropy {result.selected_entropy:.3f} nats, "
        f"{result.simulations} simulations, {result.wall_time:.1f} s"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _run_compare(args: argparse.Namespace, entry: BuiltinModel) -> int:
    from pyro_circuits.compare import compare, markdown_table

    prop = entry.property()
    for name in ("budget", "draws"):
        positive_int(f"--{name}", getattr(args, name))
    device = torch_device("--device", args.device)
    writable_dir("--out", args.out)  # before the runs, not after them
    print(f"comparing {', '.join(args.methods)} on {args.model} for {prop}")
    options = {"epi": {"config": replace(entry.config, stop_early=True), "flow": entry.flow}}
    if args.threads is not None:  # else EPI keeps its default of one thread
        options["all"] = {"threads": args.threads}
    model = entry.build(args.n)
    runs = len(args.methods) * len(args.seeds)
    seconds = simulation_estimate(model, args.budget * runs)
    print(
        f"estimated duration: {about(seconds)} of simulation for {runs} run(s); training adds to it"
    )
    with _quiet_sbi(args.quiet):
        table, _ = compare(
            model,
            prop,
            args.methods,
            budget=args.budget,
            seeds=args.seeds,
            options=options,
            draws=args.draws,
            out=args.out,
            progress=not args.quiet,
            device=device,
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
        threads = thread_count("--threads", args.threads)
        run = _run_compare if args.command == "compare" else _run_epi
        with torch_threads(threads):  # the duration estimate too; restored after
            return run(args, entry)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

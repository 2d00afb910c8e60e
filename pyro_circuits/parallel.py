"""The executor seam: independent pieces of work on any ``concurrent.futures.Executor``.

Every method that runs many independent pieces (simulation chunks, seeds, comparison runs) takes
``executor=``: ``None`` runs them one after the other in this process; any
``concurrent.futures.Executor`` runs them on its workers: a ``ProcessPoolExecutor``, Dask's
``distributed.Client(...).get_executor()``, submitit's executors, or :class:`RayExecutor` (the
optional extra ``pyro_circuits[ray]``). Nothing here schedules work itself.

What is shipped to the workers is pickled (the model included): it must be importable (defined
at module level of an importable module) or otherwise picklable; :func:`check_picklable` says so
before any work. Randomness never depends on the executor: a piece of work seeds its own
generator from (seed, its index) through :func:`chunk_seed` and :func:`seeded`, so results are
identical whatever the executor and however many workers it has.

This module is the ground floor: it imports only :mod:`pyro_circuits.checks`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)

import numpy as np
import torch
from tqdm.auto import tqdm

from pyro_circuits.checks import nonnegative_int, positive_float, positive_int

__all__ = [
    "RayExecutor",
    "WorkerLost",
    "check_executor",
    "check_picklable",
    "chunk_seed",
    "parallel_map",
    "require",
    "seeded",
]


class WorkerLost(RuntimeError):
    """A worker died (killed, out of memory, its node lost) while running one piece of work.

    Attributes: ``index`` (the first piece, in submission order, without a result; a broken
    process pool fails every unfinished piece, so it may not be the piece whose worker died) and
    ``total`` (how many there were). The run stops: no result is returned with a piece missing.
    """

    def __init__(self, index: int, total: int, desc: str, error: BaseException) -> None:
        self.index, self.total = index, total
        super().__init__(
            f"{desc}: piece {index} of {total} (counting from 0) was lost, a worker died "
            f"({type(error).__name__}: {error}); the run stops rather than return a result with "
            "pieces missing. Rerun it: the results do not depend on the executor"
        )


def require(module: str, extra: str):
    """Import an optional dependency, or an ImportError naming the extra that installs it.

    Example:
        >>> require("math", "none").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed; install the optional extra: "
            f"pip install 'pyro_circuits[{extra}]'"
        ) from error


def check_executor(executor) -> Executor | None:
    """``executor`` when it is None or a ``concurrent.futures.Executor``, else a TypeError.

    A ``ThreadPoolExecutor`` is a ValueError: its threads share torch's global generator (which
    the simulator noise comes from), so results would depend on the thread timing. Executors
    with several threads per worker process (Dask's default) have the same problem: give Dask
    workers one thread each.

    Example:
        >>> check_executor(None) is None
        True
    """
    if isinstance(executor, ThreadPoolExecutor):
        raise ValueError(
            "executor must run each piece of work in a process of its own; a ThreadPoolExecutor "
            "shares torch's global generator between its threads (use a ProcessPoolExecutor)"
        )
    if executor is None or isinstance(executor, Executor):
        return executor
    hint = ""
    if type(executor).__name__ == "Client":
        hint = " (for a Dask Client pass client.get_executor())"
    raise TypeError(
        f"executor must be None or a concurrent.futures.Executor (a ProcessPoolExecutor, "
        f"pyro_circuits.parallel.RayExecutor, ...), got {type(executor).__name__}{hint}"
    )


def check_picklable(name: str, value, executor: Executor | None) -> None:
    """A TypeError before any work when ``value`` cannot be sent to ``executor``'s workers.

    A process pool pickles with ``pickle``; other executors (Ray, Dask) use ``cloudpickle``,
    which also sends lambdas and functions defined in ``__main__``. ``executor=None`` sends
    nothing.

    Example:
        >>> from concurrent.futures import ProcessPoolExecutor
        >>> check_picklable("model", lambda: 0, ProcessPoolExecutor(1))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: model cannot be sent to the executor's workers ...
    """
    if executor is None:
        return
    pickler = pickle
    if not isinstance(executor, ProcessPoolExecutor):
        try:
            pickler = importlib.import_module("cloudpickle")
        except ImportError:
            pass
    try:
        pickler.dumps(value)
    except Exception as error:
        raise TypeError(
            f"{name} cannot be sent to the executor's workers ({type(error).__name__}: {error}): "
            "the model and its arguments must be importable (defined at module level in an "
            "importable module, not a lambda or a local function) or otherwise picklable; or "
            "run with executor=None"
        ) from error


def chunk_seed(seed: int, *keys: int) -> int:
    """A seed for one piece of work, from the run's ``seed`` and the piece's ``keys`` (e.g. a
    round and a chunk index); different keys give independent streams. The keys are NumPy's
    ``spawn_key``: as entropy (``SeedSequence([seed, *keys])``) a trailing 0 would be padding,
    and a round's seed would equal its first chunk's.

    Example:
        >>> chunk_seed(0, 1) == chunk_seed(0, 1) != chunk_seed(0, 1, 0)
        True
    """
    state = np.random.SeedSequence(seed, spawn_key=keys).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seeded(function: Callable, seed: int, *args):
    """``function(*args)`` with torch's global generator seeded with ``seed``; the caller's
    generator state is restored afterwards.

    Example:
        >>> seeded(torch.rand, 3, 2).equal(seeded(torch.rand, 3, 2))
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return function(*args)


def _lost_types() -> tuple[type, ...]:
    """The exceptions that mean a worker died, for the engines already imported."""
    types: list[type] = [BrokenExecutor]
    ray_errors = sys.modules.get("ray.exceptions")
    if ray_errors is not None:
        types += [ray_errors.WorkerCrashedError, ray_errors.NodeDiedError]
    scheduler = sys.modules.get("distributed.scheduler")
    if scheduler is not None:
        types.append(scheduler.KilledWorker)
    return tuple(types)


def parallel_map(
    function: Callable,
    items: Sequence,
    *,
    executor: Executor | None = None,
    desc: str = "parallel",
    progress: bool = False,
) -> list:
    """``[function(item) for item in items]``, on ``executor``'s workers (``None``: here, one
    after the other), in the order of ``items`` whatever order they finish in.

    An exception raised by ``function`` is raised here as it is. A worker that dies (a process
    pool's ``BrokenProcessPool``, Ray's ``WorkerCrashedError`` after Ray's own retries, Dask's
    ``KilledWorker``) is a :class:`WorkerLost` naming the piece; the pieces not yet finished are
    cancelled. The result is never shorter than ``items``.

    Example:
        >>> parallel_map(abs, [-2, 1, -3])
        [2, 1, 3]
    """
    items = list(items)
    check_executor(executor)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False)
    with bar:
        if executor is None:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        futures: list[Future] = []
        try:
            futures = [executor.submit(function, item) for item in items]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            return _collect(futures, desc)
        finally:
            for future in futures:
                future.cancel()


def _collect(futures: list[Future], desc: str) -> list:
    """Every future's result in order; a dead worker is a :class:`WorkerLost`."""
    results = []
    for index, future in enumerate(futures):
        try:
            results.append(future.result())
        except _lost_types() as error:
            raise WorkerLost(index, len(futures), desc, error) from error
    return results


def _run_with_threads(function: Callable, args: tuple, kwargs: dict, threads: int | None):
    """A Ray task: ``function(*args, **kwargs)`` with ``threads`` torch threads."""
    if threads is not None:
        torch.set_num_threads(threads)
    return function(*args, **kwargs)


class RayExecutor(Executor):
    """A ``concurrent.futures.Executor`` running each call as a Ray task (``ray.remote``).

    Connects to the cluster at ``address`` (default: the ``RAY_ADDRESS`` environment variable,
    as ``ray.init`` reads it) or, with neither, starts a local Ray instance with ``num_cpus``
    CPUs; an already initialised Ray is used as it is. Each task takes ``cpus_per_task`` CPUs and
    runs with ``torch_threads`` torch threads (None: Ray's default); a task whose worker dies is
    retried ``max_retries`` times by Ray before the run stops with
    :class:`WorkerLost`. ``shutdown()`` stops the Ray instance only when this executor started it.
    Needs the optional extra ``pyro_circuits[ray]``.

    Example (not run here: starting Ray takes seconds):

        with RayExecutor(num_cpus=2) as executor:
            result = NPE(model, prop, simulations=100_000, executor=executor)
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1,
        torch_threads: int | None = 1,
        max_retries: int = 3,
        **init_kwargs,
    ) -> None:
        positive_float("cpus_per_task", cpus_per_task)
        if torch_threads is not None:
            positive_int("torch_threads", torch_threads)
        nonnegative_int("max_retries", max_retries)
        ray = require("ray", "ray")
        self._ray, self._started = ray, False
        if not ray.is_initialized():
            local = address is None and not os.environ.get("RAY_ADDRESS")
            options = {"num_cpus": num_cpus} if local and num_cpus is not None else {}
            ray.init(address=address, **options, **init_kwargs)
            self._started = True
        self._threads = torch_threads
        self._task = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries)(_run_with_threads)

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` as a Ray task; its ``concurrent.futures.Future``."""
        return self._task.remote(fn, args, kwargs, self._threads).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the local Ray instance when this executor started it."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

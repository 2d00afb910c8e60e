"""torch's intra-op threads for one piece of work: :func:`torch_threads`.

What the package chooses per workload: EPI (:func:`~pyro_circuits.epi.epi`) runs with one
thread unless told otherwise. Its flow's tensors are small, so a second thread gains nothing on
an idle machine, and when other work shares the cores the threads wait on each other and the
run is several times slower. Training (:func:`~pyro_circuits.svi.train`,
:func:`~pyro_circuits.svi.fit_circuit`), NPE and SMC-ABC keep torch's default (one thread per
core) unless told: LFADS training gains from a second thread on an idle machine, and loses
much more from it on a loaded one, so on a shared machine ``threads=1`` is the choice. Each of
them takes ``threads=`` (an integer ≥ 1, or None for torch's current setting), which holds for
the call and is restored after it.

This module is the ground floor: it imports only torch and :mod:`pyro_circuits.checks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from pyro_circuits.checks import positive_int

__all__ = ["thread_count", "torch_threads"]


def thread_count(name: str, value) -> int | None:
    """``value`` as a thread count: None (torch's setting, left alone) or an integer ≥ 1.

    Example:
        >>> thread_count("threads", None), thread_count("threads", 2)
        (None, 2)
        >>> thread_count("threads", 0)
        Traceback (most recent call last):
        ...
        ValueError: threads must be an integer >= 1, got 0
    """
    return None if value is None else positive_int(name, value)


def torch_threads(threads: int | None) -> contextlib.AbstractContextManager[None]:
    """``with torch_threads(n):`` runs the block with ``n`` torch intra-op threads
    (``torch.set_num_threads``) and restores the previous count after it, also when the block
    raises; ``None`` leaves torch's setting alone. ``threads`` is checked when this is called,
    so a bad value (0, a float, a string, a bool) is an error before anything changes.

    Example:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    return _pinned(thread_count("threads", threads))


@contextlib.contextmanager
def _pinned(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

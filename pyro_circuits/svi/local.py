"""Pyro's ``module_local_params`` setting, scoped to one run of training or reading."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyro
import torch
from pyro.nn import PyroModule

__all__ = ["local_params"]


@contextlib.contextmanager
def local_params(*modules: torch.nn.Module) -> Iterator[None]:
    """Run under ``module_local_params`` (each PyroModule keeps its parameters, none goes to the
    global param store) and restore the setting afterwards, whatever it was.

    PyroModules built while the setting was off get an empty local store of their own first, so
    that a user's modules run here too; the package's modules
    (:class:`~pyro_circuits.sites.LocalPyroModule`) already have one.

    Example:
        >>> from pyro.nn import PyroParam
        >>> class Gain(PyroModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.gain = PyroParam(torch.tensor(2.0))
        ...     def forward(self, x):
        ...         return self.gain * x
        >>> gain = Gain()
        >>> with local_params(gain):
        ...     gain(torch.tensor(3.0)).item(), pyro.settings.get("module_local_params")
        (6.0, True)
        >>> pyro.settings.get("module_local_params")
        False
    """
    for module in modules:
        for part in module.modules() if isinstance(module, torch.nn.Module) else ():
            context = getattr(part, "_pyro_context", None)
            if isinstance(part, PyroModule) and not hasattr(context, "param_state"):
                context.param_state = {"params": {}, "constraints": {}}
    with pyro.settings.context(module_local_params=True):
        yield

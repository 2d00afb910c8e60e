"""The protocol every inference result follows (DESIGN.md, contract 3)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import arviz as az
import torch

from pyro_circuits.sites import CircuitProgram

__all__ = ["InferenceResult"]


class InferenceResult(ABC):
    """Draws of circuit parameters from a fitted method, with one interface for every method.

    Subclasses implement :meth:`sample` and :meth:`to_inference_data`; :meth:`predictive`
    runs the model on draws, and :meth:`save` / :meth:`load` pickle the whole result (the model
    must therefore be picklable: a module-level function or a callable object such as the
    built-in models).
    """

    program: CircuitProgram  # the model the result was fitted on (set by subclasses)
    method: str = ""

    @abstractmethod
    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` parameter draws ``{site: (n, *shape)}``."""

    def log_prob(self, z) -> torch.Tensor:
        """Log density of parameter draws, where the method has one."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable density")

    @torch.no_grad()
    def predictive(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Statistics ``{site: (n, *shape)}`` of the model run on ``n`` fresh parameter draws."""
        draws = self.sample(n, seed)
        return self.program.simulate(draws)

    @abstractmethod
    def to_inference_data(self, n: int = 2000, seed: int | None = 0) -> az.InferenceData:
        """ArviZ InferenceData of ``n`` draws (see :func:`pyro_circuits.diagnostics.inference_data`)."""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path):
        result = torch.load(Path(path), weights_only=False)
        if not isinstance(result, cls):
            raise TypeError(f"{path} holds a {type(result).__name__}, not a {cls.__name__}")
        return result

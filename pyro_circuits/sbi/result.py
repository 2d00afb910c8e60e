"""The results of the sbi methods: the NPE posterior and the last SMC-ABC population."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import torch

from pyro_circuits.diagnostics import inference_data
from pyro_circuits.property import CONVERGENCE_DISTANCE, EmergentProperty
from pyro_circuits.results import InferenceResult
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = ["NPEResult", "SBIResult", "SMCABCResult"]


@dataclass
class SBIResult(InferenceResult):
    """Common part of the sbi results: parameter draws, predictive, InferenceData.

    Attributes:
        history: one row per round (NPE) or population (SMC-ABC): ``simulations`` used so far,
            ``wall_time`` so far, and ``distance`` = ‖mean statistics − x₀‖₂ (NPE: of posterior
            predictive draws; SMC-ABC: of the population's accepted simulations).
    """

    program: CircuitProgram
    prop: EmergentProperty
    wall_time: float
    simulations: int
    seed: int
    history: pd.DataFrame
    settings: dict

    @property
    def space(self) -> ParameterSpace:
        return ParameterSpace(self.program.priors)

    def _flat_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` parameter draws ``{site: (n, *shape)}``; a ``seed`` makes them reproducible."""
        if seed is not None:
            torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(
            int(torch.randint(2**31, ()).item()) if seed is None else seed
        )
        return self.space.split(self._flat_sample(n, generator))

    def _sample_stats(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    def convergence_trace(self) -> pd.DataFrame:
        """The recorded distance after each round (NPE) or population (SMC-ABC)."""
        return self.history[["simulations", "wall_time", "distance"]].reset_index(drop=True)

    @property
    def converged(self) -> bool:
        """Whether the last checkpoint's distance is below the paper's threshold (0.5)."""
        trace = self.convergence_trace()
        return bool(len(trace)) and bool(trace["distance"].iloc[-1] < CONVERGENCE_DISTANCE)

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float | None:
        """Monte-Carlo entropy −E[log q] over ``n`` draws in nats where the method has a density,
        else None."""
        return None

    def to_inference_data(self, n: int = 2000, seed: int | None = 0) -> az.InferenceData:
        draws = self.sample(n, seed)
        with torch.no_grad():
            stats = self.program.simulate(draws)
        return inference_data(
            draws,
            predictive={k: stats[k] for k in self.prop.names},
            sample_stats=self._sample_stats(draws),
            prop=self.prop,
            attrs={
                "method": self.method,
                "wall_time": self.wall_time,
                "simulations": self.simulations,
                "entropy": self.entropy(seed=seed),
                "seed": self.seed,
            },
        )


@dataclass
class NPEResult(SBIResult):
    """The NPE posterior p(θ | x₀) (sbi ``DirectPosterior``) with its training record."""

    posterior: object = None
    x0: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    max_sampling_time: float | None = 600.0
    method = "npe"

    def _flat_sample(self, n, generator):
        torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))
        return self.posterior.sample(
            (n,), x=self.x0, show_progress_bars=False, max_sampling_time=self.max_sampling_time
        )

    @torch.no_grad()
    def log_prob(self, z) -> torch.Tensor:
        """log p(θ | x₀) for draws ``{site: (n, *shape)}`` or a flat ``(n, D)`` tensor."""
        flat = (
            self.space.join(z)
            if isinstance(z, dict)
            else torch.as_tensor(z).reshape(-1, self.space.dim)
        )
        return self.posterior.log_prob(
            flat.float(), x=self.x0, leakage_correction_params={"num_rejection_samples": 2000}
        )

    def _sample_stats(self, draws):
        return {"log_q": self.log_prob(draws)}

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float:
        return -self.log_prob(self.sample(n, seed)).mean().item()


@dataclass
class SMCABCResult(SBIResult):
    """The last SMC-ABC population: weighted particles; :meth:`sample` resamples by weight."""

    particles: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    log_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    epsilon: float = math.inf
    method = "smcabc"

    def convergence_trace(self) -> pd.DataFrame:
        """The distance of each population, at least its ε: every accepted simulation lies within
        ε of μ, so ε bounds the distance of their mean, and the paper counts SMC-ABC as converged
        once the population is within ε = 0.5."""
        trace = super().convergence_trace()
        trace["distance"] = np.maximum(trace["distance"], self.history["epsilon"].to_numpy())
        return trace

    def _flat_sample(self, n, generator):
        index = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        return self.particles[index]

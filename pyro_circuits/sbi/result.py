"""The results of the sbi methods: the NPE posterior and the last SMC-ABC population."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pyro_circuits.diagnostics import CHAINS
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
            predictive draws, with ``median_distance`` of their median, and ``near_x0``, the
            share of the round's simulations within one target s.d. of x₀; SMC-ABC: of the
            population's accepted simulations).
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
        return self.space.split(self._flat_sample(n, _generator(seed)))

    def convergence_trace(self) -> pd.DataFrame:
        """The recorded distance after each round (NPE) or population (SMC-ABC), with NPE's
        ``median_distance`` where the history has it."""
        columns = ["simulations", "wall_time", "distance", "median_distance"]
        return self.history[[c for c in columns if c in self.history]].reset_index(drop=True)

    @property
    def converged(self) -> bool:
        """Whether the last checkpoint's distance is below the paper's threshold (0.5)."""
        trace = self.convergence_trace()
        return bool(len(trace)) and bool(trace["distance"].iloc[-1] < CONVERGENCE_DISTANCE)

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float | None:
        """Monte-Carlo entropy −E[log q] over ``n`` draws in nats where the method has a density,
        else None."""
        return None


@dataclass
class NPEResult(SBIResult):
    """The NPE posterior p(θ | x₀) (sbi ``DirectPosterior``) with its training record;
    ``stopped_by`` names what ended the rounds: ``"rounds"`` (all ran), ``"stop_distance"``,
    ``"patience"`` or ``"max_time"``."""

    posterior: object = None
    x0: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    max_sampling_time: float | None = 600.0
    stopped_by: str = "rounds"
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

    @property
    def sequential(self) -> bool:
        """Whether more than one round was trained (sequential NPE): the posterior is then
        fitted to proposals around x₀ and holds at x₀ only, not amortised over the prior."""
        return len(self.history) > 1

    def _posterior_draws(self, n, seed):
        draws = self.sample(n, seed)
        attrs = {
            "entropy": self.entropy(seed=seed),
            "seed": self.seed,
            "rounds": len(self.history),
            "stopped_by": self.stopped_by,
        }
        return draws, {"log_q": self.log_prob(draws)}, attrs

    def entropy(self, n: int = 2000, seed: int | None = 0) -> float:
        return -self.log_prob(self.sample(n, seed)).mean().item()


@dataclass
class SMCABCResult(SBIResult):
    """The last SMC-ABC population: its distinct particles with their importance weights and
    distances to x₀ (saved with the result); :meth:`sample` resamples them by weight.

    Its InferenceData keeps the resampling visible (``docs/diagnostics.md``): the draws of one
    particle are adjacent, in one pseudo-chain, so ArviZ's ESS sees the repeats instead of
    counting every draw as independent; ``sample_stats`` holds each draw's ``particle``,
    ``weight`` and ``distance``, and the ``sample_stats`` attributes the population size
    ``particles``, the ``distinct`` particles drawn and the population's importance-sampling
    ESS ``population_ess`` = 1 / Σ w².
    """

    particles: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    log_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    epsilon: float = math.inf
    #: The distance of each particle's accepted simulation to x₀.
    distances: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    method = "smcabc"

    def convergence_trace(self) -> pd.DataFrame:
        """The distance of each population, at least its ε: every accepted simulation lies within
        ε of μ, so ε bounds the distance of their mean, and the paper counts SMC-ABC as converged
        once the population is within ε = 0.5."""
        trace = super().convergence_trace()
        trace["distance"] = np.maximum(trace["distance"], self.history["epsilon"].to_numpy())
        return trace

    @property
    def weights(self) -> torch.Tensor:
        """The particles' normalised importance weights."""
        return torch.softmax(self.log_weights, 0)

    def _particle_index(self, n, generator):
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def _flat_sample(self, n, generator):
        return self.particles[self._particle_index(n, generator)]

    def _posterior_draws(self, n, seed):
        """Draws resampled by weight and grouped by particle (particles in a random order), so
        that the consecutive pseudo-chains of :func:`~pyro_circuits.diagnostics.inference_data`
        hold each particle's repeats together, with each draw's particle, weight and distance."""
        generator = _generator(seed)
        index = self._particle_index(n, generator)
        rank = torch.randperm(len(self.particles), generator=generator)
        index = index[torch.argsort(rank[index], stable=True)]
        weights = self.weights
        stats = {"particle": index, "weight": weights[index]}
        if len(self.distances) == len(self.particles):
            stats["distance"] = self.distances[index]
        attrs = {
            "seed": self.seed,
            "epsilon": self.epsilon,
            "particles": len(self.particles),
            "distinct": len(index[: CHAINS * (n // CHAINS)].unique()),
            "population_ess": float(1 / (weights**2).sum()),
        }
        return self.space.split(self.particles[index]), stats, attrs


def _generator(seed: int | None) -> torch.Generator:
    """A generator for ``seed`` (the global random state seeded with it too, so the simulations
    that follow are reproducible), or from the global random state when None."""
    if seed is not None:
        torch.manual_seed(seed)
    return torch.Generator().manual_seed(
        int(torch.randint(2**31, ()).item()) if seed is None else seed
    )

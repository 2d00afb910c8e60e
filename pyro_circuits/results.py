"""The two result protocols every method answers through.

* :class:`InferenceResult` -- a distribution over circuit parameters (EPI, NPE, SMC-ABC):
  draws keyed by site in each site's declared shape, the model run on them, the moment test,
  the convergence trace, ArviZ output, and a save that reloads whole.
* :class:`TrialPosterior` -- a fit that infers per-trial latents from data (LFADS, the calcium
  ladder, the spike-rate and deconvolution baselines): posterior draws and means of given trials,
  their ArviZ output, and the same save and load.

:func:`pyro_circuits.compare.compare` only talks to :class:`InferenceResult`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import arviz as az
import pandas as pd
import torch

from pyro_circuits.property import EmergentProperty, moment_test
from pyro_circuits.sites import CircuitProgram

__all__ = ["InferenceResult", "Saved", "TrialPosterior"]

#: Columns of :meth:`InferenceResult.convergence_trace`.
TRACE_COLUMNS = ["simulations", "wall_time", "distance"]


class Saved:
    """:meth:`save` pickles the whole object atomically; :meth:`load` returns it, type-checked.

    The object's model must therefore be picklable (a module-level function, or a callable
    object such as the built-in models).
    """

    def save(self, path: str | os.PathLike) -> Path:
        """Write the object to ``path`` (through a temporary file, so a crash leaves no half file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        torch.save(self, partial)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike):
        """The object saved at ``path``; a TypeError when it is not a ``cls``."""
        result = torch.load(Path(path), weights_only=False)
        if not isinstance(result, cls):
            raise TypeError(f"{path} holds a {type(result).__name__}, not a {cls.__name__}")
        return result


class InferenceResult(Saved, ABC):
    """Draws of circuit parameters from a fitted method, with one interface for every method.

    Subclasses set ``program``, ``prop``, ``wall_time``, ``simulations``, ``converged`` and
    ``method``, and implement :meth:`sample`, :meth:`convergence_trace` and
    :meth:`to_inference_data`; :meth:`log_prob` and :meth:`entropy` where the method has a
    density.
    """

    program: CircuitProgram  # the model the result was fitted on
    prop: EmergentProperty  # the property it was fitted to
    wall_time: float  # seconds of fitting
    simulations: int  # model runs spent in fitting
    converged: bool  # whether the method reached the property by its own criterion
    method: str = ""

    @abstractmethod
    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` parameter draws ``{site: (n, *shape)}``, each in its site's declared shape."""

    @abstractmethod
    def convergence_trace(self) -> pd.DataFrame:
        """``simulations``, ``wall_time`` and ``distance`` = ‖E[f] − μ‖₂ (in the statistics' units)
        at each of the method's checkpoints (EPI epochs, NPE rounds, SMC-ABC populations)."""

    @abstractmethod
    def to_inference_data(self, n: int = 2000, seed: int | None = 0) -> az.InferenceData:
        """ArviZ InferenceData of ``n`` draws (see :func:`pyro_circuits.diagnostics.inference_data`)."""

    def log_prob(self, z) -> torch.Tensor:
        """Log density of parameter draws, where the method has one."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable density")

    def entropy(self) -> float | None:
        """The entropy of the distribution in nats, or None where the method has no density."""
        return None

    @torch.no_grad()
    def predictive(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Statistics ``{site: (n, *shape)}`` of the model run on ``n`` fresh parameter draws."""
        return self.program.simulate(self.sample(n, seed))

    @torch.no_grad()
    def check(
        self, batches: int = 200, batch_size: int = 500, alpha: float = 0.05, seed: int | None = 0
    ) -> pd.DataFrame:
        """The constraint table: target vs achieved mean and variance, test p-values, converged.

        Runs EPI's moment test (Bittner et al. 2021) on ``batches`` fresh batches of
        ``batch_size`` draws, so every method gets the same verdict on the property.
        """
        prop = self.prop
        stats = self.predictive(batches * batch_size, seed)
        violations = prop.sufficient_statistics(stats) - prop.target
        test = moment_test(violations.reshape(batches, batch_size, -1).mean(1), alpha)
        f = prop.flatten(stats)
        k = f.shape[1]
        return pd.DataFrame(
            {
                "statistic": [name[2:-1] for name in prop.constraint_names[:k]],
                "target mean": prop.mean_vector.tolist(),
                "achieved mean": f.mean(0).tolist(),
                "p (mean)": test.p_values[:k].tolist(),
                "target var": prop.variance_vector.tolist(),
                "achieved var": ((f - prop.mean_vector) ** 2).mean(0).tolist(),
                "p (var)": test.p_values[k:].tolist(),
                "converged": [
                    bool((test.p_values[[i, i + k]] > test.threshold).all()) for i in range(k)
                ],
            }
        )


class TrialPosterior(Saved, ABC):
    """A fit that reads latents out of trials: ``counts`` [trials, time, neurons] (spike counts,
    or fluorescence for calcium fits) and optional measured ``inputs`` [trials, time, k].

    Every method takes the trials first and its options as keywords, so fits are interchangeable
    in a benchmark or a report.
    """

    @abstractmethod
    def sample(self, counts, inputs=None, *, num_samples: int = 10, seed: int = 0) -> dict:
        """Posterior draws ``{site: [num_samples, trials, ...]}`` of the latent sites, plus
        posterior-predictive draws of the observed sites under their own names."""

    @abstractmethod
    def posterior_mean(self, counts, inputs=None, *, num_samples: int = 50, seed: int = 0) -> dict:
        """Posterior means ``{site: [trials, ...]}`` of the latent sites (``rates`` among them)."""

    @abstractmethod
    def to_inference_data(
        self, counts, inputs=None, *, num_samples: int = 20, seed: int = 0
    ) -> az.InferenceData:
        """ArviZ InferenceData: posterior, posterior predictive, observed data and, where the fit
        has a likelihood, the pointwise log-likelihood."""

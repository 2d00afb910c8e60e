"""Point-estimate fits as trial posteriors, the shared part of every baseline.

A baseline gives one estimate of each trial's latents, not a distribution: its posterior is that
point, repeated as every draw, and its observation model (Poisson counts, Gaussian fluorescence)
gives the posterior-predictive draws and the pointwise log-likelihood.
"""

from __future__ import annotations

from abc import abstractmethod

import arviz as az
import torch

from pyro_circuits.checks import positive_int
from pyro_circuits.results import TrialPosterior

__all__ = ["PointPosterior"]


def _numpy(value: torch.Tensor):
    return value.detach().cpu().numpy()


class PointPosterior(TrialPosterior):
    """A :class:`~pyro_circuits.results.TrialPosterior` whose posterior is a point.

    Subclasses set ``observed`` (the name of the observed site) and ``dims`` (ArviZ dimension
    names per site) and implement ``_estimate(data, inputs)`` (the latent sites of the given
    trials), ``_likelihood(data, estimate)`` (the distribution of the observed site, one batch
    entry per observed value) and ``_observed(data)`` (the observed values it scores).

    Example:
        >>> from pyro_circuits.baselines import ThresholdDeconvolution
        >>> isinstance(ThresholdDeconvolution(), PointPosterior)
        True
    """

    observed: str
    dims: dict[str, list[str]] = {}

    @abstractmethod
    def _estimate(self, data: torch.Tensor, inputs=None) -> dict[str, torch.Tensor]:
        """The point estimate ``{site: [trials, ...]}`` of the latent sites."""

    @abstractmethod
    def _likelihood(
        self, data: torch.Tensor, estimate: dict[str, torch.Tensor]
    ) -> torch.distributions.Distribution:
        """The observed site's distribution given ``estimate``."""

    @abstractmethod
    def _observed(self, data: torch.Tensor) -> torch.Tensor:
        """The observed values of ``data`` that :meth:`_likelihood` scores."""

    def _coords(self) -> dict:
        return {}

    @torch.no_grad()
    def _draw(self, data, inputs, num_samples: int, seed: int):
        positive_int("num_samples", num_samples)
        estimate = self._estimate(data, inputs)
        likelihood = self._likelihood(data, estimate)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            predictive = likelihood.sample((num_samples,))
        return estimate, likelihood, predictive

    def posterior_mean(self, counts, inputs=None, *, num_samples: int = 50, seed: int = 0) -> dict:
        """The point estimate ``{site: [trials, ...]}``; ``num_samples`` and ``seed`` are
        accepted for the protocol and unused (a point has no spread)."""
        with torch.no_grad():
            return self._estimate(counts, inputs)

    def sample(self, counts, inputs=None, *, num_samples: int = 10, seed: int = 0) -> dict:
        """The point estimate repeated ``num_samples`` times ``{site: [num_samples, trials,
        ...]}``, plus ``num_samples`` draws of the observed site from the observation model
        (seeded by ``seed``; the global random state is left as it was)."""
        estimate, _, predictive = self._draw(counts, inputs, num_samples, seed)
        draws = {
            name: value.expand(num_samples, *value.shape).clone()
            for name, value in estimate.items()
        }
        draws[self.observed] = predictive
        return draws

    def to_inference_data(
        self, counts, inputs=None, *, num_samples: int = 20, seed: int = 0
    ) -> az.InferenceData:
        """ArviZ InferenceData with one chain of ``num_samples`` draws: the posterior (the point,
        repeated), the posterior predictive and the observed values of the observed site, and
        its pointwise log-likelihood (so ``az.loo`` and ``az.plot_ppc`` work)."""
        observed = self._observed(counts)
        estimate, likelihood, predictive = self._draw(counts, inputs, num_samples, seed)
        log_likelihood = likelihood.log_prob(observed)
        name = self.observed

        def chain(value: torch.Tensor):
            return _numpy(value.expand(1, num_samples, *value.shape))

        return az.from_dict(
            posterior={site: chain(value) for site, value in estimate.items()},
            posterior_predictive={name: _numpy(predictive[None])},
            observed_data={name: _numpy(observed)},
            log_likelihood={name: chain(log_likelihood)},
            coords=self._coords(),
            dims=self.dims,
        )

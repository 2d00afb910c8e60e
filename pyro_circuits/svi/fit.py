""":class:`SVIFit`: a fitted model and guide, their training history, and the posterior of trials
read through them (the :class:`~pyro_circuits.results.TrialPosterior` protocol)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field

import arviz as az
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyro_circuits.checks import positive_int
from pyro_circuits.handlers import PushMean
from pyro_circuits.results import TrialPosterior
from pyro_circuits.svi.local import local_params

__all__ = ["SVIFit"]


def _sites(trace, kind: str):
    """(name, site) of the ``kind`` ("posterior" or "observed") sample sites of a model trace."""
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in ("samples", "trials"):
            continue
        observed = site["is_observed"] and not site["infer"].get("_deterministic", False)
        if observed == (kind == "observed"):
            yield name, site


@dataclass
class SVIFit(TrialPosterior):
    """A fitted model and guide, their training history, and posterior summaries.

    :meth:`save` pickles the whole fit (model and guide included) and :meth:`load` returns it.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> from pyro_circuits.svi import train
        >>> counts = torch.poisson(torch.ones(8, 10, 3))
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), counts, max_epochs=2, progress=False)
        >>> fit.posterior_mean(counts, num_samples=3)["rates"].shape
        torch.Size([8, 10, 3])
    """

    model: torch.nn.Module
    guide: torch.nn.Module
    history: list = field(default_factory=list)
    wall_time: float = 0.0
    #: Why training stopped early on a non-finite value (see :func:`~pyro_circuits.svi.train`),
    #: else None.
    diverged: str | None = None
    #: The moving average of the parameters (model and guide state dicts) that training keeps
    #: with ``average_decay``, else None; :meth:`averaged` fits with it.
    averaged_state: tuple[dict, dict] | None = None

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose parameters were restored (counted from 0), or None if none was."""
        return max((h["epoch"] for h in self.history if h.get("best")), default=None)

    def averaged(self) -> SVIFit:
        """A copy of the fit whose model and guide hold the moving average of the parameters
        (training's ``average_decay``) instead of the restored epoch's."""
        if self.averaged_state is None:
            raise ValueError("this fit keeps no average: train it with average_decay")
        model, guide = copy.deepcopy((self.model, self.guide))  # the guide may share the model
        model.load_state_dict(self.averaged_state[0])
        guide.load_state_dict(self.averaged_state[1])
        return dataclasses.replace(self, model=model, guide=guide)

    @torch.no_grad()
    def _trace(self, counts, inputs, num_samples, seed, push_mean=False):
        """A model trace replayed on ``num_samples`` vectorised guide draws (dropout off), or on
        the guide's means with ``push_mean`` (:class:`~pyro_circuits.handlers.PushMean`)."""
        self.model.eval()
        self.guide.eval()
        pyro.set_rng_seed(seed)
        device = next(self.model.parameters()).device
        counts = counts.to(device)
        inputs = None if inputs is None else inputs.to(device)
        means = PushMean() if push_mean else contextlib.nullcontext()
        with (
            local_params(self.model, self.guide),
            means,
            pyro.plate("samples", num_samples, dim=-2),
        ):
            guide_trace = poutine.trace(self.guide).get_trace(counts, inputs)
            replayed = poutine.replay(self.model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(counts, inputs)
        return model_trace

    def sample(self, counts, inputs=None, *, num_samples: int = 10, seed: int = 0) -> dict:
        """Posterior draws ``{site: [num_samples, trials, ...]}`` of every latent and deterministic
        site, plus posterior-predictive draws of every observed site (under its own name)."""
        trace = self._trace(counts, inputs, num_samples, seed)
        out = {name: site["value"] for name, site in _sites(trace, "posterior")}
        out.update({name: site["fn"].sample() for name, site in _sites(trace, "observed")})
        return out

    def posterior_mean(
        self,
        counts,
        inputs=None,
        *,
        num_samples: int = 50,
        seed: int = 0,
        batch_size: int = 256,
        push_mean: bool = False,
    ) -> dict:
        """Posterior means of the latent and deterministic sites over ``num_samples`` guide draws
        (LFADS's "sample and average"), computed ``batch_size`` trials at a time. With
        ``push_mean`` the sites' values from one pass on the guide's means instead (LFADS's
        "posterior push mean", :class:`~pyro_circuits.handlers.PushMean`); ``num_samples`` is
        then ignored."""
        chunks = []
        for start in range(0, len(counts), batch_size):
            part = slice(start, start + batch_size)
            trace = self._trace(
                counts[part],
                None if inputs is None else inputs[part],
                1 if push_mean else num_samples,
                seed,
                push_mean,
            )
            chunks.append(
                {name: site["value"].mean(0) for name, site in _sites(trace, "posterior")}
            )
        return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}

    def to_inference_data(
        self, counts, inputs=None, *, num_samples: int = 20, seed: int = 0, pointwise: bool = False
    ) -> az.InferenceData:
        """ArviZ InferenceData of ``num_samples`` guide draws for the trials ``counts``: posterior
        (latent and deterministic sites), posterior-predictive and observed counts, and the
        log-likelihood of each trial under each draw (the observed site's log-probability summed
        over time and neurons: for LFADS the Poisson log-likelihood of the counts under the
        drawn rates), so ``az.loo`` leaves out one trial at a time; with ``pointwise`` one value
        per bin and neuron instead. Coordinates trial / time / neuron where the model declares
        ``dims``. The caveats of ``az.loo`` on these draws are in ``docs/diagnostics.md``.

        Example:
            >>> from pyro_circuits.models import LFADS
            >>> from pyro_circuits.guides import LFADSEncoder
            >>> counts = torch.poisson(torch.ones(6, 10, 3))
            >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
            >>> fit = SVIFit(model, LFADSEncoder(model, enc_dim=4))
            >>> fit.to_inference_data(counts, num_samples=4).log_likelihood["counts"].shape
            (1, 4, 6)
        """
        if not isinstance(pointwise, bool):
            raise TypeError(f"pointwise must be True or False, got {pointwise!r}")
        trace = self._trace(counts, inputs, positive_int("num_samples", num_samples), seed)
        posterior = {
            name: site["value"][None].cpu().numpy() for name, site in _sites(trace, "posterior")
        }
        predictive, log_lik, observed = {}, {}, {}
        for name, site in _sites(trace, "observed"):
            fn = site["fn"]
            while isinstance(fn, dist.Independent):
                fn = fn.base_dist
            if isinstance(fn, dist.Unit):  # a pyro.factor term, not an observation
                continue
            value = site["value"]
            predictive[name] = fn.sample()[None].cpu().numpy()
            elements = fn.log_prob(value).expand(num_samples, *value.shape)
            if not pointwise:
                elements = elements.reshape(num_samples, len(value), -1).sum(-1)
            log_lik[name] = elements[None].cpu().numpy()
            observed[name] = value.cpu().numpy()
        dims = getattr(self.model, "dims", None) or {}
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive=predictive,
            observed_data=observed,
            sample_stats={"wall_time": [[self.wall_time] * num_samples]},
            dims=dims,
        )
        trial = {name: dims.get(name, ["trial"])[:1] for name in log_lik}
        idata.add_groups(log_likelihood=log_lik, dims=dims if pointwise else trial)
        return idata

"""The losses of SVI training: the ELBO restricted to some sites, the recurrent L2 penalty, and
the validation loss that training monitors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

__all__ = ["Validation", "partial_elbo_loss", "recurrent_l2"]


def recurrent_l2(modules) -> torch.Tensor:
    """½ Σ‖W_hh‖² / Σ numel over every recurrent kernel (parameters named ``*weight_hh*``) of
    ``modules``, each counted once; 0 when there is none.

    Example:
        >>> gru = torch.nn.GRU(2, 3)
        >>> with torch.no_grad():
        ...     _ = gru.weight_hh_l0.fill_(2.0)
        >>> recurrent_l2([gru, gru]).item()  # ½ · 4 per entry
        2.0
    """
    weights = {id(p): p for m in modules for n, p in m.named_parameters() if "weight_hh" in n}
    if not weights:
        return torch.zeros(())
    total = sum(w.numel() for w in weights.values())
    return sum(0.5 * w.pow(2).sum() for w in weights.values()) / total


def partial_elbo_loss(model, guide, sites: Sequence[str], *args, **kwargs) -> torch.Tensor:
    """-ELBO restricted to ``sites``: -(Σ log p − Σ log q) over those of them that the model
    traces (the guide's draws replayed), from one guide draw; ``args`` and ``kwargs`` go to both.

    A name that is not a sample site of the model is a ValueError (a misspelt site would
    otherwise score nothing, a loss of 0). For a model with two levels it scores one of them, e.g. a ladder model's deep level
    (``("ic", "co", "spikes_given_rates")``), whose share of the full ELBO is small.

    Example:
        >>> import pyro.distributions as dist
        >>> def model(x):
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     pyro.sample("z", dist.Delta(torch.tensor(0.0)))
        >>> round(partial_elbo_loss(model, guide, ["x"], torch.tensor(1.0)).item(), 4)  # -log N(1|0,1)
        1.4189
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    known = {n for n, s in model_trace.nodes.items() if s["type"] == "sample"}
    unknown = [name for name in sites if name not in known]
    if unknown:
        raise ValueError(
            f"valid_sites names {unknown}, which are not sample sites of the model; "
            f"its sample sites are {sorted(known)}"
        )
    wanted = lambda name, site: name in sites  # noqa: E731
    model_trace.compute_log_prob(wanted)
    guide_trace.compute_log_prob(wanted)
    log_p = sum(site["log_prob_sum"] for site in _scored(model_trace, sites))
    log_q = sum(site["log_prob_sum"] for site in _scored(guide_trace, sites))
    return torch.as_tensor(log_q - log_p)


def _scored(trace, sites):
    """The sample sites of ``trace`` named in ``sites``."""
    return [s for n, s in trace.nodes.items() if n in sites and s["type"] == "sample"]


@dataclass
class Validation:
    """The loss that training monitors on held-out trials: -ELBO per trial of ``counts`` (with
    ``inputs``), restricted to ``sites`` by :func:`partial_elbo_loss` when they are named,
    without gradient (training calls it with the modules in eval mode, dropout off).

    It is computed ``batch_size`` trials at a time, each batch's -ELBO scaled by the ``trials``
    plate to all the trials and divided by their number, and these terms are summed: with one
    batch it is the -ELBO per trial, with k batches about k times that.

    Example:
        >>> import pyro.distributions as dist
        >>> def model(x, inputs=None, *, n_trials=None):
        ...     with pyro.plate("trials", n_trials or len(x), subsample=torch.arange(len(x))):
        ...         pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
        >>> def guide(x, inputs=None, *, n_trials=None):
        ...     pass
        >>> elbo = pyro.infer.Trace_ELBO()
        >>> round(Validation(torch.zeros(4), batch_size=4)(model, guide, elbo), 4)  # -log N(0|0,1)
        0.9189
        >>> round(Validation(torch.zeros(4), batch_size=2)(model, guide, elbo), 4)  # two batches
        1.8379
    """

    counts: torch.Tensor
    inputs: torch.Tensor | None = None
    sites: Sequence[str] | None = None
    batch_size: int = 128

    @torch.no_grad()
    def __call__(self, model, guide, elbo: pyro.infer.ELBO) -> float:
        n_trials, total = len(self.counts), 0.0
        for idx in torch.arange(n_trials, device=self.counts.device).split(self.batch_size):
            args = (self.counts[idx], None if self.inputs is None else self.inputs[idx])
            if self.sites is None:
                loss = elbo.differentiable_loss(model, guide, *args, n_trials=n_trials)
                total += (loss / n_trials).item()
            else:
                loss = partial_elbo_loss(model, guide, self.sites, *args, n_trials=n_trials)
                total += loss.item() / n_trials
        return total

"""The SVI training loop for amortised sequential latent-variable models (LFADS and later ones).

The model and guide are callables with the signature
``fn(counts, inputs=None, *, n_trials=None, cd_mask=None)`` whose per-trial sites live in a
``pyro.plate("trials", n_trials, subsample=...)``; :func:`train` fits them with minibatch SVI
and returns an :class:`SVIFit` that summarises the posterior.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.optim import swa_utils
from tqdm.auto import tqdm

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.handlers import PushMean, scale_latents

__all__ = ["SVIFit", "Staged", "partial_elbo_loss", "train", "trained_parameters"]


def _ramp(step: int, length: int) -> float:
    """Linear warm-up from 1/(length+1) to 1 over ``length`` steps (1 when length is 0)."""
    return min(1.0, (step + 1) / (length + 1))


@dataclass(frozen=True)
class Staged:
    """The ladder models' two-stage schedule (VaLPACa; reference: hold = ramp = 1600 steps).

    Stage 1 (``hold`` steps) fits the observation level: the parameters that the model's and
    the guide's ``deep_parameters()`` return are held fixed and the KL of the deep latent
    ``sites`` is scaled by the ramp's first value. Stage 2 ramps that KL and the L2 penalty
    linearly to 1 over ``ramp`` steps. The other latents keep ``train``'s ``kl_warmup``.

    Example:
        >>> Staged(hold=2, ramp=3).deep_scale(1), Staged(hold=2, ramp=3).deep_scale(4)
        (0.25, 0.75)
    """

    hold: int = 1600
    ramp: int = 1600
    sites: tuple[str, ...] = ("ic", "co")

    def __post_init__(self) -> None:
        if self.hold < 0 or self.ramp < 0:
            raise ValueError(f"Staged needs hold >= 0 and ramp >= 0, got {self.hold}, {self.ramp}")

    def holding(self, step: int) -> bool:
        return step < self.hold

    def deep_scale(self, step: int) -> float:
        """Scale of the deep KL and the L2 penalty at ``step``."""
        return _ramp(max(step - self.hold, 0), self.ramp)

    @property
    def length(self) -> int:
        return self.hold + self.ramp


def _recurrent_l2(modules) -> torch.Tensor:
    """½ Σ‖W_hh‖² / Σ numel over every recurrent kernel (parameters named ``*weight_hh*``)."""
    weights = {id(p): p for m in modules for n, p in m.named_parameters() if "weight_hh" in n}
    if not weights:
        return torch.zeros(())
    total = sum(w.numel() for w in weights.values())
    return sum(0.5 * w.pow(2).sum() for w in weights.values()) / total


def partial_elbo_loss(model, guide, sites: Sequence[str], *args, **kwargs) -> torch.Tensor:
    """-ELBO restricted to ``sites``: -(Σ log p − Σ log q) over those of them that the model
    traces (the guide's draws replayed), from one guide draw; ``args`` and ``kwargs`` go to both.

    For a model with two levels it scores one of them, e.g. a ladder model's deep level
    (``("ic", "co", "spikes_given_rates")``), whose share of the full ELBO is small.

    Example:
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
    wanted = lambda name, site: name in sites  # noqa: E731
    model_trace.compute_log_prob(wanted)
    guide_trace.compute_log_prob(wanted)
    log_p = sum(site["log_prob_sum"] for site in _scored(model_trace, sites))
    log_q = sum(site["log_prob_sum"] for site in _scored(guide_trace, sites))
    return torch.as_tensor(log_q - log_p)


def _scored(trace, sites):
    """The sample sites of ``trace`` named in ``sites``."""
    return [s for n, s in trace.nodes.items() if n in sites and s["type"] == "sample"]


def _check_batch(name, counts, inputs):
    if not torch.is_tensor(counts) or counts.dim() != 3:
        raise ValueError(f"{name} must be a [trials, time, neurons] tensor")
    if inputs is not None and (not torch.is_tensor(inputs) or inputs.shape[:2] != counts.shape[:2]):
        raise ValueError(f"inputs for {name} must be a [trials, time, k] tensor matching it")


def _sites(trace, kind: str):
    """(name, site) of the ``kind`` ("posterior" or "observed") sample sites of a model trace."""
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in ("samples", "trials"):
            continue
        observed = site["is_observed"] and not site["infer"].get("_deterministic", False)
        if observed == (kind == "observed"):
            yield name, site


@dataclass
class SVIFit:
    """A fitted model and guide, their training history, and posterior summaries.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
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
    #: Why training stopped early on a non-finite value (see :func:`train`), else None.
    diverged: str | None = None
    #: The moving average of the parameters (model and guide state dicts) that :func:`train`
    #: keeps with ``average_decay``, else None; :meth:`averaged` fits with it.
    averaged_state: tuple[dict, dict] | None = None

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose parameters were restored (counted from 0), or None if none was."""
        return max((h["epoch"] for h in self.history if h["best"]), default=None)

    def averaged(self) -> SVIFit:
        """A copy of the fit whose model and guide hold the moving average of the parameters
        (:func:`train`'s ``average_decay``) instead of the restored epoch's."""
        if self.averaged_state is None:
            raise ValueError("this fit keeps no average: train it with average_decay")
        model, guide = copy.deepcopy((self.model, self.guide))  # the guide may share the model
        model.load_state_dict(self.averaged_state[0])
        guide.load_state_dict(self.averaged_state[1])
        return dataclasses.replace(self, model=model, guide=guide)

    @torch.no_grad()
    def _trace(self, counts, inputs, num_samples, seed, push_mean=False):
        """A model trace replayed on ``num_samples`` vectorised guide draws (dropout off), or on
        the guide's means with ``push_mean`` (:class:`PushMean`)."""
        self.model.eval()
        self.guide.eval()
        pyro.set_rng_seed(seed)
        device = next(self.model.parameters()).device
        counts = counts.to(device)
        inputs = None if inputs is None else inputs.to(device)
        means = PushMean() if push_mean else contextlib.nullcontext()
        with means, pyro.plate("samples", num_samples, dim=-2):
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
        batch_size: int = 256,
        seed: int = 0,
        push_mean: bool = False,
    ) -> dict:
        """Posterior means of the latent and deterministic sites over ``num_samples`` guide draws
        (LFADS's "sample and average"), computed ``batch_size`` trials at a time. With
        ``push_mean`` the sites' values from one pass on the guide's means instead (LFADS's
        "posterior push mean", :class:`PushMean`); ``num_samples`` is then ignored."""
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

    def to_inference_data(self, counts, inputs=None, *, num_samples: int = 20, seed: int = 0):
        """ArviZ InferenceData: posterior (latent and deterministic sites), posterior-predictive and
        observed counts, and the pointwise log-likelihood (so ``az.loo`` works); coordinates
        trial / time / neuron when the model declares ``dims``."""
        trace = self._trace(counts, inputs, num_samples, seed)
        posterior = {
            name: site["value"][None].cpu().numpy() for name, site in _sites(trace, "posterior")
        }
        predictive, log_lik, observed = {}, {}, {}
        for name, site in _sites(trace, "observed"):
            fn = site["fn"]
            while isinstance(fn, dist.Independent):
                fn = fn.base_dist
            predictive[name] = fn.sample()[None].cpu().numpy()
            log_lik[name] = fn.log_prob(site["value"])[None].cpu().numpy()
            observed[name] = site["value"].cpu().numpy()
        stats = {"wall_time": [[self.wall_time] * num_samples]}
        return az.from_dict(
            posterior=posterior,
            posterior_predictive=predictive,
            log_likelihood=log_lik,
            observed_data=observed,
            sample_stats=stats,
            dims=getattr(self.model, "dims", None),
        )

    def save(self, path) -> None:
        """Save model and guide parameters, the history and the moving average if kept."""
        torch.save(
            {
                "model": self.model.state_dict(),
                "guide": self.guide.state_dict(),
                "history": self.history,
                "wall_time": self.wall_time,
                "diverged": self.diverged,
                "averaged_state": self.averaged_state,
            },
            path,
        )

    @classmethod
    def load(cls, path, model, guide) -> SVIFit:
        """Load a fit saved with :meth:`save` into freshly built ``model`` and ``guide``."""
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["model"])
        guide.load_state_dict(saved["guide"])
        return cls(
            model,
            guide,
            saved["history"],
            saved["wall_time"],
            saved.get("diverged"),
            saved.get("averaged_state"),
        )


def trained_parameters(model: torch.nn.Module, guide: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters :func:`train` optimises, each once, in the order of its optimiser's state
    (a checkpoint's ``optimizer`` entry indexes them in this order).

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> guide = LFADSEncoder(model, enc_dim=4)
        >>> len(trained_parameters(model, guide)) == len({*model.parameters(), *guide.parameters()})
        True
    """
    return list({id(p): p for m in (model, guide) for p in m.parameters()}.values())


def train(
    model,
    guide,
    counts: torch.Tensor,
    inputs: torch.Tensor | None = None,
    *,
    valid_counts: torch.Tensor | None = None,
    valid_inputs: torch.Tensor | None = None,
    valid_sites: Sequence[str] | None = None,
    batch_size: int = 128,
    max_epochs: int = 100,
    lr: float = 1e-2,
    lr_decay: float = 0.95,
    lr_patience: int = 6,
    lr_min: float = 1e-5,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    clip_norm: float = 200.0,
    kl_warmup: int = 0,
    l2_scale: float = 0.0,
    l2_warmup: int = 0,
    cd_rate: float = 0.0,
    staged: Staged | None = None,
    patience: int | None = None,
    max_time: float | None = None,
    elbo: pyro.infer.ELBO | None = None,
    checkpoint: str | os.PathLike | None = None,
    average_decay: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> SVIFit:
    """Fit ``model`` and ``guide`` to spike counts with minibatch SVI.

    The loss is -ELBO per training trial (the ``trials`` plate scales a minibatch to the data set,
    as TF-LFADS normalises), with latent sites scaled by a KL warm-up ramping to 1 over
    ``kl_warmup`` steps, plus ``l2_scale`` · ramp(``l2_warmup``) · ½Σ‖W_hh‖²/Σnumel on the recurrent
    kernels.

    Optimiser: Adam (``adam_betas``, ``adam_eps``; torch's defaults) with gradient-norm clipping.
    The learning rate is multiplied by ``lr_decay`` after ``lr_patience`` epochs without
    improvement of the monitored loss: the validation ELBO when ``valid_counts`` is given
    (restricted to the named sites by ``valid_sites``, :func:`partial_elbo_loss`), else the
    training loss.

    Stopping: after ``patience`` such epochs past the warm-up, or after ``max_time`` seconds; the
    best parameters are restored. If training diverges after its first epoch (a non-finite loss, or
    the model rejecting a non-finite value with ``ValueError``), it stops with a warning, keeps the
    best parameters so far and says why in ``SVIFit.diverged``; diverging before any epoch could be
    kept raises.

    Options: coordinated dropout (``cd_rate``) has the guide read counts with a random fraction
    zeroed (the rest scaled by 1/(1 - cd_rate)) and the likelihood score only the zeroed entries.
    ``staged`` applies the ladder models' schedule (:class:`Staged`) instead of ``l2_warmup`` for
    the L2 penalty. With ``checkpoint`` the full state is saved after every epoch and an existing
    checkpoint is resumed. With ``average_decay`` an exponential moving average of the
    parameters (``torch.optim.swa_utils``, that decay per step) is kept from the end of the
    warm-up on, without changing the training; :meth:`SVIFit.averaged` fits with it. ``elbo``
    defaults to ``Trace_ELBO()``. Each history record has ``best`` True when its epoch became the
    one to restore.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> fit = train(model, LFADSEncoder(model, enc_dim=4), torch.poisson(torch.ones(8, 10, 3)),
        ...             max_epochs=3, batch_size=4, progress=False)
        >>> len(fit.history)
        3
    """
    _check_batch("counts", counts, inputs)
    if valid_counts is not None:
        _check_batch("valid_counts", valid_counts, valid_inputs)
    elif valid_sites is not None:
        raise ValueError("valid_sites needs valid_counts")
    require_positive_ints(batch_size=batch_size, max_epochs=max_epochs)
    if not 0 <= cd_rate < 1:
        raise ValueError(f"cd_rate must be in [0, 1), got {cd_rate}")
    if average_decay is not None and not 0 < average_decay < 1:
        raise ValueError(f"average_decay must be in (0, 1), got {average_decay}")
    if lr <= 0 or clip_norm <= 0:
        raise ValueError(f"lr and clip_norm must be positive, got lr={lr}, clip_norm={clip_norm}")
    if not all(0 <= beta < 1 for beta in adam_betas) or adam_eps <= 0:
        raise ValueError(
            f"Adam needs betas in [0, 1) and eps > 0, got betas={adam_betas}, eps={adam_eps}"
        )
    device = torch.device(device)
    model.to(device)
    guide.to(device)
    to = lambda x: None if x is None else x.to(device)  # noqa: E731
    counts, inputs, valid_counts, valid_inputs = map(
        to, (counts, inputs, valid_counts, valid_inputs)
    )
    elbo = elbo or pyro.infer.Trace_ELBO()
    params = trained_parameters(model, guide)
    optimizer = torch.optim.Adam(params, lr=lr, betas=adam_betas, eps=adam_eps)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=lr_decay, patience=lr_patience, min_lr=lr_min
    )
    average, both = None, torch.nn.ModuleList([model, guide])
    if average_decay is not None:  # buffers are the models' constants: not averaged
        average = swa_utils.AveragedModel(
            both, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(average_decay)
        )
    n_trials = len(counts)
    state = {
        "epoch": 0,
        "step": 0,
        "history": [],
        "best": math.inf,
        "best_params": None,
        "stale": 0,
        "elapsed": 0.0,
    }
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False, map_location=device)
        model.load_state_dict(saved["model"])
        guide.load_state_dict(saved["guide"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        if average is not None and saved.get("average") is not None:
            average.load_state_dict(saved["average"])
        pyro.util.set_rng_state(saved["rng"])
    else:
        pyro.set_rng_seed(seed)
    burn_in = max(kl_warmup, l2_warmup, staged.length if staged else 0)
    held = []
    if staged is not None:
        for part in (model, guide):
            if not hasattr(part, "deep_parameters"):
                raise TypeError(f"staged training needs {type(part).__name__}.deep_parameters()")
            held.extend(part.deep_parameters())

    def latent_scales(step: int) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if staged is None:
            stack.enter_context(scale_latents(_ramp(step, kl_warmup)))
        else:
            stack.enter_context(scale_latents(_ramp(step, kl_warmup), exclude=staged.sites))
            stack.enter_context(scale_latents(staged.deep_scale(step), only=staged.sites))
        return stack

    def l2_scale_at(step: int) -> float:
        return l2_scale * (_ramp(step, l2_warmup) if staged is None else staged.deep_scale(step))

    n_batches = math.ceil(n_trials / batch_size)

    def loss_of(batch_counts, batch_inputs, total, cd_mask=None):
        extra = {} if cd_mask is None else {"cd_mask": cd_mask}
        loss = elbo.differentiable_loss(
            model, guide, batch_counts, batch_inputs, n_trials=total, **extra
        )
        return loss / total

    @torch.no_grad()
    def validation_loss():
        model.eval()
        guide.eval()
        total = 0.0
        for idx in torch.arange(len(valid_counts), device=device).split(batch_size):
            part = None if valid_inputs is None else valid_inputs[idx]
            if valid_sites is None:
                total += loss_of(valid_counts[idx], part, len(valid_counts)).item()
            else:
                loss = partial_elbo_loss(
                    model, guide, valid_sites, valid_counts[idx], part, n_trials=len(valid_counts)
                )
                total += loss.item() / len(valid_counts)
        return total

    # With a wall-time budget the bar counts seconds: the epoch cap would show an ETA of hours.
    timed = max_time is not None
    bar = tqdm(
        total=max_time if timed else max_epochs * n_batches,
        initial=state["elapsed"] if timed else state["epoch"] * n_batches,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
        if timed
        else None,
        disable=not progress,
        desc="SVI",
        dynamic_ncols=True,
    )

    def show_time(seconds: float) -> None:
        bar.update(min(seconds, max_time) - bar.n)

    start = time.perf_counter() - state["elapsed"]
    diverged = None
    for epoch in range(state["epoch"], max_epochs):
        model.train()
        guide.train()
        order = torch.randperm(n_trials, generator=torch.Generator().manual_seed(seed + epoch))
        epoch_loss = 0.0
        for idx in order.to(device).split(batch_size):
            batch_counts = counts[idx]
            cd_mask = None
            if cd_rate > 0:
                keep = torch.rand_like(batch_counts) >= cd_rate
                cd_mask = keep / (1 - cd_rate)
            try:
                with latent_scales(state["step"]):
                    loss = loss_of(
                        batch_counts, None if inputs is None else inputs[idx], n_trials, cd_mask
                    )
                if not torch.isfinite(loss):
                    raise ValueError(f"the loss is {loss.item()}")
            except ValueError as error:
                if epoch == 0:  # the data or the model, not the optimisation
                    raise
                diverged = f"diverged at step {state['step']} (epoch {epoch}): {error}"
                break
            penalty = l2_scale_at(state["step"]) * _recurrent_l2((model, guide))
            optimizer.zero_grad()
            (loss + penalty).backward()
            if staged is not None and staged.holding(state["step"]):
                for p in held:
                    p.grad = None  # Adam leaves parameters without a gradient unchanged
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
            state["step"] += 1
            if average is not None and state["step"] >= burn_in:
                average.update_parameters(both)
            epoch_loss += loss.item() * len(idx) / n_trials
            if timed:
                show_time(time.perf_counter() - start)
            else:
                bar.update()
            bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
        if diverged is not None:
            state["elapsed"] = time.perf_counter() - start
            break
        valid = validation_loss() if valid_counts is not None else None
        monitored = epoch_loss if valid is None else valid
        scheduler.step(monitored)
        state["epoch"] = epoch + 1
        state["elapsed"] = time.perf_counter() - start
        record = {
            "epoch": epoch,
            "step": state["step"],
            "loss": epoch_loss,
            "valid_loss": valid,
            "lr": optimizer.param_groups[0]["lr"],
            "time": state["elapsed"],
        }
        state["history"].append(record)
        bar.set_postfix(
            loss=f"{epoch_loss:.4g}",
            valid=None if valid is None else f"{valid:.4g}",
            lr=f"{record['lr']:.2g}",
        )
        stop = False
        record["best"] = state["step"] >= burn_in and monitored < state["best"]
        if state["step"] >= burn_in:
            if record["best"]:
                state["best"], state["stale"] = monitored, 0
                state["best_params"] = copy.deepcopy((model.state_dict(), guide.state_dict()))
            else:
                state["stale"] += 1
                stop = patience is not None and state["stale"] >= patience
        stop = stop or (max_time is not None and state["elapsed"] >= max_time)
        if path is not None:
            blob = {
                "model": model.state_dict(),
                "guide": guide.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
                "rng": pyro.util.get_rng_state(),
                "average": None if average is None else average.state_dict(),
            }
            torch.save(blob, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        if stop:
            break
    if timed:  # the epoch's end, past the last batch, may have reached the budget
        show_time(state["elapsed"])
    bar.close()
    if diverged is not None and state["best_params"] is None:
        raise RuntimeError(
            f"training {diverged}, before the {burn_in}-step warm-up ended and any epoch could be"
            " kept; try a smaller lr or clip_norm"
        )
    if state["best_params"] is not None:
        model.load_state_dict(state["best_params"][0])
        guide.load_state_dict(state["best_params"][1])
    averaged_state = None
    if average is not None and average.n_averaged > 0:
        averaged_state = tuple(part.state_dict() for part in average.module)
    fit = SVIFit(model, guide, state["history"], state["elapsed"], diverged, averaged_state)
    if diverged is not None:
        warnings.warn(
            f"training {diverged}; the parameters of epoch {fit.best_epoch} are kept", stacklevel=2
        )
    return fit

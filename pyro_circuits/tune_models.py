"""The model kinds a search trains (:mod:`pyro_circuits.tune`): their settings, how each trial
builds and trains one, and the validation metrics that score it.

``lfads``: :class:`~pyro_circuits.models.LFADS` with the
:class:`~pyro_circuits.guides.LFADSEncoder` on spike counts (the base an
:class:`~pyro_circuits.catalog.SVIConfig`, or none). ``ladder``: the calcium ladder,
:class:`~pyro_circuits.models.CalciumLFADS` with the :class:`~pyro_circuits.guides.LadderEncoder`
and the :class:`~pyro_circuits.svi.Staged` schedule, on fluorescence (the base a
:class:`~pyro_circuits.catalog.CalciumConfig`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pyro
import torch

from pyro_circuits import metrics
from pyro_circuits.catalog import CalciumConfig, SVIConfig
from pyro_circuits.checks import as_tensor, name_in
from pyro_circuits.datasets import SpikeData
from pyro_circuits.guides import LadderEncoder, LFADSEncoder
from pyro_circuits.models import LFADS, CalciumLFADS
from pyro_circuits.svi import Staged, SVIFit, train
from pyro_circuits.svi.elbo import Validation

__all__ = [
    "KINDS",
    "METRICS",
    "SHAPES",
    "build",
    "check_inputs",
    "fit_kind",
    "kind_of",
    "options",
    "score",
    "search_keys",
]

#: ``lfads``: LFADS on spike counts; ``ladder``: the calcium ladder on fluorescence.
KINDS = ("lfads", "ladder")
#: The validation metrics of each kind, the default first: ``co_bps`` (held-out neurons) and
#: ``bits_per_spike`` (every neuron) score rates against spike counts; ``elbo`` is the ELBO
#: per validation trial of the fluorescence, which every calcium recording has.
METRICS = {"lfads": ("co_bps", "bits_per_spike"), "ladder": ("elbo", "bits_per_spike")}
#: Arguments of ``train`` that a search sets itself.
_MANAGED = {
    *("model", "guide", "counts", "inputs", "valid_counts", "valid_inputs", "valid_sites"),
    *("max_epochs", "max_time", "checkpoint", "overwrite", "callbacks", "seed", "device"),
    *("progress", "elbo", "staged", "average_decay", "accelerator", "devices", "logger"),
    "log_dir",
}


def _keywords(function, skip, prefix: str = "") -> set[str]:
    return {prefix + name for name in inspect.signature(function).parameters if name not in skip}


_TRAIN = _keywords(train, _MANAGED)
_DEEP = _keywords(LFADS.__init__, {"self", "n_neurons", "dt", "ext_dim"})
_DEEP_GUIDE = _keywords(LFADSEncoder.__init__, {"self", "model", "observed", "input_dim"})
_LADDER = _keywords(CalciumLFADS.__init__, {"self", "n_neurons", "dt", "calcium", "lfads"})
_LADDER_GUIDE = _keywords(LadderEncoder.__init__, {"self", "model", "deep"}, "ladder_")
_STAGED = {"staged_hold", "staged_ramp"}
#: Each kind's option groups: the keys of each, and the prefix its keys carry.
_GROUPS = {
    "lfads": {"model": (_DEEP, ""), "guide": (_DEEP_GUIDE, ""), "train": (_TRAIN, "")},
    "ladder": {
        "deep": (_DEEP, ""),
        "deep_guide": (_DEEP_GUIDE, ""),
        "ladder": (_LADDER, ""),
        "ladder_guide": (_LADDER_GUIDE, "ladder_"),
        "staged": (_STAGED, "staged_"),
        "train": (_TRAIN, ""),
    },
}
#: Settings that fix the networks' shapes: population-based training never mutates them.
SHAPES = {
    *("ic_dim", "gen_dim", "fac_dim", "co_dim", "enc_dim", "ci_dim", "con_dim", "ci_lag"),
    *("z_dim", "ladder_enc_dim", "ladder_con_dim", "ladder_step_dim", "ladder_stacked"),
}


def kind_of(base) -> str:
    """The model kind of ``base``: ``ladder`` for a :class:`~pyro_circuits.catalog.CalciumConfig`,
    ``lfads`` for an :class:`~pyro_circuits.catalog.SVIConfig` or None.

    Example:
        >>> from pyro_circuits.catalog import CALCIUM_CONFIGS
        >>> kind_of(None), kind_of(CALCIUM_CONFIGS["lorenz"])
        ('lfads', 'ladder')
    """
    if base is None or isinstance(base, SVIConfig):
        return "lfads"
    if isinstance(base, CalciumConfig):
        return "ladder"
    raise TypeError(f"base must be an SVIConfig or a CalciumConfig, got {type(base).__name__}")


def fit_kind(fit: SVIFit) -> str:
    """The model kind of a trained ``fit``: ``ladder`` for a calcium ladder, else ``lfads``."""
    return "ladder" if isinstance(fit.model, CalciumLFADS) else "lfads"


def search_keys(kind: str = "lfads") -> list[str]:
    """The settings a search of ``kind`` may name. ``lfads``: options of
    :class:`~pyro_circuits.models.LFADS`, of :class:`~pyro_circuits.guides.LFADSEncoder` and of
    :func:`~pyro_circuits.svi.train` (``dropout`` sets the model's and the encoder's).
    ``ladder``: the same names for its deep model, deep encoder and training (``dropout`` the
    deep level's), the options of :class:`~pyro_circuits.models.CalciumLFADS` (``z_dim``...),
    those of :class:`~pyro_circuits.guides.LadderEncoder` prefixed ``ladder_``
    (``ladder_enc_dim``...), and the stage lengths of :class:`~pyro_circuits.svi.Staged`,
    ``staged_hold`` and ``staged_ramp``.

    Example:
        >>> {"lr", "l2_scale", "dropout", "gen_dim", "fac_dim"} <= set(search_keys())
        True
        >>> {"z_dim", "ladder_enc_dim", "staged_hold"} <= set(search_keys("ladder"))
        True
    """
    name_in("kind", kind, KINDS)
    return sorted(set().union(*(keys for keys, _ in _GROUPS[kind].values())))


def _base_options(kind: str, base) -> dict[str, dict]:
    """Each option group's values in ``base`` (a ladder's KL warm-up: its hold, by default)."""
    if base is None:
        return {group: {} for group in _GROUPS[kind]}
    if kind == "lfads":
        return {"model": dict(base.model), "guide": dict(base.guide), "train": dict(base.train)}
    dropout = {"dropout": base.ladder_dropout}
    train_options = dict(batch_size=base.batch_size, lr=base.lr, l2_scale=base.l2_scale,
                         cd_rate=base.cd_rate, **base.ladder_adam)  # fmt: skip
    return {
        "deep": dict(base.deep) | dropout,
        "deep_guide": dict(base.deep_guide) | dropout,
        "ladder": dict(base.ladder),
        "ladder_guide": dict(base.ladder_guide),
        "staged": {"hold": Staged.hold, "ramp": Staged.ramp},
        "train": train_options,
    }


def options(kind: str, base, config: Mapping) -> dict[str, dict]:
    """Each option group of ``kind``: ``base``'s values with ``config``'s over them.

    Example:
        >>> options("lfads", None, {"lr": 1e-3, "dropout": 0.1})
        {'model': {'dropout': 0.1}, 'guide': {'dropout': 0.1}, 'train': {'lr': 0.001}}
    """
    groups = _base_options(kind, base)
    for key, value in config.items():
        for group, (keys, prefix) in _GROUPS[kind].items():
            if key in keys:
                groups[group][key.removeprefix(prefix)] = value
    return groups


def check_inputs(kind: str, data, metric: str | None, fluorescence) -> tuple[str, object]:
    """The metric (``kind``'s default for None) and the fluorescence (a ladder's, as a float
    tensor of ``data``'s shape; None for LFADS) of a search, after checking that ``data`` can
    be trained on and scored: training and validation trials, and held-out neurons for
    co-bps."""
    if not isinstance(data, SpikeData):
        raise TypeError(f"data must be a SpikeData, got {type(data).__name__}")
    metric = METRICS[kind][0] if metric is None else metric
    if kind == "ladder" and metric == "co_bps":
        raise ValueError(
            "metric 'co_bps' does not apply to the calcium ladder: its encoder reads every "
            f"neuron's fluorescence, so none is held out; use one of {METRICS['ladder']}"
        )
    name_in("metric", metric, METRICS[kind])
    if len(data.valid_idx) == 0:
        raise ValueError("data must have validation trials (valid_idx) to score the trials on")
    if len(data.train_idx) < 2:
        raise ValueError("data must have at least 2 training trials")
    if metric == "co_bps" and len(data.heldout) == 0:
        raise ValueError("metric 'co_bps' needs held-out neurons (data.heldout)")
    if kind == "lfads":
        if fluorescence is not None:
            raise ValueError("fluorescence is for a calcium ladder (a CalciumConfig base) only")
        return metric, None
    if fluorescence is None:
        raise ValueError("a calcium ladder (a CalciumConfig base) needs the fluorescence")
    fluorescence = as_tensor("fluorescence", fluorescence, dtype=data.counts.dtype, dim=3)
    if fluorescence.shape != data.counts.shape:
        raise ValueError(
            f"fluorescence must have data's shape {tuple(data.counts.shape)} (trials, frames, "
            f"neurons), got {tuple(fluorescence.shape)}"
        )
    return metric, fluorescence


def build(data: SpikeData, groups: dict, base, fluorescence, seed: int) -> tuple:
    """A trial's untrained model and guide, and what :func:`~pyro_circuits.svi.train` gets
    besides them: the observations and options. LFADS: the held-in neurons encoded, a tenth of
    the training trials (drawn with ``seed``) held back for the learning rate and early
    stopping. The ladder: every training trial's fluorescence (its validation loss is almost
    all fluorescence, which says little of the deep level), σ fixed at ``base``'s recipe, the
    :class:`~pyro_circuits.svi.Staged` schedule of the ``staged`` group, and a KL warm-up as
    long as its hold unless set (as the calcium benchmark trains it)."""
    if "model" in groups:
        counts = data.train.counts
        order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed))
        n_stop = max(1, len(counts) // 10)
        fit_counts, stop_counts = counts[order[n_stop:]], counts[order[:n_stop]]
        model = LFADS(data.counts.shape[-1], dt=data.dt, **groups["model"])
        model.init_readout(fit_counts)
        guide = LFADSEncoder(model, observed=data.heldin, **groups["guide"])
        return model, guide, fit_counts, groups["train"] | {"valid_counts": stop_counts}
    recipe = base.fluorescence
    fluor = fluorescence[data.train_idx]
    model = CalciumLFADS(data.counts.shape[-1], dt=data.dt, calcium=dict(recipe, learn=()),
                         **groups["ladder"], **groups["deep"])  # fmt: skip
    model.init_readout(fluor * data.dt / (recipe["tau"] * recipe["alpha"]))
    guide = LadderEncoder(model, deep=groups["deep_guide"], **groups["ladder_guide"])
    staged = Staged(**groups["staged"])
    options_ = {"kl_warmup": staged.hold} | groups["train"] | {"staged": staged}
    return model, guide, fluor, options_


def score(fit: SVIFit, data: SpikeData, metric: str, fluorescence=None) -> float:
    """The validation metric of ``fit`` on ``data``'s validation trials (see
    :func:`pyro_circuits.tune.score`); ``fluorescence``: a ladder's observations. Pyro's RNG
    state is left as it was."""
    valid = data.valid
    observed = fluorescence[data.valid_idx] if fit_kind(fit) == "ladder" else valid.counts
    rng = pyro.util.get_rng_state()
    try:
        if metric == "elbo":
            fit.model.eval()
            fit.guide.eval()
            pyro.set_rng_seed(0)
            loss = Validation(observed, batch_size=len(observed))
            return -loss(fit.model, fit.guide, pyro.infer.Trace_ELBO())
        rates = fit.posterior_mean(observed, push_mean=True)["rates"]
    finally:
        pyro.util.set_rng_state(rng)
    if metric == "co_bps":
        return metrics.co_bps(rates, valid.counts, data.heldout, data.dt)
    return metrics.bits_per_spike(rates, valid.counts, data.dt)

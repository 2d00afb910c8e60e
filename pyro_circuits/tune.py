"""Hyper-parameter search for LFADS on Ray Tune: :func:`tune`.

Each trial trains LFADS (model and encoder guide, :func:`pyro_circuits.svi.train`) with one draw
of the search space and reports the validation metric (:func:`score`) after every epoch, with a
checkpoint holding the fit (:meth:`SVIFit.save <pyro_circuits.results.Saved.save>`) and the
training loop's state, so the ASHA scheduler can stop a trial early and population-based
training can continue another trial's state with new settings. Ray is an optional extra
(``pip install 'pyro_circuits[ray]'``): this module imports it only when :func:`tune` or
:func:`default_space` runs.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyro
import torch

from pyro_circuits import metrics
from pyro_circuits.catalog import SVIConfig
from pyro_circuits.checks import name_in, positive_int, require_positive_ints, seed_int
from pyro_circuits.datasets import SpikeData
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import Callback, SVIFit, train

__all__ = [
    "METRICS",
    "SCHEDULERS",
    "TuneResult",
    "default_space",
    "score",
    "search_keys",
    "train_config",
    "tune",
]

#: The validation metrics a search can maximise (see :func:`score`).
METRICS = ("co_bps", "bits_per_spike")
#: ``asha``: random search, trials stopped early by ASHA; ``pbt``: population-based training;
#: ``fifo``: random search, every trial run to the end.
SCHEDULERS = ("asha", "pbt", "fifo")
_FIT, _LOOP = "fit.pt", "loop.ckpt"
#: Arguments of ``train`` that :func:`tune` sets itself.
_MANAGED = {
    *("model", "guide", "counts", "inputs", "valid_counts", "valid_inputs", "valid_sites"),
    *("max_epochs", "max_time", "checkpoint", "overwrite", "callbacks", "seed", "device"),
    *("progress", "elbo", "staged", "average_decay"),
}
#: Settings that fix the networks' shapes: population-based training never mutates them.
_SHAPES = {"ic_dim", "gen_dim", "fac_dim", "co_dim", "enc_dim", "ci_dim", "con_dim", "ci_lag"}


def _keywords(function, skip) -> set[str]:
    return {name for name in inspect.signature(function).parameters if name not in skip}


_MODEL_KEYS = _keywords(LFADS.__init__, {"self", "n_neurons", "dt", "ext_dim"})
_GUIDE_KEYS = _keywords(LFADSEncoder.__init__, {"self", "model", "observed", "input_dim"})
_TRAIN_KEYS = _keywords(train, _MANAGED)


def search_keys() -> list[str]:
    """The settings a search space may name: options of :class:`~pyro_circuits.models.LFADS`,
    of :class:`~pyro_circuits.guides.LFADSEncoder` and of :func:`~pyro_circuits.svi.train`
    (``dropout`` sets the model's and the encoder's).

    Example:
        >>> {"lr", "l2_scale", "dropout", "gen_dim", "fac_dim"} <= set(search_keys())
        True
    """
    return sorted(_MODEL_KEYS | _GUIDE_KEYS | _TRAIN_KEYS)


def _ray():
    """Ray and Ray Tune, or an ImportError naming the extra that installs them."""
    try:
        import ray
        from ray import tune as ray_tune
    except ImportError as error:
        raise ImportError(
            "the hyper-parameter search needs Ray Tune: pip install 'pyro_circuits[ray]'"
        ) from error
    return ray, ray_tune


def default_space() -> dict:
    """The default LFADS search space (Ray Tune domains): the learning rate, the KL warm-up and
    the L2 penalty of the recurrent weights, dropout, coordinated dropout, and the generator and
    factor sizes.

    Example:
        >>> sorted(default_space())  # doctest: +SKIP
        ['cd_rate', 'dropout', 'fac_dim', 'gen_dim', 'kl_warmup', 'l2_scale', 'lr']
    """
    _, ray_tune = _ray()
    return {
        "lr": ray_tune.loguniform(1e-3, 3e-2),
        "kl_warmup": ray_tune.choice([0, 200, 1000]),
        "l2_scale": ray_tune.loguniform(10.0, 3000.0),
        "dropout": ray_tune.uniform(0.0, 0.3),
        "cd_rate": ray_tune.uniform(0.0, 0.4),
        "gen_dim": ray_tune.choice([64, 128, 200]),
        "fac_dim": ray_tune.choice([4, 8, 16]),
    }


def score(fit: SVIFit, data: SpikeData, metric: str = "co_bps") -> float:
    """The validation metric of ``fit`` on ``data``'s validation trials, from the rates of one
    pass on the guide's means (deterministic): ``co_bps`` on the held-out neurons, or
    ``bits_per_spike`` on every neuron (:mod:`pyro_circuits.metrics`). Pyro's RNG state is left
    as it was, so scoring during training changes nothing of it.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=2, n_trials=4, n_neurons=5, n_bins=10, n_heldout=1)
        >>> model = LFADS(5, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> guide = LFADSEncoder(model, enc_dim=4, observed=data.heldin)
        >>> math.isfinite(score(SVIFit(model, guide), data))
        True
    """
    name_in("metric", metric, METRICS)
    valid = data.valid
    rng = pyro.util.get_rng_state()
    try:
        rates = fit.posterior_mean(valid.counts, push_mean=True)["rates"]
    finally:
        pyro.util.set_rng_state(rng)
    if metric == "co_bps":
        return metrics.co_bps(rates, valid.counts, data.heldout, data.dt)
    return metrics.bits_per_spike(rates, valid.counts, data.dt)


@dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    Attributes:
        fit: the best trial's fit at its best epoch (loaded from its checkpoint).
        config: that trial's settings (the search space's keys).
        trials: one row per trial: its settings, ``metric`` (the best over its epochs),
            ``epochs`` (reported), ``status`` (``completed``: ran ``max_epochs``; ``stopped``:
            ended sooner, by the scheduler or early stopping; ``error``) and ``error``.
        metric: the validation metric searched on.
    """

    fit: SVIFit
    config: dict
    trials: pd.DataFrame
    metric: str

    @property
    def best(self) -> float:
        """The best trial's metric."""
        return float(self.trials[self.metric].max())


def _settings(base: SVIConfig | None, config: Mapping) -> tuple[dict, dict, dict]:
    """The model's, the guide's and ``train``'s options: ``base``'s with ``config`` over them."""
    model, guide, fit = (
        ({}, {}, {}) if base is None else (dict(base.model), dict(base.guide), dict(base.train))
    )
    for key, value in config.items():
        for keys, options in ((_MODEL_KEYS, model), (_GUIDE_KEYS, guide), (_TRAIN_KEYS, fit)):
            if key in keys:
                options[key] = value
    return model, guide, fit


def _check_keys(name: str, settings) -> dict:
    """``settings`` (the search space or a trial's settings): a non-empty mapping of known keys."""
    if not isinstance(settings, Mapping):
        raise TypeError(f"{name} must be a dict of settings, got {type(settings).__name__}")
    if not settings:
        raise ValueError(f"{name} must name at least one setting, from {search_keys()}")
    unknown = sorted(set(settings) - set(search_keys()))
    if unknown:
        raise ValueError(f"{name} names unknown settings {unknown}; known: {search_keys()}")
    return dict(settings)


def _check_data(data, metric: str) -> None:
    """Data a search can train on and score: training and validation trials, and held-out
    neurons for co-bps."""
    name_in("metric", metric, METRICS)
    if not isinstance(data, SpikeData):
        raise TypeError(f"data must be a SpikeData, got {type(data).__name__}")
    if len(data.valid_idx) == 0:
        raise ValueError("data must have validation trials (valid_idx) to score the trials on")
    if len(data.train_idx) < 2:
        raise ValueError("data must have at least 2 training trials")
    if metric == "co_bps" and len(data.heldout) == 0:
        raise ValueError("metric 'co_bps' needs held-out neurons (data.heldout)")


def train_config(
    data: SpikeData,
    config: Mapping,
    *,
    base: SVIConfig | None = None,
    max_epochs: int = 10,
    seed: int = 0,
    callbacks=(),
    progress: bool = True,
) -> SVIFit:
    """LFADS trained on ``data`` with the settings ``config`` over ``base`` (see :func:`tune`),
    as each trial of a search trains it: model (readout at the mean rates) and encoder of the
    held-in neurons, seeded with ``seed``, on the training trials less a tenth held back for
    the learning rate and early stopping; ``callbacks`` go to :func:`~pyro_circuits.svi.train`.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=2, n_trials=4, n_neurons=5, n_bins=10, n_heldout=1)
        >>> settings = {"ic_dim": 2, "gen_dim": 4, "fac_dim": 2, "enc_dim": 4}
        >>> fit = train_config(data, settings, max_epochs=2, progress=False)
        >>> len(fit.history), fit.model.gen_dim
        (2, 4)
    """
    config = _check_keys("config", config)
    _check_data(data, "bits_per_spike")
    if base is not None and not isinstance(base, SVIConfig):
        raise TypeError(f"base must be an SVIConfig, got {type(base).__name__}")
    seed = seed_int("seed", seed)
    torch.manual_seed(seed)
    counts = data.train.counts
    order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed))
    n_stop = max(1, len(counts) // 10)
    fit_counts, stop_counts = counts[order[n_stop:]], counts[order[:n_stop]]
    model_options, guide_options, options = _settings(base, config)
    model = LFADS(data.counts.shape[-1], dt=data.dt, **model_options).init_readout(fit_counts)
    guide = LFADSEncoder(model, observed=data.heldin, **guide_options)
    return train(model, guide, fit_counts, valid_counts=stop_counts, max_epochs=max_epochs,
                 seed=seed, progress=progress, callbacks=callbacks, **options)  # fmt: skip


class _Resume(Callback):
    """Training continued from a checkpoint of the loop (``saved``, written by :class:`_Report`),
    at the trial's own learning rate when the checkpoint was another trial's with another one
    (population-based training)."""

    def __init__(self, saved: dict, config: dict) -> None:
        self.saved, self.config = saved, config

    def settings(self) -> None:
        return None

    def on_train_begin(self, loop) -> None:
        loop.resume(self.saved)
        if self.saved["tune_config"].get("lr") != self.config.get("lr") and "lr" in self.config:
            for group in loop.optimizer.param_groups:
                group["lr"] = self.config["lr"]


class _Report(Callback):
    """After each epoch: the validation metric and a checkpoint (the fit, and the loop's state
    for :class:`_Resume`) reported to Ray Tune."""

    def __init__(self, data: SpikeData, metric: str, config: dict) -> None:
        self.data, self.metric, self.config = data, metric, config

    def settings(self) -> None:
        return None

    def on_epoch_end(self, loop, record, monitored) -> bool:
        _, ray_tune = _ray()
        fit = SVIFit(loop.model, loop.guide, list(loop.state["history"]), loop.state["elapsed"])
        value = score(fit, self.data, self.metric)
        with tempfile.TemporaryDirectory() as folder:
            fit.save(Path(folder) / _FIT)
            torch.save(loop.checkpoint() | {"tune_config": self.config}, Path(folder) / _LOOP)
            report = {self.metric: value, "epoch": record["epoch"] + 1, "loss": record["loss"]}
            report["valid_loss"] = record["valid_loss"]
            ray_tune.report(report, checkpoint=ray_tune.Checkpoint.from_directory(folder))
        return False


def _trial(config, *, data, base, metric, max_epochs, seed) -> None:
    """One trial: :func:`train_config` reporting after each epoch, resumed from the trial's
    checkpoint when Ray Tune gives one (a Ray Tune function trainable)."""
    _, ray_tune = _ray()
    torch.set_num_threads(1)
    config, hooks = dict(config), []
    checkpoint = ray_tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            hooks.append(_Resume(torch.load(Path(folder) / _LOOP, weights_only=False), config))
    hooks.append(_Report(data, metric, config))
    train_config(data, config, base=base, max_epochs=max_epochs, seed=seed, callbacks=hooks,
                 progress=False)  # fmt: skip


def _check_start(start, space: dict, num_samples: int) -> list[dict]:
    """The settings of the first trials: at most ``num_samples`` dicts of the space's keys."""
    if isinstance(start, Mapping) or not isinstance(start, Sequence):
        raise TypeError(f"start must be a list of dicts of settings, got {start!r}")
    if len(start) > num_samples:
        raise ValueError(f"start gives {len(start)} settings for {num_samples} trials")
    for settings in start:
        _check_keys("each of start", settings)
        if not set(settings) <= set(space):
            raise ValueError(f"start sets {sorted(set(settings) - set(space))}, not in space")
    return [dict(settings) for settings in start]


def _check_concurrency(num_cpus, max_concurrent) -> None:
    """``max_concurrent`` trials, one CPU each, fit ``num_cpus`` (default: this machine's)."""
    cap = os.cpu_count() if num_cpus is None else positive_int("num_cpus", num_cpus)
    if max_concurrent is not None and positive_int("max_concurrent", max_concurrent) > cap:
        raise ValueError(f"max_concurrent ({max_concurrent}) exceeds the {cap} CPUs for trials")


def _mutations(space: dict, ray_tune) -> dict:
    """The settings population-based training mutates: the space's domains that leave the
    networks' shapes alone."""
    mutable = {
        key: value
        for key, value in space.items()
        if isinstance(value, ray_tune.search.sample.Domain) and key not in _SHAPES
    }
    if not mutable:
        raise ValueError(
            f"scheduler 'pbt' needs a searched setting other than the sizes {sorted(_SHAPES)}"
        )
    return mutable


def _scheduler(name: str, space: dict, max_epochs: int, grace_period: int, ray_tune):
    """Ray Tune's scheduler of ``name`` (None: first in, first out)."""
    schedulers = ray_tune.schedulers
    if name == "asha":
        return schedulers.ASHAScheduler(
            max_t=max_epochs, grace_period=min(grace_period, max_epochs)
        )
    if name == "pbt":
        return schedulers.PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=grace_period,
            hyperparam_mutations=_mutations(space, ray_tune),
        )
    return None


class _Started:
    """Ray for the search: the running instance, else ``RAY_ADDRESS``'s cluster, else a local
    instance of ``num_cpus`` CPUs; one this started is shut down on exit."""

    def __init__(self, ray, num_cpus) -> None:
        self.ray, self.num_cpus, self.started = ray, num_cpus, False

    def __enter__(self):
        if not self.ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            cpus = None if address else self.num_cpus
            self.ray.init(address=address, num_cpus=cpus, include_dashboard=False,
                          log_to_driver=False)  # fmt: skip
            self.started = True
        return int(self.ray.cluster_resources().get("CPU", 1))

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()


def _table(grid, space: dict, metric: str, max_epochs: int) -> pd.DataFrame:
    """One row per trial of a Ray Tune result grid."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        reported = history is not None and metric in history
        best = float(history[metric].max()) if reported else math.nan
        epochs = int(history["epoch"].max()) if reported else 0
        status = "completed" if epochs >= max_epochs else "stopped"
        config = {key: result.config.get(key) for key in space}
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        rows.append(config | {metric: best, "epochs": epochs,
                              "status": "error" if error else status, "error": error})  # fmt: skip
    return pd.DataFrame(rows)


def _bar(total: int, disable: bool, ray_tune):
    """A Ray Tune callback showing finished trials as a tqdm bar."""
    from tqdm.auto import tqdm

    class Bar(ray_tune.Callback):
        def setup(self, **info) -> None:
            self.bar = tqdm(total=total, desc="trials", disable=disable, dynamic_ncols=True)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.bar.update()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.bar.update()

        def on_experiment_end(self, trials, **info) -> None:
            self.bar.close()

        def __getstate__(self) -> dict:  # Ray saves its callbacks with the run; not the bar
            return {}

    return Bar()


def _best(grid, table: pd.DataFrame, space: dict, metric: str) -> TuneResult:
    """The best trial's fit, loaded from its best checkpoint, with its settings and the table."""
    if (table["status"] == "error").all():
        raise RuntimeError(f"every trial failed; the first: {table['error'].iloc[0]}")
    best = grid.get_best_result(metric=metric, mode="max", scope="all")
    with best.get_best_checkpoint(metric, "max").as_directory() as folder:
        fit = SVIFit.load(Path(folder) / _FIT)
        # the checkpoint's own settings: under population-based training the trial's last ones
        # may be others
        saved = torch.load(Path(folder) / _LOOP, weights_only=False)["tune_config"]
    config = {key: saved[key] for key in space}
    return TuneResult(fit=fit, config=config, trials=table, metric=metric)


def tune(
    data: SpikeData,
    space: Mapping | None = None,
    *,
    base: SVIConfig | None = None,
    num_samples: int = 8,
    max_epochs: int = 10,
    metric: str = "co_bps",
    scheduler: str = "asha",
    grace_period: int = 1,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    storage_path: str | os.PathLike | None = None,
    start: Sequence[Mapping] = (),
    seed: int = 0,
    progress: bool = True,
) -> TuneResult:
    """Search LFADS's settings on ``data`` with Ray Tune; return the best fit and every trial.

    Each of ``num_samples`` trials draws its settings from ``space`` (keys from
    :func:`search_keys`; values Ray Tune domains such as ``tune.loguniform``, or fixed values;
    default :func:`default_space`) over ``base``'s model, guide and training options (an
    :class:`~pyro_circuits.catalog.SVIConfig` such as ``LFADS_CONFIGS["lorenz"]``, whose data
    recipe is not used; default: the package's defaults), trains for at most ``max_epochs``
    epochs on the training trials (a tenth held back for the learning rate and early stopping)
    with 1 CPU and 1 torch thread, and reports ``metric`` (:func:`score`, maximised) after every
    epoch. ``scheduler``: ``asha`` (trials stopped at rungs from ``grace_period`` epochs on),
    ``pbt`` (population-based training: every ``grace_period`` epochs the worst trials continue
    the best ones' checkpoints with mutated settings; sizes are never mutated; every checkpoint
    is kept, and the table shows each trial's last settings) or ``fifo``. The random search is
    seeded with ``seed``, and every trial trains with it (:func:`train_config`); ``start``:
    settings the first trials take (each a dict of some of the space's keys, the rest drawn),
    such as the values the search should improve on.

    Ray: the running instance, else the cluster of ``RAY_ADDRESS``, else a local one of
    ``num_cpus`` CPUs (default all), shut down at the end; at most ``max_concurrent`` trials at
    once (default: the cluster's CPUs). Ray Tune's results go to ``storage_path``, or to a
    temporary folder removed at the end. ``progress``: a bar of finished trials.

    Every argument is checked before any work. A trial that fails is an ``error`` row of the
    table; a RuntimeError when all fail.

    Example:
        >>> from ray import tune as ray_tune  # doctest: +SKIP
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5, n_bins=20, n_heldout=4)
        >>> space = {"lr": ray_tune.loguniform(1e-3, 1e-2), "gen_dim": 16}  # doctest: +SKIP
        >>> result = tune(data, space, num_samples=2, max_epochs=2)  # doctest: +SKIP
        >>> len(result.trials)  # doctest: +SKIP
        2
    """
    name_in("scheduler", scheduler, SCHEDULERS)
    if base is not None and not isinstance(base, SVIConfig):
        raise TypeError(f"base must be an SVIConfig, got {type(base).__name__}")
    require_positive_ints(num_samples=num_samples, max_epochs=max_epochs, grace_period=grace_period)
    seed = seed_int("seed", seed)
    _check_concurrency(num_cpus, max_concurrent)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    ray, ray_tune = _ray()
    _check_data(data, metric)
    space = _check_keys("space", default_space() if space is None else space)
    start = _check_start(start, space, num_samples)
    schedule = _scheduler(scheduler, space, max_epochs, grace_period, ray_tune)
    temporary = storage_path is None
    folder = Path(tempfile.mkdtemp(prefix="pyro-circuits-tune-") if temporary else storage_path)
    trial = dict(data=data, base=base, metric=metric, max_epochs=max_epochs, seed=seed)
    try:
        with _Started(ray, num_cpus) as cpus, _quiet_snapshots():
            search = ray_tune.search.BasicVariantGenerator(
                points_to_evaluate=start or None,
                max_concurrent=min(max_concurrent or cpus, cpus),
                random_state=seed,
            )
            tuner = _tuner(ray_tune, trial, space, schedule, search, num_samples, folder, metric,
                           progress)  # fmt: skip
            grid = tuner.fit()
            return _best(grid, _table(grid, space, metric, max_epochs), space, metric)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def _tuner(ray_tune, trial, space, schedule, search, num_samples, folder, metric, progress):
    """Ray Tune's tuner of the search (``trial``: :func:`_trial`'s options): 1 CPU per trial,
    actors reused, trials drawn by ``search``; each trial's best
    checkpoint kept (and its latest), or every one under population-based training, which may
    continue any of them."""
    trainable = ray_tune.with_resources(ray_tune.with_parameters(_trial, **trial), {"cpu": 1})
    keep = ray_tune.CheckpointConfig(
        num_to_keep=None
        if isinstance(schedule, ray_tune.schedulers.PopulationBasedTraining)
        else 1,
        checkpoint_score_attribute=metric,
        checkpoint_score_order="max",
    )
    return ray_tune.Tuner(
        trainable,
        param_space=space,
        tune_config=ray_tune.TuneConfig(metric=metric, mode="max", scheduler=schedule,
                                        num_samples=num_samples, search_alg=search,
                                        reuse_actors=True),
        run_config=ray_tune.RunConfig(storage_path=str(folder.resolve()), verbose=0,
                                      callbacks=[_bar(num_samples, not progress, ray_tune)],
                                      checkpoint_config=keep),
    )  # fmt: skip


@contextlib.contextmanager
def _quiet_snapshots():
    """Ray Tune's warning that keeping one checkpoint per trial snapshots the experiment often
    (what the search asks for) silenced while it runs."""
    logger = logging.getLogger("ray.tune.execution.experiment_state")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

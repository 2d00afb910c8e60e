"""Hyper-parameter search for LFADS and the calcium ladder on Ray Tune: :func:`tune`.

Each trial trains LFADS (model and encoder guide, :func:`pyro_circuits.svi.train`), or the
calcium ladder on fluorescence (:mod:`pyro_circuits.tune_models`), with one draw of the search
space and reports the validation metric (:func:`score`) after every epoch, with a
checkpoint holding the fit (:meth:`SVIFit.save <pyro_circuits.results.Saved.save>`) and the
training loop's state, so the ASHA scheduler can stop a trial early and population-based
training can continue another trial's state with new settings. Ray is an optional extra
(``pip install 'pyro_circuits[ray]'``): this module imports it only when :func:`tune` or
:func:`default_space` runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from pyro_circuits import tune_models
from pyro_circuits.catalog import CalciumConfig, SVIConfig
from pyro_circuits.checks import name_in, positive_int, require_positive_ints, seed_int
from pyro_circuits.datasets import SpikeData
from pyro_circuits.svi import Callback, SVIFit, train
from pyro_circuits.tune_models import KINDS, METRICS

__all__ = [
    "KINDS",
    "METRICS",
    "SCHEDULERS",
    "TuneResult",
    "default_space",
    "score",
    "search_keys",
    "train_config",
    "tune",
]

#: ``asha``: random search, trials stopped early by ASHA; ``pbt``: population-based training;
#: ``fifo``: random search, every trial run to the end.
SCHEDULERS = ("asha", "pbt", "fifo")
_FIT, _LOOP = "fit.pt", "loop.ckpt"
search_keys = tune_models.search_keys


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


def score(fit: SVIFit, data: SpikeData, metric: str | None = None, fluorescence=None) -> float:
    """The validation metric of ``fit`` on ``data``'s validation trials (deterministic), of the
    fit's kind (:data:`METRICS`; None: the kind's first). ``co_bps`` on the held-out neurons or
    ``bits_per_spike`` on every neuron (:mod:`pyro_circuits.metrics`): the rates of one pass on
    the guide's means against ``data``'s counts (for a ladder, inferred from ``fluorescence``
    and scored against the true spikes, so synthetic data only). ``elbo`` (a ladder's): the
    ELBO per validation trial of the ``fluorescence`` (one seeded draw of the guide, dropout
    off), what any calcium recording can score, as training's validation loss computes it.
    Pyro's RNG state is left as it was, so scoring during training changes nothing of it.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> from pyro_circuits.guides import LFADSEncoder
        >>> from pyro_circuits.models import LFADS
        >>> data = lorenz(n_conditions=2, n_trials=4, n_neurons=5, n_bins=10, n_heldout=1)
        >>> model = LFADS(5, ic_dim=2, gen_dim=4, fac_dim=2)
        >>> guide = LFADSEncoder(model, enc_dim=4, observed=data.heldin)
        >>> math.isfinite(score(SVIFit(model, guide), data))
        True
    """
    kind = tune_models.fit_kind(fit)
    metric, fluorescence = tune_models.check_inputs(kind, data, metric, fluorescence)
    return tune_models.score(fit, data, metric, fluorescence)


@dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    Attributes:
        fit: the best trial's fit at its best epoch (loaded from its checkpoint).
        config: that trial's settings (the search space's keys).
        trials: one row per trial: its settings, ``metric`` (the best over its epochs),
            ``epochs`` (reported), ``status`` (``completed``: ran ``max_epochs``; ``stopped``:
            ended sooner, by the scheduler or early stopping; ``error``), ``error`` and
            ``trial`` (the trial's folder in Ray Tune's results).
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


def _check_keys(name: str, settings, kind: str) -> dict:
    """``settings`` (the search space or a trial's settings): a non-empty mapping of ``kind``'s
    keys."""
    if not isinstance(settings, Mapping):
        raise TypeError(f"{name} must be a dict of settings, got {type(settings).__name__}")
    known = search_keys(kind)
    if not settings:
        raise ValueError(f"{name} must name at least one setting, from {known}")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(
            f"{name} names settings {unknown} unknown to a {kind} search; known: {known}"
        )
    return dict(settings)


def train_config(
    data: SpikeData,
    config: Mapping,
    *,
    base: SVIConfig | CalciumConfig | None = None,
    fluorescence=None,
    max_epochs: int = 10,
    seed: int = 0,
    callbacks=(),
    progress: bool = True,
) -> SVIFit:
    """The model of ``base``'s kind trained on ``data`` with the settings ``config`` over
    ``base``'s (see :func:`tune`), as each trial of a search trains it, seeded with ``seed``;
    ``callbacks`` go to :func:`~pyro_circuits.svi.train`. LFADS: model (readout at the mean
    rates) and encoder of the held-in neurons, on the training trials less a tenth held back
    for the learning rate and early stopping. The calcium ladder (``base`` a
    :class:`~pyro_circuits.catalog.CalciumConfig`): on the training trials' ``fluorescence``
    (:func:`pyro_circuits.tune_models.build`).

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=2, n_trials=4, n_neurons=5, n_bins=10, n_heldout=1)
        >>> settings = {"ic_dim": 2, "gen_dim": 4, "fac_dim": 2, "enc_dim": 4}
        >>> fit = train_config(data, settings, max_epochs=2, progress=False)
        >>> len(fit.history), fit.model.gen_dim
        (2, 4)
    """
    kind = tune_models.kind_of(base)
    config = _check_keys("config", config, kind)
    metric = "elbo" if kind == "ladder" else "bits_per_spike"  # scorable on any such data
    _, fluorescence = tune_models.check_inputs(kind, data, metric, fluorescence)
    seed = seed_int("seed", seed)
    torch.manual_seed(seed)
    groups = tune_models.options(kind, base, config)
    model, guide, observed, options = tune_models.build(data, groups, base, fluorescence, seed)
    return train(model, guide, observed, max_epochs=max_epochs, seed=seed, progress=progress,
                 callbacks=callbacks, **options)  # fmt: skip


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

    def __init__(self, data: SpikeData, metric: str, config: dict, fluorescence) -> None:
        self.data, self.metric, self.config = data, metric, config
        self.fluorescence = fluorescence

    def settings(self) -> None:
        return None

    def on_epoch_end(self, loop, record, monitored) -> bool:
        _, ray_tune = _ray()
        fit = SVIFit(loop.model, loop.guide, list(loop.state["history"]), loop.state["elapsed"])
        value = tune_models.score(fit, self.data, self.metric, self.fluorescence)
        with tempfile.TemporaryDirectory() as folder:
            fit.save(Path(folder) / _FIT)
            torch.save(loop.checkpoint() | {"tune_config": self.config}, Path(folder) / _LOOP)
            report = {self.metric: value, "epoch": record["epoch"] + 1, "loss": record["loss"]}
            report["valid_loss"] = record["valid_loss"]
            ray_tune.report(report, checkpoint=ray_tune.Checkpoint.from_directory(folder))
        return False


def _trial(config, *, data, fluorescence, base, metric, max_epochs, seed) -> None:
    """One trial: :func:`train_config` reporting after each epoch, resumed from the trial's
    checkpoint when Ray Tune gives one (a Ray Tune function trainable)."""
    _, ray_tune = _ray()
    torch.set_num_threads(1)
    config, hooks = dict(config), []
    checkpoint = ray_tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            hooks.append(_Resume(torch.load(Path(folder) / _LOOP, weights_only=False), config))
    hooks.append(_Report(data, metric, config, fluorescence))
    train_config(data, config, base=base, fluorescence=fluorescence, max_epochs=max_epochs,
                 seed=seed, callbacks=hooks, progress=False)  # fmt: skip


def _check_start(start, space: dict, num_samples: int, kind: str) -> list[dict]:
    """The settings of the first trials: at most ``num_samples`` dicts of the space's keys."""
    if isinstance(start, Mapping) or not isinstance(start, Sequence):
        raise TypeError(f"start must be a list of dicts of settings, got {start!r}")
    if len(start) > num_samples:
        raise ValueError(f"start gives {len(start)} settings for {num_samples} trials")
    for settings in start:
        _check_keys("each of start", settings, kind)
        if not set(settings) <= set(space):
            raise ValueError(f"start sets {sorted(set(settings) - set(space))}, not in space")
    return [dict(settings) for settings in start]


def _check_concurrency(num_cpus, max_concurrent, scheduler: str) -> None:
    """``max_concurrent`` trials, one CPU each, fit ``num_cpus`` (default: this machine's); not
    with population-based training, whose whole population is live at once."""
    cap = os.cpu_count() if num_cpus is None else positive_int("num_cpus", num_cpus)
    if scheduler == "pbt" and max_concurrent is not None:
        raise ValueError("max_concurrent does not apply to scheduler 'pbt': the whole "
                         "population is live, its members taking turns on the CPUs")  # fmt: skip
    if max_concurrent is not None and positive_int("max_concurrent", max_concurrent) > cap:
        raise ValueError(f"max_concurrent ({max_concurrent}) exceeds the {cap} CPUs for trials")


def _mutations(space: dict, ray_tune) -> dict:
    """The settings population-based training mutates: the space's domains that leave the
    networks' shapes alone."""
    mutable = {
        key: value
        for key, value in space.items()
        if isinstance(value, ray_tune.search.sample.Domain) and key not in tune_models.SHAPES
    }
    if not mutable:
        raise ValueError(
            "scheduler 'pbt' needs a searched setting other than the sizes "
            f"{sorted(tune_models.SHAPES)}"
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
            synch=True,
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


def _history(result, metric: str) -> pd.DataFrame | None:
    """A trial's reports: Ray Tune's, else its ``progress.csv`` (Ray Tune's own history is
    emptied when a paused trial of population-based training restarts)."""
    history = result.metrics_dataframe
    progress = Path(result.path) / "progress.csv"
    if (history is None or metric not in history) and progress.is_file():
        with contextlib.suppress(pd.errors.EmptyDataError):
            return pd.read_csv(progress)
    return history


def _table(grid, space: dict, metric: str, max_epochs: int) -> pd.DataFrame:
    """One row per trial of a Ray Tune result grid."""
    rows = []
    for result in grid:
        history = _history(result, metric)
        reported = history is not None and metric in history
        best = float(history[metric].max()) if reported else math.nan
        epochs = int(history["epoch"].max()) if reported else 0
        status = "completed" if epochs >= max_epochs else "stopped"
        config = {key: result.config.get(key) for key in space}
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        rows.append(config | {metric: best, "epochs": epochs,
                              "status": "error" if error else status, "error": error,
                              "trial": Path(result.path).name})  # fmt: skip
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
    base: SVIConfig | CalciumConfig | None = None,
    fluorescence=None,
    num_samples: int = 8,
    max_epochs: int = 10,
    metric: str | None = None,
    scheduler: str = "asha",
    grace_period: int = 1,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    storage_path: str | os.PathLike | None = None,
    start: Sequence[Mapping] = (),
    seed: int = 0,
    progress: bool = True,
) -> TuneResult:
    """Search the settings of LFADS or of the calcium ladder on ``data`` with Ray Tune; return
    the best fit and every trial.

    ``base`` sets the model kind and the settings a trial starts from: an
    :class:`~pyro_circuits.catalog.SVIConfig` such as ``LFADS_CONFIGS["lorenz"]`` (LFADS on
    ``data``'s counts; default: the package's defaults), or a
    :class:`~pyro_circuits.catalog.CalciumConfig` such as ``CALCIUM_CONFIGS["lorenz"]`` (the
    ladder on ``fluorescence``, a tensor of ``data``'s shape); a base's data recipe is not used.
    Each of ``num_samples`` trials draws its settings from ``space`` (keys from
    :func:`search_keys` of the kind; values Ray Tune domains such as ``tune.loguniform``, or
    fixed values; default :func:`default_space`), trains for at most ``max_epochs`` epochs
    (:func:`train_config`) with 1 CPU and 1 torch thread, and reports ``metric`` (one of the
    kind's :data:`METRICS`, :func:`score`, maximised; default ``co_bps`` for LFADS, ``elbo``
    for the ladder) after every epoch. ``scheduler``: ``asha`` (trials stopped at rungs from
    ``grace_period`` epochs on), ``pbt`` (synchronous population-based training: the
    ``num_samples`` trials are one population whose members take turns on the CPUs; every
    ``grace_period`` epochs, once all have reached it, the worst quarter continue the best
    quarter's checkpoints with mutated settings; sizes are never mutated; every checkpoint is
    kept, and the table shows each trial's last settings) or ``fifo``. The random search is
    seeded with ``seed``, and every trial trains with it; ``start``: settings the first trials
    take (each a dict of some of the space's keys, the rest drawn), such as the values the
    search should improve on.

    Ray: the running instance, else the cluster of ``RAY_ADDRESS``, else a local one of
    ``num_cpus`` CPUs (default all), shut down at the end; at most ``max_concurrent`` trials at
    once (default: the cluster's CPUs; not with ``pbt``). Ray Tune's results go to
    ``storage_path``, or to a temporary folder removed at the end. ``progress``: a bar of
    finished trials.

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
    kind = tune_models.kind_of(base)
    name_in("scheduler", scheduler, SCHEDULERS)
    require_positive_ints(num_samples=num_samples, max_epochs=max_epochs, grace_period=grace_period)
    seed = seed_int("seed", seed)
    _check_concurrency(num_cpus, max_concurrent, scheduler)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    ray, ray_tune = _ray()
    metric, fluorescence = tune_models.check_inputs(kind, data, metric, fluorescence)
    space = _check_keys("space", default_space() if space is None else space, kind)
    start = _check_start(start, space, num_samples, kind)
    schedule = _scheduler(scheduler, space, max_epochs, grace_period, ray_tune)
    temporary = storage_path is None
    folder = Path(tempfile.mkdtemp(prefix="pyro-circuits-tune-") if temporary else storage_path)
    trial = dict(data=data, fluorescence=fluorescence, base=base, metric=metric,
                 max_epochs=max_epochs, seed=seed)  # fmt: skip
    try:
        with _Started(ray, num_cpus) as cpus, _quiet_snapshots():
            live = num_samples if scheduler == "pbt" else min(max_concurrent or cpus, cpus)
            search = ray_tune.search.BasicVariantGenerator(
                points_to_evaluate=start or None, max_concurrent=live, random_state=seed
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
        # stopped at the last epoch's report, so that no schedule acts on it
        run_config=ray_tune.RunConfig(storage_path=str(folder.resolve()), verbose=0,
                                      stop={"epoch": trial["max_epochs"]},
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

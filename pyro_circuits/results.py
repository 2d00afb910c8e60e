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

import contextlib
import functools
import hashlib
import importlib
import inspect
import os
import pickle
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import arviz as az
import pandas as pd
import torch

from pyro_circuits.checks import int_in_range, positive_int, seed_int
from pyro_circuits.diagnostics import CHAINS, inference_data
from pyro_circuits.property import EmergentProperty, constraint_table
from pyro_circuits.sites import CircuitProgram

__all__ = ["InferenceResult", "Saved", "TrialPosterior", "atomic_save", "model_origin"]

#: Columns of :meth:`InferenceResult.convergence_trace`.
TRACE_COLUMNS = ["simulations", "wall_time", "distance"]
#: Draws per run of the model when a result simulates draws of its own: a simulator that draws
#: its noise up front for every step and trial holds it for the whole batch.
SIMULATION_CHUNK = 1000


def stray_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files an interrupted :func:`atomic_save` of ``path`` left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    legacy = [path.with_name(path.name + ".part"), path.with_suffix(".tmp")]
    return [*path.parent.glob(f".{path.name}.*.tmp"), *(p for p in legacy if p.is_file())]


def atomic_save(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(temporary)`` fills a temporary file in the same folder,
    which is flushed to disk (fsync) and renamed over ``path``; the folder entry is fsynced too.
    A write that fails or is killed half-way leaves the previous ``path`` intact; the temporary
    file is removed on failure, and stray ones of an earlier killed write are removed first.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> atomic_save(folder / "a.txt", lambda tmp: tmp.write_text("hello")).read_text()
        'hello'
        >>> atomic_save(folder / "a.txt", lambda tmp: 1 / 0)
        Traceback (most recent call last):
        ...
        ZeroDivisionError: division by zero
        >>> sorted(p.name for p in folder.iterdir()), (folder / "a.txt").read_text()
        (['a.txt'], 'hello')
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stray in stray_temporaries(path):
        stray.unlink(missing_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    partial = Path(name)
    try:
        write(partial)
        with open(partial, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def model_origin(model) -> dict:
    """Where ``model`` (a function, a class or an instance of one) is imported from and a hash of
    its source: ``{"path": "module:qualname", "source_hash": ...}``. A ValueError when it could
    not be imported again by another script (defined in ``__main__``, a lambda, a closure).

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> model_origin(LDS2D())["path"]
        'pyro_circuits.models.lds2d:LDS2D'
        >>> model_origin(lambda: None)
        Traceback (most recent call last):
        ...
        ValueError: the model <lambda> cannot be imported again (...); define it at the top level of an importable module to save a result of it
    """
    target = _origin_object(model)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", type(target).__qualname__)
    if module is None or module == "__main__" or "<" in qualname:
        where = "a lambda or closure" if "<" in qualname else f"defined in {module}"
        raise ValueError(
            f"the model {qualname} cannot be imported again ({where}); define it at the top level "
            "of an importable module to save a result of it"
        )
    return {"path": f"{module}:{qualname}", "source_hash": _source_hash(target)}


def _origin_object(model):
    while isinstance(model, functools.partial):
        model = model.func
    if inspect.isfunction(model) or inspect.isclass(model) or inspect.ismethod(model):
        return model
    return type(model)


def _source_hash(target) -> str | None:
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _check_origin(origin: dict, path) -> None:
    """Warn when the model a result was saved with is no longer importable or has changed."""
    module, _, qualname = origin["path"].partition(":")
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        warnings.warn(
            f"{path} was saved with the model {origin['path']}, which no longer imports ({error})",
            stacklevel=3,
        )
        return
    if origin["source_hash"] is not None and _source_hash(target) != origin["source_hash"]:
        warnings.warn(
            f"the code of the model {origin['path']} changed since {path} was saved; its "
            "figures (check(), predictive draws) may differ from those of the saved run",
            stacklevel=3,
        )


class Saved:
    """:meth:`save` pickles the whole object atomically (:func:`atomic_save`) with the import
    path and a source hash of its model (:func:`model_origin`); :meth:`load` returns it,
    type-checked, and warns when the model's code changed since.

    The object's model must therefore be importable: a module-level function or class (such as
    the built-in models); saving a result of a model defined in ``__main__``, a lambda or a
    closure is a ValueError at save time.
    """

    def saved_model(self):
        """The model whose origin a save records (``program.model`` or ``model``), or None."""
        program = getattr(self, "program", None)
        if program is not None:
            return program.model
        return getattr(self, "model", None)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the object to ``path`` (through a temporary file, so a crash leaves no half file)."""
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        model = self.saved_model()
        self._origin = None if model is None else model_origin(model)
        return atomic_save(path, lambda partial: torch.save(self, partial))

    @classmethod
    def load(cls, path: str | os.PathLike):
        """The object saved at ``path``; a TypeError when it is not a ``cls``, a ValueError when
        the file is not a readable saved result (garbage or truncated); a warning when the
        model's code changed since it was saved."""
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no saved result at {path}")
        try:
            result = torch.load(path, weights_only=False)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"{path} is not a readable saved result (truncated or not a result file): {error}"
            ) from None
        if not isinstance(result, cls):
            raise TypeError(f"{path} holds a {type(result).__name__}, not a {cls.__name__}")
        origin = getattr(result, "_origin", None)
        if origin is not None:
            _check_origin(origin, path)
        return result


class InferenceResult(Saved, ABC):
    """Draws of circuit parameters from a fitted method, with one interface for every method.

    Subclasses set ``program``, ``prop``, ``wall_time``, ``simulations``, ``converged`` and
    ``method``, and implement :meth:`sample`, :meth:`convergence_trace` and the draws
    :meth:`to_inference_data` is built from; :meth:`log_prob` and :meth:`entropy` where the
    method has a density.
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
    def _posterior_draws(self, n: int, seed: int | None) -> tuple[dict, dict, dict]:
        """``n`` seeded draws ``{site: (n, *shape)}`` for :meth:`to_inference_data`, in the order
        its pseudo-chains take them, with their per-draw ``sample_stats`` and the method's
        ``attrs``."""

    def to_inference_data(
        self, n: int = 2000, seed: int | None = 0, *, prior: bool = True
    ) -> az.InferenceData:
        """ArviZ InferenceData of ``n`` draws (:func:`pyro_circuits.diagnostics.inference_data`):
        ``posterior``, ``posterior_predictive`` (the property's statistics at those draws),
        ``sample_stats``, ``observed_data`` and ``constant_data`` (the property), and with
        ``prior`` ``n`` draws of the model's prior and their statistics (:meth:`prior_predictive`,
        ``n`` more simulations). The groups and their caveats are listed in
        ``docs/diagnostics.md``."""
        n = int_in_range("n", n, CHAINS)  # one draw per pseudo-chain at least
        if seed is not None:
            seed = seed_int("seed", seed)
        if not isinstance(prior, bool):
            raise TypeError(f"prior must be True or False, got {prior!r}")
        draws, sample_stats, attrs = self._posterior_draws(n, seed)
        with torch.no_grad():
            stats = self.program.simulate(draws, chunk=SIMULATION_CHUNK)
        prior_draws, prior_stats = self.prior_predictive(n) if prior else ({}, {})
        return inference_data(
            draws,
            predictive={k: stats[k] for k in self.prop.names},
            sample_stats=sample_stats,
            prior=prior_draws,
            prior_predictive={k: prior_stats[k] for k in self.prop.names if prior},
            prop=self.prop,
            attrs={
                "method": self.method,
                "wall_time": self.wall_time,
                "simulations": self.simulations,
                **attrs,
            },
        )

    @torch.no_grad()
    def prior_predictive(
        self, n: int, seed: int | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``n`` draws ``{site: (n, *shape)}`` of the model's prior and the statistics of the
        model run on them; a statistic the simulator returns as NaN or inf is kept as it is
        (the prior may reach where the fitted distribution does not)."""
        n = positive_int("n", n)
        if seed is not None:
            torch.manual_seed(seed_int("seed", seed))
        draws = {name: prior.sample((n,)) for name, prior in self.program.priors.items()}
        return draws, self.program.simulate(draws, check=False, chunk=SIMULATION_CHUNK)

    def log_prob(self, z) -> torch.Tensor:
        """Log density of parameter draws, where the method has one."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable density")

    def entropy(self) -> float | None:
        """The entropy of the distribution in nats, or None where the method has no density."""
        return None

    @torch.no_grad()
    def predictive(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Statistics ``{site: (n, *shape)}`` of the model run on ``n`` fresh parameter draws."""
        return self.program.simulate(self.sample(n, seed), chunk=SIMULATION_CHUNK)

    @torch.no_grad()
    def check(
        self, batches: int = 200, batch_size: int = 500, alpha: float = 0.05, seed: int | None = 0
    ) -> pd.DataFrame:
        """The constraint table (:func:`~pyro_circuits.property.constraint_table`): target vs
        achieved mean, the target variance vs the achieved second moment about the target mean
        (what the property constrains) with the sample variance beside it, test p-values, and
        the verdict.

        Runs EPI's moment test (Bittner et al. 2021) on ``batches`` fresh batches of
        ``batch_size`` draws, so every method gets the same verdict on the property.
        """
        stats = self.predictive(batches * batch_size, seed)
        return constraint_table(stats, self.prop, batches, alpha)


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
        has a likelihood, its log-likelihood (per trial for SVI fits, per bin for the point
        baselines)."""

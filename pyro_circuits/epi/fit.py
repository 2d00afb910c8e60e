"""Fitting the EPI distribution: Gaussian initialisation and the augmented-Lagrangian loop."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import pyro
import torch
from torch.distributions import Normal
from tqdm.auto import tqdm

from pyro_circuits.checks import require_positive_ints
from pyro_circuits.epi.flow import FlowConfig
from pyro_circuits.epi.guide import EPIGuide
from pyro_circuits.epi.loss import ConstraintTest, EPILoss
from pyro_circuits.epi.result import EPIResult
from pyro_circuits.property import EmergentProperty
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = ["EPIConfig", "epi", "epi_loss", "initial_gaussian"]


@dataclass(frozen=True)
class EPIConfig:
    """Hyper-parameters of the augmented-Lagrangian optimisation.

    Defaults follow the final defaults of the reference ``Model.epi`` (K = 10 epochs of 1000
    Adam steps, batch N = 500, lr 1e-3, c0 = 1, β = 4, γ = 0.25, α = 0.05, M = 200 test batches of
    N samples) except ``init_iterations`` (the paper uses 10,000; 1,000 suffice for the
    isotropic starting point on the built-in models).

    Attributes:
        batch_size: parameter draws per Adam step (N); split in halves for the unbiased penalty
            gradient.
        epochs: augmented-Lagrangian epochs (K).
        iterations: Adam steps per epoch.
        lr: Adam learning rate (one optimiser across epochs, as the reference code does).
        c0, beta, gamma: initial penalty, its growth factor, and the required reduction of ‖R‖².
        alpha: level of the convergence test (Bonferroni-divided by the number of constraints).
        test_batches, test_batch_size: M batches of N_test draws for the end-of-epoch test and
            penalty update (``test_batch_size=None`` means N).
        init_iterations, init_lr: Adam steps and rate of the Gaussian initialisation.
        stop_early: stop at the first converged epoch.
        standardize: measure each constraint violation in units of its target scale (σ for a
            mean, σ² for a variance) so that one penalty c suits all constraints; the paper uses
            raw units (``standardize=False``). The convergence test is unaffected (sign test).
        log_every: record a row of the optimisation trace every this many steps.
        chunk: largest number of draws simulated in one call during tests.
    """

    batch_size: int = 500
    epochs: int = 10
    iterations: int = 1000
    lr: float = 1e-3
    c0: float = 1.0
    beta: float = 4.0
    gamma: float = 0.25
    alpha: float = 0.05
    test_batches: int = 200
    test_batch_size: int | None = None
    init_iterations: int = 1000
    init_lr: float = 1e-3
    stop_early: bool = False
    standardize: bool = True
    log_every: int = 50
    chunk: int = 20_000

    def __post_init__(self) -> None:
        names = ("epochs", "iterations", "test_batches", "log_every", "chunk")
        require_positive_ints(**{f"EPIConfig.{name}": getattr(self, name) for name in names})
        if not isinstance(self.batch_size, int) or self.batch_size < 4 or self.batch_size % 2:
            raise ValueError(
                f"EPIConfig.batch_size must be an even integer >= 4, got {self.batch_size!r}"
            )
        if self.init_iterations < 0:
            raise ValueError(f"EPIConfig.init_iterations must be >= 0, got {self.init_iterations}")
        for name in ("lr", "c0", "init_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EPIConfig.{name} must be positive, got {getattr(self, name)}")
        if self.beta <= 1 or not 0 < self.gamma < 1 or not 0 < self.alpha < 1:
            raise ValueError("EPIConfig needs beta > 1, 0 < gamma < 1 and 0 < alpha < 1")

    @property
    def n_test(self) -> int:
        return self.test_batch_size or self.batch_size


def initial_gaussian(space: ParameterSpace) -> Normal:
    """The isotropic starting Gaussian of the reference, per coordinate from the support bounds.

    Both bounds: mean (lb + ub)/2, std (ub − lb)/4; lower only: lb + 2, 1; upper only: ub − 2, 1;
    unbounded: 0, 1.
    """
    low, high = space.bounds()
    both, lower_only, upper_only = low.isfinite() & high.isfinite(), low.isfinite(), high.isfinite()
    mean = torch.where(
        both,
        (low + high) / 2,
        torch.where(lower_only, low + 2, torch.where(upper_only, high - 2, 0.0)),
    )
    std = torch.where(both, (high - low) / 4, torch.ones_like(low))
    return Normal(mean, std)


def _fit_gaussian(guide: EPIGuide, target: Normal, config: EPIConfig, bar: tqdm) -> None:
    """Minimise KL(q ‖ target) (reverse KL), the reference's initialisation."""
    if not config.init_iterations:
        return
    optimizer = torch.optim.Adam(guide.parameters(), lr=config.init_lr)
    for _ in range(config.init_iterations):
        theta, log_q = guide.rsample_and_log_prob(config.batch_size)
        loss = (log_q - target.log_prob(theta).sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.update()
    bar.set_postfix(init_kl=f"{loss.item():.3f}")


def epi_loss(prop: EmergentProperty, config: EPIConfig, seed: int | None = None) -> EPILoss:
    """The :class:`EPILoss` with the penalty schedule and test of an :class:`EPIConfig`."""
    return EPILoss(
        prop,
        num_particles=config.batch_size,
        c0=config.c0,
        beta=config.beta,
        gamma=config.gamma,
        alpha=config.alpha,
        test_batches=config.test_batches,
        test_batch_size=config.n_test,
        standardize=config.standardize,
        chunk=config.chunk,
        seed=seed,
    )


def epi(
    model: Callable,
    prop: EmergentProperty,
    *,
    params: Sequence[str] | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    flow: FlowConfig | None = None,
    config: EPIConfig | None = None,
    init: Normal | None = None,
    seed: int | Sequence[int] = 0,
    progress: bool = True,
) -> EPIResult:
    """Emergent property inference: the maximum-entropy distribution of circuit parameters
    whose statistics have the property's means and variances (Bittner et al., eLife 2021).

    Maximises H(q) subject to E_q[T(z)] = μ_opt with the augmented Lagrangian
    −H + ηᵀR + c/2‖R‖², an unbiased penalty gradient from two half-batches, η ← η + cR and
    c ← βc (Welch test) after each epoch. This trains an :class:`EPIGuide` with
    :class:`EPILoss` on the paper's schedule (Gaussian initialisation, then epochs of Adam steps
    each ending in the convergence test); ``result.guide`` is the trained guide. Returns the
    converged epoch of greatest entropy; with several ``seed`` values, the converged run of
    greatest entropy.

    Arguments:
        model: a circuit model (Pyro program) following the model contract.
        prop: the emergent property.
        params: parameter sites; default every global latent non-noise sample site.
        model_args, model_kwargs: fixed arguments of the model.
        flow: flow architecture; default :class:`FlowConfig`.
        config: optimisation hyper-parameters; default :class:`EPIConfig`.
        init: the Gaussian over the parameters (in ``params`` order) that q is first fitted to;
            default :func:`initial_gaussian`. The paper starts its STG run at the mean of
            parameters accepted by rejection sampling, with unit variances.
        seed: random seed, or several seeds to run and select from.
        progress: show a tqdm progress bar.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> tiny = EPIConfig(batch_size=50, epochs=1, iterations=5, test_batches=20, init_iterations=5)
        >>> result = epi(LDS2D(), LDS2D.oscillation(), config=tiny, progress=False)
        >>> result.sample(3)["a11"].shape
        torch.Size([3])
    """
    flow = flow or FlowConfig()
    config = config or EPIConfig()
    if not isinstance(prop, EmergentProperty):
        raise TypeError(f"prop must be an EmergentProperty, got {type(prop).__name__}")
    program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
    program.require_statistics()
    prop.validate(program.statistic_shapes)
    seeds = [seed] if isinstance(seed, int) else list(seed)
    if not seeds:
        raise ValueError("seed must be an integer or a non-empty sequence of integers")
    space = ParameterSpace(program.priors)
    init = initial_gaussian(space) if init is None else init
    if init.batch_shape != (space.dim,):
        raise ValueError(
            f"init must be a Normal of batch shape ({space.dim},), one per parameter in "
            f"{program.params}; got batch shape {tuple(init.batch_shape)}"
        )
    results = [_fit(program, prop, flow, config, init, s, progress) for s in seeds]
    best = max(results, key=lambda r: (r.converged, r.selected_entropy))
    best.restarts = pd.DataFrame(
        [
            {
                "seed": r.seed,
                "converged": r.converged,
                "entropy": r.selected_entropy,
                "epoch": r.epoch,
            }
            for r in results
        ]
    )
    return best


def _fit(
    program: CircuitProgram,
    prop: EmergentProperty,
    flow_config: FlowConfig,
    config: EPIConfig,
    init: Normal,
    seed: int,
    progress: bool,
) -> EPIResult:
    """One seeded EPI run: initialisation, then epochs of Adam steps and end-of-epoch tests."""
    pyro.set_rng_seed(seed)
    guide = EPIGuide(program, flow=flow_config, generator=torch.Generator().manual_seed(seed))
    loss = epi_loss(prop, config, seed)
    record = _Record(prop)
    total = config.init_iterations + config.epochs * config.iterations
    with tqdm(total=total, desc="EPI", disable=not progress, leave=False) as bar:
        _fit_gaussian(guide, init, config, bar)
        test = loss.test(guide.model, guide)
        record.add_epoch(0, 0, test, loss)
        loss.update(test)
        optimizer = torch.optim.Adam(guide.parameters(), lr=config.lr)
        for epoch in range(1, config.epochs + 1):
            _train_epoch(guide, loss, optimizer, epoch, config, record, bar)
            test = loss.test(guide.model, guide)
            record.add_epoch(epoch, epoch * config.iterations, test, loss)
            bar.set_postfix(
                epoch=epoch,
                H=f"{test.entropy:.2f}",
                R2=f"{test.norms.mean():.3g}",
                c=f"{loss.c:.3g}",
                ok=test.moment.converged,
            )
            if record.keep_if_best(guide, test, epoch) and config.stop_early:
                break
            loss.update(test)
    return record.result(guide, seed, {"flow": asdict(flow_config), "config": asdict(config)})


def _train_epoch(
    guide: EPIGuide,
    loss: EPILoss,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    config: EPIConfig,
    record: _Record,
    bar: tqdm,
) -> None:
    """``config.iterations`` Adam steps on the augmented Lagrangian, logging every few."""
    for step in range(config.iterations):
        value = loss(guide.model, guide)
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"EPI loss became {value.item()} at epoch {epoch}, step {step}"
            )
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        record.simulations += config.batch_size
        bar.update()
        if step % config.log_every == 0:
            record.add_step(epoch, step, -loss.neg_entropy.item(), value.item(), loss.residual)


class _Record:
    """The record of one run: a row per epoch and per logged step, and the best converged state."""

    def __init__(self, prop: EmergentProperty) -> None:
        self.prop = prop
        self.history: list[dict] = []
        self.trace: list[dict] = []
        self.best_state, self.best_entropy, self.best_epoch = None, -float("inf"), None
        self.start, self.simulations = time.perf_counter(), 0

    def add_step(
        self, epoch: int, step: int, entropy: float, loss: float, residual: torch.Tensor
    ) -> None:
        row = {
            "epoch": epoch,
            "step": step,
            "simulations": self.simulations,
            "entropy": entropy,
            "loss": loss,
        }
        names = self.prop.constraint_names
        row.update({f"R {name}": v for name, v in zip(names, residual.tolist(), strict=True)})
        self.trace.append(row)

    def add_epoch(self, epoch: int, iteration: int, test: ConstraintTest, loss: EPILoss) -> None:
        """A history row with the multipliers and penalty the epoch was trained under."""
        moment = test.moment
        row = {
            "epoch": epoch,
            "iteration": iteration,
            "simulations": self.simulations,
            "wall_time": time.perf_counter() - self.start,
            "entropy": test.entropy,
            "R_norm2": float((moment.mean_violation**2).sum()),
            "converged": moment.converged,
            "c": loss.c,
        }
        for i, name in enumerate(self.prop.constraint_names):
            row[f"R {name}"] = float(moment.mean_violation[i])
            row[f"p {name}"] = float(moment.p_values[i])
            row[f"eta {name}"] = float(loss.eta[i])
        self.history.append(row)

    def keep_if_best(self, guide: EPIGuide, test: ConstraintTest, epoch: int) -> bool:
        """Keep the guide's state when the epoch converged with the greatest entropy so far."""
        if not (test.moment.converged and test.entropy > self.best_entropy):
            return False
        self.best_state = copy.deepcopy(guide.state_dict())
        self.best_entropy, self.best_epoch = test.entropy, epoch
        return True

    def result(self, guide: EPIGuide, seed: int, settings: dict) -> EPIResult:
        """The guide at the best converged epoch (else the last) and the run's record."""
        converged = self.best_state is not None
        if converged:
            guide.load_state_dict(self.best_state)
            epoch, entropy = self.best_epoch, self.best_entropy
        else:
            epoch, entropy = self.history[-1]["epoch"], self.history[-1]["entropy"]
        return EPIResult(
            guide=guide,
            prop=self.prop,
            converged=converged,
            epoch=epoch,
            selected_entropy=entropy,
            history=pd.DataFrame(self.history),
            trace=pd.DataFrame(self.trace),
            wall_time=time.perf_counter() - self.start,
            simulations=self.simulations,
            seed=seed,
            settings=settings,
        )

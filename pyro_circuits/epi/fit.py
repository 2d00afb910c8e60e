"""Fitting the EPI distribution: Gaussian initialisation and the augmented-Lagrangian loop."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import pyro
import torch
from torch.distributions import Normal
from tqdm.auto import tqdm

from pyro_circuits.checks import (
    int_in_range,
    nonnegative_int,
    on_device,
    positive_float,
    positive_int,
    probability,
    real,
    require_positive_ints,
    seed_int,
    torch_device,
)
from pyro_circuits.epi.attainable import warn_unreachable
from pyro_circuits.epi.flow import FlowConfig
from pyro_circuits.epi.guide import EPIGuide
from pyro_circuits.epi.loss import ConstraintTest, EPILoss
from pyro_circuits.epi.result import EPIResult
from pyro_circuits.parallel import check_executor, check_picklable, parallel_map
from pyro_circuits.property import EmergentProperty, check_fit_arguments
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace
from pyro_circuits.threads import thread_count, torch_threads

__all__ = ["EPIConfig", "epi", "epi_loss", "initial_gaussian"]

#: Mixed into the seed of a converged epoch's re-test on fresh draws, a stream of its own.
FRESH_STREAM = 0x51


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
        max_penalty: the penalty grows no further than this; None (the default, as the paper):
            without limit.
        alpha: level of the convergence test (Bonferroni-divided by the number of constraints).
        test_batches, test_batch_size: M batches of N_test draws for the end-of-epoch test and
            penalty update (``test_batch_size=None`` means N).
        init_iterations, init_lr: Adam steps and rate of the Gaussian initialisation.
        stop_early: stop at the first epoch that passes its test and the re-test on fresh draws.
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
    max_penalty: float | None = None
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
        names = ("epochs", "iterations", "log_every", "chunk")
        require_positive_ints(**{f"EPIConfig.{name}": getattr(self, name) for name in names})
        # One test batch gives a p-value of 0 whatever the draws: the test could never pass.
        int_in_range("EPIConfig.test_batches", self.test_batches, 2)
        if self.test_batch_size is not None:
            positive_int("EPIConfig.test_batch_size", self.test_batch_size)
        batch = int_in_range("EPIConfig.batch_size", self.batch_size, 4)
        if batch % 2:
            raise ValueError(f"EPIConfig.batch_size must be an even integer >= 4, got {batch!r}")
        nonnegative_int("EPIConfig.init_iterations", self.init_iterations)
        for name in ("lr", "c0", "init_lr"):
            positive_float(f"EPIConfig.{name}", getattr(self, name))
        real("EPIConfig.beta", self.beta, low=1.0, low_open=True)
        probability("EPIConfig.gamma", self.gamma, low_open=True, high_open=True)
        if self.max_penalty is not None:
            real("EPIConfig.max_penalty", self.max_penalty, low=self.c0)
        probability("EPIConfig.alpha", self.alpha, low_open=True, high_open=True)
        for name in ("stop_early", "standardize"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"EPIConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )

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
    """Minimise KL(q ‖ target) (reverse KL), the reference's initialisation; a non-finite loss
    or gradient is a FloatingPointError naming the step."""
    if not config.init_iterations:
        return
    optimizer = torch.optim.Adam(guide.parameters(), lr=config.init_lr)
    for step in range(config.init_iterations):
        theta, log_q = guide.rsample_and_log_prob(config.batch_size)
        loss = (log_q - target.log_prob(theta).sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in guide.parameters() if p.grad is not None]
        if not (torch.isfinite(loss) and torch.isfinite(torch.nn.utils.get_total_norm(grads))):
            raise FloatingPointError(
                f"EPI's Gaussian initialisation: the loss ({loss.item()}) or its gradient is not "
                f"finite at step {step}; check init, or lower EPIConfig.init_lr"
            )
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
        max_penalty=config.max_penalty,
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
    executor: Executor | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> EPIResult:
    """Emergent property inference: the maximum-entropy distribution of circuit parameters
    whose statistics have the property's means and variances (Bittner et al., eLife 2021).

    Maximises H(q) subject to E_q[T(z)] = μ_opt with the augmented Lagrangian
    −H + ηᵀR + c/2‖R‖², an unbiased penalty gradient from two half-batches, η ← η + cR and
    c ← βc (Welch test) after each epoch. This trains an :class:`EPIGuide` with
    :class:`EPILoss` on the paper's schedule (Gaussian initialisation, then epochs of Adam steps
    each ending in the convergence test); ``result.guide`` is the trained guide. Returns the
    converged epoch of greatest entropy (epoch 0, the fitted start, competes too: when the
    optimisation only narrows a start that already has the property, the start is returned;
    ``stop_early`` acts from epoch 1); with several ``seed`` values, the converged run of
    greatest entropy.

    Before optimising, a target that prior and initialisation draws never come near is named in
    an :class:`~pyro_circuits.epi.attainable.UnreachablePropertyWarning`; the selected epoch is
    re-tested on fresh draws, and only an epoch that passes twice counts as converged.

    Every argument is checked before any work. A non-finite loss or gradient (the flow's
    parameters named), non-finite flow parameters after an epoch, or the model's linear algebra
    failing on the draws stops a run with a warning: its flow returns to the last tested epoch,
    ``result.stopped`` says why, and the result keeps its verdict (``converged``, ``check()``).

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
        executor: where the seeds run: None (one after the other, here) or any
            ``concurrent.futures.Executor`` (:mod:`pyro_circuits.parallel`), which runs them in
            parallel with the same results per seed; the model must then be picklable.
        progress: show a tqdm progress bar (with an executor: of the seeds done).
        device: where each run trains (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
            ``torch.device``; on an executor, each worker's run): the flow, the model's
            simulations and the loss all run there, the model resolved under
            ``with torch.device(device)`` (see ``docs/scaling.md``); the result is returned on
            the CPU. Checked first: ``cuda`` without CUDA is a ValueError. The CUDA path has
            not yet been run on a GPU.
        threads: torch intra-op threads of each run (on an executor, in each worker), restored
            after it; default one, as fast as more on an idle machine for the flow's small
            tensors and much faster when other work shares the cores (:mod:`pyro_circuits.threads`);
            None keeps torch's setting.

    Example:
        >>> from pyro_circuits.models import LDS2D
        >>> tiny = EPIConfig(batch_size=50, epochs=1, iterations=5, test_batches=20, init_iterations=5)
        >>> result = epi(LDS2D(), LDS2D.oscillation(), config=tiny, progress=False)
        >>> result.sample(3)["a11"].shape
        torch.Size([3])
    """
    flow = FlowConfig() if flow is None else flow
    config = EPIConfig() if config is None else config
    _check_epi_arguments(
        model, prop, params, model_args, model_kwargs, flow, config, init, progress
    )
    device = torch_device("device", device)
    threads = thread_count("threads", threads)
    seeds = _seeds(seed)
    check_executor(executor)
    program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
    program.require_statistics()
    prop.validate(program.statistic_shapes)
    integer = [n for n in prop.names if not program.statistic_dtypes[n].is_floating_point]
    if integer:
        raise ValueError(
            f"the statistics {integer} are not floating-point tensors "
            f"({[str(program.statistic_dtypes[n]) for n in integer]}): EPI needs their gradient "
            "with respect to the parameters; compute them in floating point"
        )
    space = ParameterSpace(program.priors)
    init = initial_gaussian(space) if init is None else init
    if init.batch_shape != (space.dim,):
        raise ValueError(
            f"init must be a Normal of batch shape ({space.dim},), one per parameter in "
            f"{program.params}; got batch shape {tuple(init.batch_shape)}"
        )
    check_picklable("the model", program, executor)
    warn_unreachable(program, prop, init, seed=seeds[0])  # warns on targets out of reach
    local = progress and executor is None
    fit = partial(
        _fit, program, prop, flow, config, init, progress=local, device=device, threads=threads
    )
    results = parallel_map(
        fit, seeds, executor=executor, desc="EPI seeds", progress=progress and executor is not None
    )
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


def _seeds(seed) -> list[int]:
    """``seed`` (an integer or a non-empty sequence of them) as a list of seeds."""
    if isinstance(seed, str | bytes) or not isinstance(seed, int | Sequence | np.integer):
        raise TypeError(f"seed must be an integer or a sequence of integers, got {seed!r}")
    seeds = [seed] if not isinstance(seed, Sequence) else list(seed)
    if not seeds:
        raise ValueError("seed must be an integer or a non-empty sequence of integers")
    return [seed_int("seed", s) for s in seeds]


def _check_epi_arguments(
    model, prop, params, model_args, model_kwargs, flow, config, init, progress
):
    """The checks :func:`epi` makes before any work."""
    check_fit_arguments(model, prop, params, model_args, model_kwargs)
    if not isinstance(flow, FlowConfig):
        raise TypeError(f"flow must be a FlowConfig, got {type(flow).__name__}")
    if not isinstance(config, EPIConfig):
        raise TypeError(f"config must be an EPIConfig, got {type(config).__name__}")
    if init is not None and not isinstance(init, Normal):
        raise TypeError(f"init must be a torch.distributions.Normal, got {type(init).__name__}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")


class _NonFinite(FloatingPointError):
    """A non-finite loss or gradient: the epoch stops before the optimiser step."""


def _fit(
    program: CircuitProgram,
    prop: EmergentProperty,
    flow_config: FlowConfig,
    config: EPIConfig,
    init: Normal,
    seed: int,
    progress: bool,
    device: torch.device,
    threads: int | None,
) -> EPIResult:
    """One seeded EPI run: initialisation, then epochs of Adam steps and end-of-epoch tests,
    on ``device`` (the default device of the run, where the guide is moved and the model
    runs) with ``threads`` torch threads; its result is on the CPU, bound to ``program``."""
    init = Normal(init.loc.to(device), init.scale.to(device))
    # pyro.param values stay in the scope; the thread count is restored after the run
    with pyro.get_param_store().scope(), on_device(device), torch_threads(threads):
        result = _fit_in_scope(program, prop, flow_config, config, init, seed, progress)
    if device.type != "cpu":
        result.guide.to_device("cpu", program)
    return result


def _guide(program: CircuitProgram, flow_config: FlowConfig, seed: int) -> EPIGuide:
    """The run's guide: its flow initialised on the CPU from the global random state and
    ``seed`` (the same start on every device), then moved to torch's default device (the run's
    device) with the model resolved there."""
    device = torch.get_default_device()
    with torch.device("cpu"):
        guide = EPIGuide(program, flow=flow_config, generator=torch.Generator().manual_seed(seed))
    return guide if device.type == "cpu" else guide.to_device(device)


def _fit_in_scope(program, prop, flow_config, config, init, seed, progress) -> EPIResult:
    pyro.set_rng_seed(seed)
    guide = _guide(program, flow_config, seed)
    loss = epi_loss(prop, config, seed)
    record = _Record(prop, seed)
    total = config.init_iterations + config.epochs * config.iterations
    with tqdm(total=total, desc="EPI", disable=not progress, leave=False) as bar:
        _fit_gaussian(guide, init, config, bar)
        test = loss.test(guide.model, guide)
        record.add_epoch(0, 0, test, loss)
        if test.entropy_note is not None:
            warnings.warn(f"EPI epoch 0: {test.entropy_note}", stacklevel=3)
        record.keep_if_converged(guide, test, 0)  # a feasible start competes on entropy too
        loss.update(test)
        optimizer = torch.optim.Adam(guide.parameters(), lr=config.lr)
        record.keep_last(guide)
        for epoch in range(1, config.epochs + 1):
            try:
                _train_epoch(guide, loss, optimizer, epoch, config, record, bar)
                test = loss.test(guide.model, guide)
            except _NonFinite as error:
                record.stop(guide, str(error))
                break
            except torch.linalg.LinAlgError as error:  # the model's algebra on extreme draws
                record.stop(guide, f"the model's linear algebra failed in epoch {epoch}: {error}")
                break
            record.add_epoch(epoch, epoch * config.iterations, test, loss)
            if test.entropy_note is not None:
                warnings.warn(f"EPI epoch {epoch}: {test.entropy_note}", stacklevel=3)
            bar.set_postfix(
                epoch=epoch,
                H=f"{test.entropy:.2f}",
                R2=f"{test.norms.mean():.3g}",
                c=f"{loss.c:.3g}",
                ok=test.moment.converged,
            )
            if not _all_finite(guide.parameters()):
                record.stop(guide, f"the flow's parameters became non-finite in epoch {epoch}")
                break
            record.keep_last(guide)
            if record.keep_if_converged(guide, test, epoch) and config.stop_early:
                if record.retest(guide, loss, epoch):  # stop once fresh draws agree
                    break
            loss.update(test)
    return record.result(guide, loss, {"flow": asdict(flow_config), "config": asdict(config)})


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
            raise _NonFinite(f"the EPI loss became {value.item()} at epoch {epoch}, step {step}")
        optimizer.zero_grad()
        value.backward()
        grads = [p.grad for p in guide.parameters() if p.grad is not None]
        if not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            bad = [n for n, p in guide.named_parameters() if not _all_finite([p.grad])]
            what = (
                f"the gradient of the flow's parameters {bad} became non-finite"
                if bad
                else "the norm of the flow's gradient overflowed (every entry finite)"
            )
            raise _NonFinite(
                f"{what} at epoch {epoch}, step {step} (the loss was {value.item():.4g})"
            )
        optimizer.step()
        record.simulations += config.batch_size
        bar.update()
        if step % config.log_every == 0:
            record.add_step(epoch, step, -loss.neg_entropy.item(), value.item(), loss.residual)


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class _Record:
    """The record of one run: a row per epoch and per logged step, the converged states and
    their re-tests on fresh draws."""

    def __init__(self, prop: EmergentProperty, seed: int) -> None:
        self.prop, self.seed = prop, seed
        self.history: list[dict] = []
        self.trace: list[dict] = []
        self.candidates: list[tuple[float, int, dict]] = []  # (entropy, epoch, state)
        self.fresh: dict[int, ConstraintTest] = {}  # epoch → its re-test on fresh draws
        self.last_state, self.stopped = None, None
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

    def keep_last(self, guide: EPIGuide) -> None:
        """Keep the guide's state at a tested epoch: the finite state a stopped run returns to."""
        self.last_state = copy.deepcopy(guide.state_dict())

    def stop(self, guide: EPIGuide, why: str) -> None:
        """The finite guard: the run stops, the guide back at the last tested epoch."""
        self.stopped = why
        guide.load_state_dict(self.last_state)
        warnings.warn(
            f"EPI stopped: {why}; the flow of epoch {self.history[-1]['epoch']} (the last tested"
            " one) is kept",
            stacklevel=4,
        )

    def keep_if_converged(self, guide: EPIGuide, test: ConstraintTest, epoch: int) -> bool:
        """Keep the guide's state when the epoch passed its test: a candidate for selection."""
        if not test.moment.converged:
            return False
        self.candidates.append((test.entropy, epoch, copy.deepcopy(guide.state_dict())))
        return True

    def retest(self, guide: EPIGuide, loss: EPILoss, epoch: int) -> bool:
        """Whether the guide (at converged ``epoch``) passes the moment test again on fresh
        draws, from a generator derived from the run's seed and the epoch (the global random
        state is left as it was); the verdict joins the epoch's history row."""
        if epoch not in self.fresh:
            fresh_seed = np.random.SeedSequence([self.seed, epoch, FRESH_STREAM]).generate_state(1)
            with torch.random.fork_rng():
                torch.manual_seed(int(fresh_seed[0]))
                self.fresh[epoch] = loss.test(guide.model, guide)
            moment = self.fresh[epoch].moment
            row = next(r for r in self.history if r["epoch"] == epoch)
            row["fresh converged"] = moment.converged
            for name, p in zip(self.prop.constraint_names, moment.p_values.tolist(), strict=True):
                row[f"fresh p {name}"] = p
        return self.fresh[epoch].moment.converged

    def result(self, guide: EPIGuide, loss: EPILoss, settings: dict) -> EPIResult:
        """The guide at the converged epoch of greatest entropy whose re-test on fresh draws
        passes too (else the last epoch) and the run's record."""
        final = copy.deepcopy(guide.state_dict())
        selected = None
        for entropy, epoch, state in sorted(self.candidates, key=lambda c: -c[0]):
            guide.load_state_dict(state)
            if self.retest(guide, loss, epoch):
                selected = (epoch, entropy)
                break
        converged = selected is not None
        if converged:
            epoch, entropy = selected
        else:
            guide.load_state_dict(final)
            epoch, entropy = self.history[-1]["epoch"], self.history[-1]["entropy"]
        fresh = None
        if epoch in self.fresh:
            p_values = self.fresh[epoch].moment.p_values.tolist()
            fresh = dict(zip(self.prop.constraint_names, p_values, strict=True))
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
            seed=self.seed,
            settings=settings,
            stopped=self.stopped,
            fresh_p_values=fresh,
        )

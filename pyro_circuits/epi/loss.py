"""The EPI objective as a loss object: the max-entropy augmented Lagrangian on statistic sites."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_circuits.checks import (
    int_in_range,
    positive_float,
    probability,
    real,
    require_positive_ints,
    seed_int,
)
from pyro_circuits.epi.convergence import penalty_should_grow
from pyro_circuits.epi.guide import EPIGuide
from pyro_circuits.epi.program import StatisticsRun
from pyro_circuits.property import EmergentProperty, MomentTest, moment_test
from pyro_circuits.sites import CircuitProgram

__all__ = ["ConstraintTest", "EPILoss", "draws_entropy"]


class ConstraintTest(NamedTuple):
    """The end-of-epoch test of :meth:`EPILoss.test`."""

    moment: MomentTest  # the moment test on the M batch-mean violations
    norms: torch.Tensor  # (M,) ‖R‖² of each test batch
    entropy: float  # −mean log q over the M × N test draws
    #: Why ``entropy`` was re-estimated from ``log_prob`` of the draws (see
    #: :func:`draws_entropy`), else None.
    entropy_note: str | None = None


#: A draw's log q from the pass agrees with ``log_prob`` of the stored draw when they differ by at
#: most this, relative to max(1, |log_prob|): float32 round trips through a flow differ by about
#: 1e-3 nats at most.
DRAW_RTOL = 1e-2
#: The pass's entropy stands unless more than this fraction of the draws disagree. A valid run
#: has rare draws far out in a support's saturated tail, where the stored θ has rounded to the
#: bound and ``log_prob`` is evaluated at another point (``pyro-circuits epi lds2d``: about one
#: in 100,000, which move −mean ``log_prob`` by up to 330 nats while the pass's figure is right);
#: a flow whose bookkeeping has come loose from its draws disagrees on most of them.
DISAGREEING_FRACTION = 1e-2


@torch.no_grad()
def draws_entropy(
    log_q: torch.Tensor, theta: torch.Tensor, log_prob: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[float, str | None]:
    """−mean log q over a flow's own draws θ, and why it was re-estimated (else None).

    ``log_q`` is the flow's bookkeeping from the pass that drew θ. When it is finite and agrees
    with ``log_prob(θ)`` on all but a fraction :data:`DISAGREEING_FRACTION` of the draws, −mean
    ``log_q`` is returned unchanged. Otherwise (a non-finite ``log_q``, or most draws saturating
    a support's bounds, so that the stored θ is no longer the point the pass's log q refers to)
    the estimate is −mean ``log_prob(θ)`` over the draws where it is finite: a figure that
    ``log_prob`` of the same draws reproduces. NaN when no draw has a finite ``log_prob``.

    Example:
        >>> log_q = torch.tensor([0.0, float("inf")])
        >>> draws_entropy(log_q, torch.zeros(2, 1), lambda t: torch.zeros(len(t)))
        (-0.0, 'the flow gave a non-finite log q for 1 of 2 draws; ...')
    """
    entropy = -log_q.mean().item()
    evaluated = log_prob(theta)
    finite = torch.isfinite(evaluated)
    bad = int((~torch.isfinite(log_q)).sum())
    tolerance = DRAW_RTOL * evaluated.abs().clamp(min=1.0)
    disagree = int((~((log_q - evaluated).abs() <= tolerance)).sum())  # NaN counts as disagreeing
    if not bad and disagree <= DISAGREEING_FRACTION * len(log_q):
        return entropy, None
    kept = evaluated[finite]
    estimate = -kept.mean().item() if len(kept) else float("nan")
    if bad:
        why = f"the flow gave a non-finite log q for {bad} of {len(log_q)} draws"
    else:
        why = (
            f"the flow's log q disagrees with log_prob of the same draws on {disagree} of "
            f"{len(log_q)} (entropy {entropy:.4g} against {estimate:.4g}): draws at its "
            "supports' bounds"
        )
    dropped = int((~finite).sum())
    excluded = f", excluding {dropped} draws where log_prob is not finite" if dropped else ""
    return estimate, f"{why}; entropy re-estimated as −mean log_prob of the draws{excluded}"


class EPILoss:
    """The augmented Lagrangian −H(q) + ηᵀR + c/2‖R‖² of emergent property inference
    (Bittner et al., eLife 2021), holding the multipliers η, the penalty c and their update.

    R is the mean constraint violation T(θ) − μ_opt of the model's statistic sites, run on
    ``num_particles`` draws from the guide. The penalty's gradient is unbiased: the batch is
    split in halves and ‖R‖² is estimated by R₁ᵀR₂. Call it like a Pyro ELBO's
    ``differentiable_loss``: ``loss(model, guide, *args, **kwargs)`` is a differentiable scalar,
    with ``args``/``kwargs`` the model's arguments (default: those the guide was built with).
    After each epoch, :meth:`test` runs the paper's convergence test and :meth:`update` applies
    η ← η + cR and, when ‖R‖² did not shrink by γ (Welch test), c ← βc.

    The guide is an :class:`~pyro_circuits.epi.guide.EPIGuide` (its flow gives draws and log q in
    one pass), or any reparameterised Pyro guide of the model's parameter sites, run under a
    ``pyro.plate`` of ``num_particles``.

    Arguments:
        prop: the emergent property.
        num_particles: draws per loss evaluation (N, even).
        c0, beta, gamma: initial penalty, its growth factor and the required reduction of ‖R‖².
        max_penalty: the penalty grows no further than this (None: without limit, as in the
            paper).
        alpha: level of the convergence test (Bonferroni-divided by the number of constraints).
        test_batches, test_batch_size: M batches of N_test draws for :meth:`test`
            (``None``: N).
        standardize: measure violations in units of the target's scale (σ for a mean, σ² for a
            variance) rather than raw units.
        chunk: largest number of draws simulated in one call during :meth:`test`.
        seed: seed of the random choice in the penalty update.

    Example:
        >>> import pyro.distributions as dist
        >>> from pyro_circuits.epi import EPIGuide, FlowConfig
        >>> def model():
        ...     x = pyro.sample("x", dist.Uniform(-5.0, 5.0))
        ...     pyro.deterministic("f", x)
        >>> guide = EPIGuide(model, flow=FlowConfig(units=8), seed=0)
        >>> loss = EPILoss(EmergentProperty({"f": 0.0}, {"f": 1.0}), num_particles=100)
        >>> optimizer = torch.optim.Adam(guide.parameters(), lr=1e-2)
        >>> for step in range(3):
        ...     optimizer.zero_grad()
        ...     loss(model, guide).backward()
        ...     optimizer.step()
        >>> loss.update(loss.test(model, guide))  # the first test sets the ‖R‖² baseline
    """

    def __init__(
        self,
        prop: EmergentProperty,
        *,
        num_particles: int = 500,
        c0: float = 1.0,
        beta: float = 4.0,
        gamma: float = 0.25,
        max_penalty: float | None = None,
        alpha: float = 0.05,
        test_batches: int = 200,
        test_batch_size: int | None = None,
        standardize: bool = True,
        chunk: int = 20_000,
        seed: int | None = None,
    ) -> None:
        if not isinstance(prop, EmergentProperty):
            raise TypeError(f"prop must be an EmergentProperty, got {type(prop).__name__}")
        if not isinstance(num_particles, int) or num_particles < 2 or num_particles % 2:
            raise ValueError(f"num_particles must be an even integer >= 2, got {num_particles!r}")
        require_positive_ints(chunk=chunk)
        int_in_range("test_batches", test_batches, 2)  # one batch: p = 0, never converged
        if test_batch_size is not None:
            require_positive_ints(test_batch_size=test_batch_size)
        positive_float("c0", c0)
        real("beta", beta, low=1.0, low_open=True)
        probability("gamma", gamma, low_open=True, high_open=True)
        if max_penalty is not None:
            real("max_penalty", max_penalty, low=c0)
        probability("alpha", alpha, low_open=True, high_open=True)
        if seed is not None:
            seed_int("seed", seed)
        self.prop, self.num_particles = prop, num_particles
        self.beta, self.gamma, self.alpha, self.chunk = beta, gamma, alpha, chunk
        self.test_batches, self.test_batch_size = test_batches, test_batch_size or num_particles
        self.target = prop.target
        self.scale = prop.constraint_scale if standardize else torch.ones_like(self.target)
        self.eta, self.c = torch.zeros(len(self.target)), c0
        self.max_penalty = math.inf if max_penalty is None else max_penalty
        self.norms: torch.Tensor | None = None  # ‖R‖² per test batch of the last test
        self.rng = np.random.default_rng(seed)
        self.neg_entropy: torch.Tensor | None = None  # mean log q of the last evaluation
        self.residual: torch.Tensor | None = None  # mean violation R of the last evaluation
        self._program: tuple | None = None

    def __call__(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        return self.differentiable_loss(model, guide, *args, **kwargs)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args, **kwargs
    ) -> torch.Tensor:
        """The augmented Lagrangian on ``num_particles`` fresh draws (a differentiable scalar)."""
        program = self._resolve(model, guide, args, kwargs)
        values, log_q = draw(guide, self.num_particles, program, args, kwargs)
        first, second = self.violations(self._simulator(program), values, log_q).chunk(2)
        r1, r2 = first.mean(0), second.mean(0)
        neg_entropy = log_q.mean()
        residual = (r1 + r2) / 2
        penalty = self.c / 2 * (r1 @ r2.detach() + r1.detach() @ r2)
        self.neg_entropy, self.residual = neg_entropy.detach(), residual.detach()
        return neg_entropy + self.eta @ residual + penalty

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The augmented Lagrangian as a float (no gradient)."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def violations(
        self,
        program: CircuitProgram | StatisticsRun,
        values: dict[str, torch.Tensor],
        like: torch.Tensor,
    ) -> torch.Tensor:
        """(T(θ) − μ_opt) / scale per draw, shape (n, m), for draws ``{site: (n, *shape)}``."""
        stats = program.simulate(values)
        return (self.prop.sufficient_statistics(stats) - self.target.to(like)) / self.scale.to(like)

    @torch.no_grad()
    def test(self, model: Callable, guide: Callable, *args, **kwargs) -> ConstraintTest:
        """Batch-mean violations of M fresh batches: the moment test, ‖R‖² per batch, entropy."""
        program = self._resolve(model, guide, args, kwargs)
        simulator = self._simulator(program)
        total = self.test_batches * self.test_batch_size
        parts, log_qs, thetas = [], [], []
        for start in range(0, total, self.chunk):
            values, log_q = draw(guide, min(self.chunk, total - start), program, args, kwargs)
            parts.append(self.violations(simulator, values, log_q))
            log_qs.append(log_q)
            if isinstance(guide, EPIGuide):
                thetas.append(guide.space.join(values))
        batches = torch.cat(parts).reshape(self.test_batches, self.test_batch_size, -1).mean(1)
        log_q = torch.cat(log_qs)
        if thetas:  # the flow's log q checked against log_prob of its own draws
            entropy, note = draws_entropy(log_q, torch.cat(thetas), guide.log_prob)
        else:
            entropy, note = -log_q.mean().item(), None
        return ConstraintTest(moment_test(batches, self.alpha), (batches**2).sum(-1), entropy, note)

    def update(self, test: ConstraintTest) -> None:
        """After an epoch's :meth:`test`: η ← η + cR, then c ← βc when the Welch test finds that
        ‖R‖² did not fall below γ times the previous test's (to at most ``max_penalty``). The
        first call only records the baseline ‖R‖² (the test after initialisation)."""
        if self.norms is not None:
            self.eta = self.eta + self.c * test.moment.mean_violation.to(self.eta)
            if penalty_should_grow(test.norms, self.norms, self.gamma, self.rng):
                self.c = min(self.c * self.beta, self.max_penalty)
        self.norms = test.norms

    def _simulator(self, program: CircuitProgram) -> StatisticsRun:
        """What runs the model inside the loss and the test: the program under one light
        messenger instead of a full trace, with the same statistics, gradients and random draws
        (:class:`~pyro_circuits.epi.program.StatisticsRun`)."""
        return StatisticsRun(program)

    def _resolve(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> CircuitProgram:
        """The model as a :class:`CircuitProgram`: the guide's own when the guide was built on
        this model and no other arguments are given; else built once per (model, guide, args)."""
        own = getattr(guide, "program", None)
        if isinstance(own, CircuitProgram) and own.model is model and not args and not kwargs:
            program = own
        elif self._program is not None and _same(self._program[0], (model, guide, args, kwargs)):
            program = self._program[1]
        else:
            params = own.params if isinstance(own, CircuitProgram) else None
            program = CircuitProgram(model, params, tuple(args), dict(kwargs))
            self._program = ((model, guide, args, kwargs), program)
        program.require_statistics()
        self.prop.validate(program.statistic_shapes)
        return program


def draw(
    guide: Callable, n: int, program: CircuitProgram, args: tuple = (), kwargs: dict | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` reparameterised draws ``{site: (n, *shape)}`` of the program's parameters from a guide,
    and their log density (n,).

    An :class:`EPIGuide` is drawn from directly (its flow gives θ and log q in one pass); any other
    guide is traced under ``pyro.plate("particles", n)`` and its sites' log-probs summed.
    """
    if isinstance(guide, EPIGuide):
        theta, log_q = guide.rsample_and_log_prob(n)
        return guide.space.split(theta), log_q
    with pyro.plate("particles", n, dim=-(program.plate_nesting + 1)):
        trace = poutine.trace(guide).get_trace(*args, **(kwargs or {}))
    trace.compute_log_prob()
    log_q = sum(
        _per_particle(site["log_prob"], n)
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"]
    )
    values = {}
    for name, shape in program.param_shapes.items():
        values[name] = trace.nodes[name]["value"].reshape(-1, *shape).expand(n, *shape)
    return values, log_q


def _per_particle(log_prob: torch.Tensor, n: int) -> torch.Tensor:
    """A site's log-prob (particles first, or unbatched) summed to one value per particle."""
    if log_prob.dim() == 0:
        return log_prob.expand(n)
    return log_prob.expand(n, *log_prob.shape[1:]).reshape(n, -1).sum(-1)


def _same(first: tuple, second: tuple) -> bool:
    """Whether two (model, guide, args, kwargs) keys hold the very same objects."""
    (model, guide, args, kwargs), (model2, guide2, args2, kwargs2) = first, second
    return (
        model is model2
        and guide is guide2
        and len(args) == len(args2)
        and all(a is b for a, b in zip(args, args2, strict=True))
        and kwargs.keys() == kwargs2.keys()
        and all(kwargs[k] is kwargs2[k] for k in kwargs)
    )

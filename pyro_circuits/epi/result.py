"""The fitted EPI distribution and what can be asked of it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pyro_circuits.epi.analysis import Sensitivity, ascend, hessian_sensitivity
from pyro_circuits.epi.flow import SupportedFlow
from pyro_circuits.epi.guide import EPIGuide
from pyro_circuits.epi.loss import draws_entropy
from pyro_circuits.property import EmergentProperty
from pyro_circuits.results import InferenceResult
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

__all__ = ["EPIResult"]


@dataclass
class EPIResult(InferenceResult):
    """The EPI distribution q(z) of the selected epoch, with its optimisation record.

    Attributes:
        guide: the trained :class:`EPIGuide` (at the selected epoch), a Pyro guide of the model:
            ``Predictive(result.program.model, guide=result.guide, num_samples=n)`` runs the
            model on its draws.
        converged: whether the selected epoch passed the moment test twice: at the end of its
            epoch and again on fresh draws (``fresh_p_values``).
        epoch: the selected epoch (of greatest entropy among those passing both tests, else the
            last).
        history: one row per epoch (0 = after the Gaussian initialisation): entropy, mean
            violations ``R …``, test p-values ``p …``, multipliers ``eta …``, penalty ``c``,
            simulations and wall time.
        trace: every ``log_every`` Adam steps: entropy, loss and the minibatch violations.
        restarts: one row per seed when several were run.
        stopped: why the run stopped early (a non-finite loss, gradient or flow parameter: the
            flow of the last tested epoch is kept), else None.
    """

    guide: EPIGuide
    prop: EmergentProperty
    converged: bool
    epoch: int
    selected_entropy: float
    history: pd.DataFrame
    trace: pd.DataFrame
    wall_time: float
    simulations: int
    seed: int
    settings: dict
    restarts: pd.DataFrame | None = field(default=None)
    #: Why the run stopped early on a non-finite loss, gradient or parameter, else None.
    stopped: str | None = None
    #: The selected epoch's re-test on fresh draws, ``{constraint: p-value}`` (the history's
    #: ``fresh p …`` columns hold every re-tested epoch's), else None.
    fresh_p_values: dict[str, float] | None = None
    method = "epi"

    @property
    def program(self) -> CircuitProgram:
        return self.guide.program

    @property
    def q(self) -> SupportedFlow:
        """The guide's flow, mapped onto the parameter supports."""
        return self.guide.q

    @property
    def space(self) -> ParameterSpace:
        return self.guide.space

    def _flat(self, z) -> torch.Tensor:
        if isinstance(z, dict):
            single = all(
                torch.as_tensor(z[n]).shape == self.space.shapes[n] for n in self.space.names
            )
            return self.space.join(
                {k: torch.as_tensor(v).unsqueeze(0) for k, v in z.items()} if single else z
            )
        z = torch.as_tensor(z, dtype=torch.get_default_dtype())
        return z if z.dim() == 2 else z.reshape(1, -1)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` draws from q as ``{site: (n, *shape)}``; a ``seed`` makes them reproducible."""
        if seed is not None:
            torch.manual_seed(seed)
        return self.space.split(self.q.sample(n))

    def check(
        self,
        batches: int | None = None,
        batch_size: int | None = None,
        alpha: float | None = None,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """:meth:`InferenceResult.check <pyro_circuits.results.InferenceResult.check>` with the
        run's own test by default: its ``test_batches`` batches of ``test_batch_size`` draws
        (its batch size where that is None) and its ``alpha``, so the table tests what EPI's
        verdict tested, on fresh draws.

        Example:
            >>> from pyro_circuits.models import LDS2D
            >>> from pyro_circuits.epi import EPIConfig, epi
            >>> config = EPIConfig(epochs=1, iterations=5, init_iterations=5, batch_size=20,
            ...                    test_batches=10, test_batch_size=20)
            >>> result = epi(LDS2D(), LDS2D.oscillation(), config=config, progress=False)
            >>> list(result.check()["statistic"])
            ['real_lambda', 'imag_lambda']
        """
        config = self.settings["config"]
        run_batch_size = config["test_batch_size"] or config["batch_size"]
        return super().check(
            config["test_batches"] if batches is None else batches,
            run_batch_size if batch_size is None else batch_size,
            config["alpha"] if alpha is None else alpha,
            seed,
        )

    @torch.no_grad()
    def log_prob(self, z) -> torch.Tensor:
        """log q(z) for draws given as ``{site: (n, *shape)}`` or a flat ``(n, D)`` tensor."""
        return self.q.log_prob(self._flat(z))

    @torch.no_grad()
    def entropy(self, n: int | None = None, seed: int | None = 0) -> float:
        """H(q) = −E_q[log q(z)] in nats: by default the estimate EPI selected the epoch by (over
        its M × N test draws); with ``n`` a fresh Monte-Carlo estimate over ``n`` draws.

        Either is −mean log q over the flow's own draws; where the flow's log q is not finite or
        disagrees with ``log_prob`` of the same draws (draws saturating a support's bounds), it
        is −mean ``log_prob`` of the draws instead, with a warning
        (:func:`~pyro_circuits.epi.loss.draws_entropy`).
        """
        if n is None:
            return self.selected_entropy
        if seed is not None:
            torch.manual_seed(seed)
        theta, log_q = self.q.rsample_and_log_prob(n)
        entropy, note = draws_entropy(log_q, theta, self.q.log_prob)
        if note is not None:
            warnings.warn(f"EPIResult.entropy: {note}", stacklevel=2)
        return entropy

    def mode(
        self,
        fixed: dict[str, float] | None = None,
        steps: int = 500,
        lr: float = 0.05,
        candidates: int = 2000,
        seed: int = 0,
    ) -> dict[str, torch.Tensor]:
        """A mode of q by gradient ascent on log q, with coordinates in ``fixed`` held.

        ``fixed`` maps coordinate names (``space.coordinate_names``, e.g. ``"a12"`` or ``"U[3]"``)
        to values. The ascent runs in unconstrained coordinates, starting from the most probable
        of ``candidates`` draws (with the fixed coordinates set).
        """
        names = self.space.coordinate_names
        fixed = dict(fixed or {})
        unknown = [k for k in fixed if k not in names]
        if unknown:
            raise ValueError(f"fixed names unknown coordinates {unknown}; coordinates are {names}")
        torch.manual_seed(seed)
        with torch.no_grad():
            theta = self.q.sample(candidates)
            for key, value in fixed.items():
                theta[:, names.index(key)] = value
            start = theta[self.q.log_prob(theta).argmax()]
        free = torch.tensor([name not in fixed for name in names])
        x = ascend(
            lambda u: self.q.log_prob_unconstrained(u.unsqueeze(0))[0],
            self.space.inverse(start.unsqueeze(0))[0],
            free,
            steps,
            lr,
        )
        with torch.no_grad():
            return {
                k: v[0] for k, v in self.space.split(self.space.forward(x.unsqueeze(0))[0]).items()
            }

    def sensitivity(self, z) -> Sensitivity:
        """Eigen-decomposition of the Hessian of log q at z (flat, in parameter coordinates)."""
        point = self._flat(z)[0]
        return hessian_sensitivity(
            lambda t: self.q.log_prob(t.unsqueeze(0))[0], point, self.space.coordinate_names
        )

    def convergence_trace(self) -> pd.DataFrame:
        """The distance ‖E[f] − μ‖₂ after each epoch, from its end-of-epoch test batches."""
        prop, history = self.prop, self.history
        columns = [f"R E[{c[2:-1]}]" for c in prop.constraint_names if c.startswith("E[")]
        violations = history[columns].to_numpy()
        if self.settings["config"].get("standardize", False):
            violations = violations * prop.variance_vector.sqrt().numpy()
        return pd.DataFrame(
            {
                "simulations": history["simulations"],
                "wall_time": history["wall_time"],
                "distance": np.sqrt((violations**2).sum(1)),
            }
        )

    def _posterior_draws(self, n, seed):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            theta, log_q = self.q.rsample_and_log_prob(n)
        attrs = {
            "entropy": self.selected_entropy,
            "converged": int(self.converged),
            "epoch": self.epoch,
            "seed": self.seed,
        }
        return self.space.split(theta), {"log_q": log_q}, attrs

"""Decoding behaviour from latent factors: ridge regression (scikit-learn), as the NLB's
velocity R² and LFADS's "decoding kinematics from factors" do.

:func:`ridge_decoder` fits one linear map from factors (optionally a few bins earlier than the
behaviour they explain) to behaviour over every training trial and time bin, with the ridge
penalty chosen by leave-one-out cross-validation (``RidgeCV``); :class:`RidgeDecoder` predicts
and scores held-out trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyro_circuits.metrics import r2_score

__all__ = ["RidgeDecoder", "ridge_decoder"]


def _as_array(name: str, x) -> np.ndarray:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"{name} must be [trials, time, k], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _lagged(factors: np.ndarray, behaviour: np.ndarray | None, lag: int):
    """Factors at t − lag paired with behaviour at t, flattened over trials and time."""
    n_steps = factors.shape[1]
    x = factors[:, : n_steps - lag].reshape(-1, factors.shape[-1])
    y = None if behaviour is None else behaviour[:, lag:].reshape(-1, behaviour.shape[-1])
    return x, y


@dataclass
class RidgeDecoder:
    """A fitted factor → behaviour map (built by :func:`ridge_decoder`): ``model`` is the
    scikit-learn ``RidgeCV`` (its ``alpha_`` the chosen penalty), ``lag`` in bins."""

    model: object
    lag: int

    def predict(self, factors) -> np.ndarray:
        """Behaviour [trials, time − lag, k] decoded from factors [trials, time, f]; row t is the
        behaviour at bin t + lag."""
        f = _as_array("factors", factors)
        x, _ = _lagged(f, None, self.lag)
        out = self.model.predict(x)
        return out.reshape(f.shape[0], f.shape[1] - self.lag, -1)

    def score(self, factors, behaviour) -> float:
        """R² of the decoded behaviour (:func:`~pyro_circuits.metrics.r2_score`, averaged over
        the behaviour's dimensions) on the trials given."""
        b = _as_array("behaviour", behaviour)
        return r2_score(b[:, self.lag :], self.predict(factors))


def ridge_decoder(
    factors, behaviour, *, lag: int = 0, alphas=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
) -> RidgeDecoder:
    """Fit behaviour [trials, time, k] from factors [trials, time, f] by ridge regression,
    the penalty chosen among ``alphas`` by leave-one-out cross-validation; ``lag``: the
    factors lead the behaviour by that many bins (the NLB decodes velocity from rates a few
    bins earlier).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> factors = torch.randn(20, 30, 4, generator=g)
        >>> behaviour = factors @ torch.randn(4, 2, generator=g)
        >>> decoder = ridge_decoder(factors[:15], behaviour[:15])
        >>> round(decoder.score(factors[15:], behaviour[15:]), 3)
        1.0
    """
    from sklearn.linear_model import RidgeCV

    f, b = _as_array("factors", factors), _as_array("behaviour", behaviour)
    if f.shape[:2] != b.shape[:2]:
        raise ValueError(f"factors {f.shape} and behaviour {b.shape} must share [trials, time]")
    if not isinstance(lag, int) or not 0 <= lag < f.shape[1]:
        raise ValueError(f"lag must be an integer in [0, {f.shape[1]}), got {lag!r}")
    x, y = _lagged(f, b, lag)
    return RidgeDecoder(model=RidgeCV(alphas=list(alphas)).fit(x, y), lag=lag)

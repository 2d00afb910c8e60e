"""Trial matching: losses that compare simulated and recorded trials as sets.

Following Sourmpis et al. (bioRNN), each trial is summarised by features: the population average
of each group of neurons (an area), box-filtered twice (:func:`filter_activity`, then a resampling
average pool), z-scored with the *recorded* trials' trial-mean time course and global std
(:class:`TrialFeatures`). Then

* :func:`hard_trial_matching_loss` -- the optimal one-to-one assignment between simulated and
  recorded trials (``scipy.optimize.linear_sum_assignment`` on a detached cost, the mean squared
  feature difference), and the MSE on the matched pairs;
* :func:`sinkhorn_trial_matching_loss` -- the soft variant: the debiased Sinkhorn divergence with
  a Euclidean (p = 1) ground cost, computed with POT's log-domain Sinkhorn, divided by √features;
* :func:`psth_loss` -- the per-neuron PSTH loss, both PSTHs z-scored with the data's per-neuron
  mean and std over time;
* :class:`GradientBalance` -- the 2:1 balance of the two losses' gradients: each loss's gradient
  on the shared simulated activity is divided by the root of a running mean of its squared norm
  and weighted by its normalised weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = [
    "GradientBalance",
    "TrialFeatures",
    "assignment",
    "filter_activity",
    "hard_trial_matching_loss",
    "psth",
    "psth_loss",
    "sinkhorn_trial_matching_loss",
    "trial_matching_loss",
]


def _check_activity(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (trials, time, neurons), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must be (trials, time, neurons), got shape {tuple(x.shape)}")
    return x


def filter_activity(x: torch.Tensor, dt: float, width: float = 8.0) -> torch.Tensor:
    """Box filter with 50% overlap over time: average pool of ``k = round(width/dt)`` steps,
    stride ``k // 2`` (at least 1), padding ``(k − 1) // 2`` not counted.

    Example:
        >>> filter_activity(torch.ones(2, 100, 3), dt=2.0).shape
        torch.Size([2, 50, 3])
    """
    _check_activity("x", x)
    if not dt > 0 or not width > 0:
        raise ValueError(f"dt and width must be positive, got dt={dt}, width={width}")
    k = max(1, int(round(width / dt)))
    out = nn.functional.avg_pool1d(
        x.transpose(1, 2), k, max(1, k // 2), (k - 1) // 2, count_include_pad=False
    )
    return out.transpose(1, 2)


def _resample(x: torch.Tensor) -> torch.Tensor:
    """The second pooling of the trial features: average pool 4, stride 2 over time."""
    if x.shape[1] < 4:
        return x
    return nn.functional.avg_pool1d(x.transpose(1, 2), 4, 2).transpose(1, 2)


class TrialFeatures:
    """Per-trial features: each group's population average, filtered twice and z-scored with the
    reference (recorded) trials' trial-mean time course and global std.

    Arguments:
        reference: recorded activity (trials, time, neurons) that fixes the normalisation.
        groups: boolean masks over neurons (e.g. one per area).
        dt: time step in ms; width: the first filter's width in ms.

    Example:
        >>> data = torch.rand(10, 40, 4)
        >>> features = TrialFeatures(data, [torch.tensor([1, 1, 0, 0], dtype=torch.bool)], dt=2.0)
        >>> features(data).shape
        torch.Size([10, 9])
        >>> abs(float(features(data).mean())) < 1e-5
        True
    """

    def __init__(
        self, reference: torch.Tensor, groups: Sequence[torch.Tensor], dt: float, width: float = 8.0
    ) -> None:
        _check_activity("reference", reference)
        if len(groups) == 0:
            raise ValueError("groups must name at least one group of neurons")
        self.groups = []
        for i, g in enumerate(groups):
            g = torch.as_tensor(g)
            if g.dtype != torch.bool or g.shape != (reference.shape[-1],):
                raise ValueError(
                    f"groups[{i}] must be a boolean mask over the {reference.shape[-1]} neurons, "
                    f"got dtype {g.dtype} and shape {tuple(g.shape)}"
                )
            if not g.any():
                raise ValueError(f"groups[{i}] selects no neuron")
            self.groups.append(g)
        self.dt, self.width = dt, width
        raw = self.raw(reference)
        self.mean = raw.mean(0)
        self.std = raw.std().clamp(min=1e-3)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised features (trials, groups·bins)."""
        _check_activity("x", x)
        if x.shape[-1] != self.groups[0].shape[0]:
            raise ValueError(
                f"activity has {x.shape[-1]} neurons, the groups {self.groups[0].shape[0]}"
            )
        f = _resample(filter_activity(x, self.dt, self.width))
        return torch.cat([f[:, :, g].mean(-1) for g in self.groups], dim=1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw(x) - self.mean) / self.std


def assignment(cost: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of rows to columns minimising the total ``cost``
    (``scipy.optimize.linear_sum_assignment``).

    Example:
        >>> rows, cols = assignment(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> cols.tolist()
        [1, 0]
    """
    if isinstance(cost, torch.Tensor):
        cost = cost.detach().cpu().numpy()
    return linear_sum_assignment(cost)


def _pair(model_features: torch.Tensor, data_features: torch.Tensor, generator):
    for name, f in (("model_features", model_features), ("data_features", data_features)):
        if not isinstance(f, torch.Tensor) or f.dim() != 2:
            raise ValueError(f"{name} must be a (trials, features) tensor")
    if model_features.shape[1] != data_features.shape[1]:
        raise ValueError(
            f"model and data have {model_features.shape[1]} and {data_features.shape[1]} features"
        )
    k = min(len(model_features), len(data_features))
    if len(model_features) > k:
        model_features = model_features[
            torch.randperm(len(model_features), generator=generator)[:k]
        ]
    if len(data_features) > k:
        data_features = data_features[torch.randperm(len(data_features), generator=generator)[:k]]
    return model_features, data_features


def hard_trial_matching_loss(
    model_features: torch.Tensor,
    data_features: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MSE between simulated and recorded trials after the optimal one-to-one matching.

    Both sets are subsampled at random (``generator``) to the smaller size K; the cost of pairing
    simulated trial k with recorded trial l is the mean squared feature difference, the matching
    is found on the detached cost, and the loss is the MSE of the matched pairs (differentiable
    through ``model_features``).

    Example:
        >>> x = torch.randn(6, 5)
        >>> float(hard_trial_matching_loss(x[torch.randperm(6)], x))
        0.0
    """
    m, d = _pair(model_features, data_features, generator)
    with torch.no_grad():
        cost = torch.cdist(m, d).pow(2) / m.shape[1]
    rows, cols = assignment(cost)
    return (m[torch.as_tensor(rows)] - d[torch.as_tensor(cols)]).pow(2).mean()


def _entropic(x, y, reg):
    a = torch.full((len(x),), 1.0 / len(x), dtype=x.dtype)
    b = torch.full((len(y),), 1.0 / len(y), dtype=y.dtype)
    cost = torch.cdist(x, y)  # p = 1: Euclidean ground cost
    return ot.sinkhorn2(a, b, cost, reg, method="sinkhorn_log", numItermax=200, stopThr=1e-6)


def sinkhorn_trial_matching_loss(
    model_features: torch.Tensor,
    data_features: torch.Tensor,
    *,
    blur: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The soft trial-matching loss: the debiased Sinkhorn divergence S(μ, ν) = OT_ε(μ, ν) −
    ½ OT_ε(μ, μ) − ½ OT_ε(ν, ν) between the two empirical trial distributions (Euclidean ground
    cost, ε = ``blur``; POT's log-domain Sinkhorn), divided by √features.

    Example:
        >>> x = torch.randn(8, 3)
        >>> abs(float(sinkhorn_trial_matching_loss(x, x))) < 1e-4
        True
    """
    if not blur > 0:
        raise ValueError(f"blur must be positive, got {blur}")
    m, d = _pair(model_features, data_features, generator)
    divergence = _entropic(m, d, blur) - 0.5 * _entropic(m, m, blur) - 0.5 * _entropic(d, d, blur)
    return divergence / math.sqrt(m.shape[1])


def trial_matching_loss(
    model_features: torch.Tensor,
    data_features: torch.Tensor,
    *,
    method: str = "hard",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`hard_trial_matching_loss` (``method="hard"``) or
    :func:`sinkhorn_trial_matching_loss` (``"sinkhorn"``).

    Example:
        >>> x = torch.randn(4, 2)
        >>> float(trial_matching_loss(x, x, method="hard"))
        0.0
    """
    if method == "hard":
        return hard_trial_matching_loss(model_features, data_features, generator=generator)
    if method == "sinkhorn":
        return sinkhorn_trial_matching_loss(model_features, data_features, generator=generator)
    raise ValueError(f"method must be 'hard' or 'sinkhorn', got {method!r}")


def psth(x: torch.Tensor, dt: float, width: float = 8.0) -> torch.Tensor:
    """The filtered, trial-averaged activity (time bins, neurons) of ``x`` (trials, time, neurons).

    Example:
        >>> psth(torch.ones(3, 20, 2), dt=2.0).shape
        torch.Size([10, 2])
    """
    return filter_activity(_check_activity("x", x), dt, width).mean(0)


def psth_loss(model: torch.Tensor, data: torch.Tensor, dt: float, width: float = 8.0):
    """Per-neuron PSTH loss: filtered, trial-averaged activity of model and data, both z-scored
    with the data PSTH's per-neuron mean and std over time (std clipped at 1e-3), then the mean
    squared difference. ``data`` may be trials (trials, time, neurons) or their :func:`psth`.

    Example:
        >>> x = torch.rand(5, 20, 3)
        >>> float(psth_loss(x, x, dt=2.0))
        0.0
    """
    pm = psth(model, dt, width)
    if not isinstance(data, torch.Tensor) or data.dim() not in (2, 3):
        raise ValueError("data must be (trials, time, neurons) or a PSTH (bins, neurons)")
    pd = psth(data, dt, width) if data.dim() == 3 else data
    if pm.shape != pd.shape:
        raise ValueError(
            f"model and data PSTHs differ in (bins, neurons): {tuple(pm.shape)} vs "
            f"{tuple(pd.shape)}"
        )
    mean, std = pd.mean(0), pd.std(0).clamp(min=1e-3)
    return (((pm - mean) / std - (pd - mean) / std) ** 2).mean()


class _Split(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, balance):
        ctx.balance = balance
        return tuple(x.clone() for _ in balance.weights)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.balance.combine(grads), None


class GradientBalance(nn.Module):
    """Split one tensor into one copy per loss and balance their gradients on the way back:
    each copy's gradient is divided by √(bias-corrected running mean of its squared norm,
    β = 0.999) and multiplied by its normalised weight, then the copies' gradients are summed.

    With ``weights=(2, 1)`` (trial matching, PSTH) this is the reference's 2:1 balance. The
    running means are buffers, so they are saved and restored with the module.

    Example:
        >>> balance = GradientBalance((2.0, 1.0))
        >>> x = torch.ones(3, requires_grad=True)
        >>> a, b = balance(x)
        >>> (10 * a.sum() + b.sum()).backward()  # the scale 10 no longer matters
        >>> round(float(x.grad.norm()), 4)
        1.0
    """

    def __init__(self, weights: Sequence[float] = (2.0, 1.0), beta: float = 0.999) -> None:
        super().__init__()
        if len(weights) < 1 or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
        if not 0 < beta < 1:
            raise ValueError(f"beta must lie in (0, 1), got {beta}")
        self.weights = tuple(float(w) / sum(weights) for w in weights)
        self.beta = beta
        self.register_buffer("square_norms", torch.zeros(len(weights)))
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _Split.apply(x, self)

    @torch.no_grad()
    def combine(self, grads) -> torch.Tensor:
        self.count += 1
        total = None
        for i, g in enumerate(grads):
            if g is None:
                continue
            self.square_norms[i] = (
                self.beta * self.square_norms[i] + (1 - self.beta) * g.pow(2).sum()
            )
            mean = self.square_norms[i] / (1 - self.beta**self.count)
            part = self.weights[i] * g / (mean.sqrt() + 1e-12)
            total = part if total is None else total + part
        return total

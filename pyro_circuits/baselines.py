"""Baselines for spike-rate inference, fitted on training trials and applied to held-in spikes.

* :func:`gaussian_smoothing` -- Gaussian-kernel smoothing of the held-in spikes; held-out
  neurons are predicted by a Poisson GLM from the smoothed held-in rates (the NLB smoothing
  baseline).
* :func:`seq2seq` -- the Neuromatch sequence-to-sequence model: a bidirectional RNN reads the
  held-in spikes; the average of its forward and backward states (the latents) is read out
  through softplus(·, beta=10) to the held-out neurons' rates, trained with a Poisson loss.
  (Predicting a neuron from its own spikes would just copy them, so it predicts only the others.)
* :func:`condition_psth` -- the condition-average lookup: a trial's condition is the one whose
  smoothed training PSTH gives its held-in spikes the highest Poisson likelihood, and that PSTH
  is its rates. It needs ``data.conditions`` and knows nothing of single-trial dynamics.

All return a :class:`BaselineFit` with ``predict(counts) -> (rates [Hz], latents)``, where
``counts`` holds the held-in neurons only and ``rates`` covers the neurons ``fit.neurons``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from pyro_circuits.datasets.spike_data import SpikeData

__all__ = ["BaselineFit", "condition_average", "condition_psth", "gaussian_smoothing", "seq2seq"]


@dataclass
class BaselineFit:
    """A fitted baseline: ``predict(heldin_counts)`` gives (rates in Hz of ``neurons``, latents)."""

    predict: Callable
    neurons: torch.Tensor
    name: str


def _smooth(counts: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.as_tensor(
        gaussian_filter1d(counts.numpy(), sigma, axis=1, mode="nearest"), dtype=torch.float32
    )


def _fit_poisson_glm(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int) -> nn.Linear:
    """Poisson regression of counts y on features x (log link), by L-BFGS."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    glm = nn.Linear(x.shape[-1], y.shape[-1])
    with torch.no_grad():
        glm.weight.zero_()
        glm.bias.copy_(torch.log(y.mean(0).clamp(min=1e-4)))
    optimizer = torch.optim.LBFGS(glm.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        log_mean = glm(x)
        loss = (log_mean.exp() - y * log_mean).mean() + l2 * glm.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return glm


def gaussian_smoothing(data: SpikeData, *, sigma: float = 4.0, l2: float = 1e-4, steps: int = 200):
    """Smooth held-in spikes with a Gaussian kernel of ``sigma`` bins; regress held-out neurons.

    Fitted on ``data.train``. The latents are the smoothed held-in rates.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5, n_heldout=5)
        >>> rates, _ = gaussian_smoothing(data).predict(data.valid.counts[..., data.heldin])
        >>> rates.shape
        torch.Size([4, 100, 30])
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    heldin, heldout, dt = data.heldin, data.heldout, data.dt
    train = data.train.counts
    glm = None
    if len(heldout):
        features = torch.log(_smooth(train[..., heldin], sigma) + 1e-3)
        glm = _fit_poisson_glm(features, train[..., heldout], l2, steps)

    @torch.no_grad()
    def predict(counts):
        smoothed = _smooth(counts, sigma)
        rates = torch.empty(*counts.shape[:2], len(heldin) + len(heldout))
        rates[..., heldin] = smoothed / dt
        if glm is not None:
            rates[..., heldout] = torch.exp(glm(torch.log(smoothed + 1e-3))) / dt
        return rates, smoothed

    return BaselineFit(
        predict, torch.arange(data.counts.shape[-1]), f"smoothing (σ = {sigma:g} bins)"
    )


class _Seq2Seq(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_latents: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(n_in, n_latents, batch_first=True, bidirectional=True)
        self.readout = nn.Linear(n_latents, n_out)

    def forward(self, x):
        forward, backward = self.rnn(x)[0].chunk(2, -1)
        latents = (forward + backward) / 2
        return nn.functional.softplus(self.readout(latents), beta=10), latents


def seq2seq(
    data: SpikeData,
    *,
    n_latents: int = 10,
    n_iterations: int = 1000,
    batch_size: int = 256,
    lr: float = 5e-3,
    seed: int = 0,
) -> BaselineFit:
    """The Neuromatch bidirectional-RNN model, trained on ``data.train`` held-in → held-out.

    Adam (lr 5e-3), readout bias initialised at the mean counts, Poisson loss λ − k log λ.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5, n_heldout=5)
        >>> fit = seq2seq(data, n_iterations=5)
        >>> fit.predict(data.valid.counts[..., data.heldin])[1].shape
        torch.Size([4, 100, 10])
    """
    if n_latents < 1 or n_iterations < 1:
        raise ValueError(
            f"n_latents and n_iterations must be positive, got {n_latents}, {n_iterations}"
        )
    if not len(data.heldout):
        raise ValueError("data.heldout must name the neurons to predict")
    torch.manual_seed(seed)
    train = data.train.counts
    target = train[..., data.heldout]
    net = _Seq2Seq(len(data.heldin), len(data.heldout), n_latents)
    with torch.no_grad():
        net.readout.bias.copy_(target.mean((0, 1)))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_iterations):
        idx = torch.randint(len(train), (min(batch_size, len(train)),), generator=generator)
        rate, _ = net(train[idx][..., data.heldin])
        loss = (rate - target[idx] * torch.log(rate + 1e-8)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def predict(counts):
        rate, latents = net(counts)
        return rate / data.dt, latents

    return BaselineFit(predict, data.heldout, f"seq2seq bi-RNN ({n_latents} latents)")


def condition_average(
    values: torch.Tensor, conditions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct ``conditions`` (sorted) and the mean of ``values`` [trials, ...] over each
    one's trials.

    Example:
        >>> labels, means = condition_average(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([2, 2, 0]))
        >>> labels.tolist(), means.tolist()
        ([0, 2], [5.0, 2.0])
    """
    labels, index = torch.unique(conditions, return_inverse=True)
    sums = values.new_zeros(len(labels), *values.shape[1:]).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=len(labels)).view(-1, *[1] * (values.dim() - 1))
    return labels, sums / counts


def condition_psth(data: SpikeData, *, sigma: float = 8.0) -> BaselineFit:
    """Rates from the condition a trial's spikes point to: each condition's PSTH (its training
    trials' counts averaged and smoothed with a Gaussian kernel of ``sigma`` bins), chosen by the
    Poisson likelihood of the trial's held-in spikes. ``predict`` returns the rates of every
    neuron and, as latents, the chosen condition's index per trial ([trials, 1, 1]).

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5)
        >>> rates, chosen = condition_psth(data).predict(data.valid.counts)
        >>> bool((chosen.flatten() == data.conditions[data.valid_idx]).all())
        True
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if data.conditions is None:
        raise ValueError("condition_psth needs data.conditions, a condition label per trial")
    labels, psth = condition_average(
        _smooth(data.train.counts, sigma), data.conditions[data.train_idx]
    )
    log_psth = psth.clamp(min=1e-6).log()

    @torch.no_grad()
    def predict(counts):
        heldin = data.heldin
        log_likelihood = torch.einsum("vtn,ctn->vc", counts, log_psth[..., heldin])
        log_likelihood = log_likelihood - psth[..., heldin].sum((1, 2))
        chosen = log_likelihood.argmax(1)
        return psth[chosen] / data.dt, labels[chosen].view(-1, 1, 1)

    return BaselineFit(
        predict, torch.arange(data.counts.shape[-1]), f"condition PSTH (σ = {sigma:g} bins)"
    )

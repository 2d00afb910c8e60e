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

Each returns a picklable :class:`BaselineFit`, a :class:`~pyro_circuits.results.TrialPosterior`
whose posterior is a point: ``posterior_mean(counts)`` is ``{"rates": [trials, time, neurons]
in Hz, "latents": ...}`` for the neurons ``fit.neurons``, read from the held-in neurons of
``counts`` (which holds either the held-in neurons only or every neuron); the counts are
Poisson with mean ``rates * dt``.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from pyro_circuits.baselines._point import PointPosterior
from pyro_circuits.checks import check_counts, positive_float, positive_int, real, seed_int
from pyro_circuits.datasets.spike_data import SpikeData

__all__ = [
    "BaselineFit",
    "ConditionPSTH",
    "GaussianSmoothing",
    "Seq2Seq",
    "condition_average",
    "condition_psth",
    "gaussian_smoothing",
    "seq2seq",
]

_TRIAL_TIME_NEURON = ["trial", "time", "neuron"]


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


class BaselineFit(PointPosterior):
    """A fitted spike-rate baseline: rates in Hz of the neurons ``neurons`` from held-in counts.

    Its methods take ``counts`` [trials, time, neurons] holding either the held-in neurons
    (``heldin``) only or every neuron of the recording, and read only the held-in ones; the
    measured ``inputs`` of the protocol are accepted and unused. Sites: ``rates`` [trials,
    time, len(neurons)] and ``latents`` (posterior), ``counts`` ~ Poisson(``rates * dt``) of
    the neurons ``neurons`` (observed). :meth:`to_inference_data` scores the counts of those
    neurons, so it needs every neuron of the recording when some are held out.

    Attributes: ``neurons`` (indices of the neurons it gives rates of), ``name`` (a label for
    tables), ``dt`` (bin width in seconds), ``heldin`` and ``heldout`` (neuron indices).

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=2, n_trials=3, n_heldout=5)
        >>> fit = gaussian_smoothing(data)
        >>> isinstance(fit, BaselineFit), fit.name
        (True, 'smoothing (σ = 4 bins)')
        >>> fit.sample(data.valid.counts, num_samples=3)["counts"].shape
        torch.Size([3, 2, 100, 30])
        >>> idata = fit.to_inference_data(data.valid.counts, num_samples=4)
        >>> sorted(idata.groups())
        ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive']
    """

    observed = "counts"
    dims = {
        "rates": _TRIAL_TIME_NEURON,
        "counts": _TRIAL_TIME_NEURON,
        "latents": ["trial", "time", "latent"],
    }

    def __init__(self, *, neurons, heldin, heldout, dt: float, name: str) -> None:
        self.neurons = torch.as_tensor(neurons, dtype=torch.long)
        self.heldin = torch.as_tensor(heldin, dtype=torch.long)
        self.heldout = torch.as_tensor(heldout, dtype=torch.long)
        self.dt = dt
        self.name = name

    @property
    def n_neurons(self) -> int:
        """Neurons of the recording the fit was trained on, held-in and held-out."""
        return len(self.heldin) + len(self.heldout)

    @abstractmethod
    def _rates_and_latents(self, heldin_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rates in Hz [trials, time, len(neurons)] and latents from held-in counts."""

    def _heldin_counts(self, counts: torch.Tensor) -> torch.Tensor:
        check_counts(counts, integer=False)
        if counts.shape[-1] == self.n_neurons:
            return counts[..., self.heldin]
        if counts.shape[-1] == len(self.heldin):
            return counts
        raise ValueError(
            f"counts must hold the {len(self.heldin)} held-in neurons or all {self.n_neurons} "
            f"neurons, got {counts.shape[-1]}"
        )

    def _estimate(self, counts, inputs=None) -> dict[str, torch.Tensor]:
        rates, latents = self._rates_and_latents(self._heldin_counts(counts))
        return {"rates": rates, "latents": latents}

    def _likelihood(self, counts, estimate) -> torch.distributions.Poisson:
        return torch.distributions.Poisson(estimate["rates"] * self.dt)

    def _observed(self, counts: torch.Tensor) -> torch.Tensor:
        check_counts(counts)
        if counts.shape[-1] != self.n_neurons:
            raise ValueError(
                f"scoring the rates of neurons {self.neurons.tolist()} needs the counts of all "
                f"{self.n_neurons} neurons, got {counts.shape[-1]}"
            )
        return counts[..., self.neurons]

    def _coords(self) -> dict:
        return {"neuron": self.neurons.tolist()}

    def predict(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rates, latents)`` of :meth:`posterior_mean`, as a tuple."""
        mean = self.posterior_mean(counts)
        return mean["rates"], mean["latents"]


class GaussianSmoothing(BaselineFit):
    """Smoothed held-in spikes as their rates, and a Poisson GLM (``glm``, or None when no neuron
    is held out) from their log to the held-out neurons' rates; built by
    :func:`gaussian_smoothing`. The latents are the smoothed held-in counts.

    Example:
        >>> fit = GaussianSmoothing(sigma=2.0, dt=0.01, heldin=[0, 1], heldout=[])
        >>> fit.posterior_mean(torch.ones(1, 5, 2))["rates"][0, 0].tolist()
        [100.0, 100.0]
    """

    def __init__(
        self, *, sigma: float, dt: float, heldin, heldout, glm: nn.Linear | None = None
    ) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        super().__init__(
            neurons=torch.arange(len(heldin) + len(heldout)),
            heldin=heldin,
            heldout=heldout,
            dt=dt,
            name=f"smoothing (σ = {sigma:g} bins)",
        )
        if (glm is None) != (len(self.heldout) == 0):
            raise ValueError("glm must be given exactly when some neurons are held out")
        self.sigma, self.glm = sigma, glm

    def _rates_and_latents(self, counts):
        smoothed = _smooth(counts, self.sigma)
        rates = torch.empty(*counts.shape[:2], self.n_neurons)
        rates[..., self.heldin] = smoothed / self.dt
        if self.glm is not None:
            rates[..., self.heldout] = torch.exp(self.glm(torch.log(smoothed + 1e-3))) / self.dt
        return rates, smoothed


def _check_data(data) -> None:
    if not isinstance(data, SpikeData):
        raise TypeError(f"data must be a SpikeData, got {type(data).__name__}")


def gaussian_smoothing(
    data: SpikeData, *, sigma: float = 4.0, l2: float = 1e-4, steps: int = 200
) -> GaussianSmoothing:
    """Smooth held-in spikes with a Gaussian kernel of ``sigma`` bins; regress held-out neurons.

    Fitted on ``data.train``: the held-out neurons' Poisson GLM (L2 penalty ``l2``, ``steps``
    L-BFGS iterations) on the log of the smoothed held-in counts. The latents are the smoothed
    held-in counts.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5, n_heldout=5)
        >>> fit = gaussian_smoothing(data)
        >>> fit.posterior_mean(data.valid.counts[..., data.heldin])["rates"].shape
        torch.Size([4, 100, 30])
    """
    _check_data(data)
    positive_float("sigma", sigma)
    real("l2", l2, low=0.0)
    positive_int("steps", steps)
    heldin, heldout = data.heldin, data.heldout
    train = data.train.counts
    glm = None
    if len(heldout):
        features = torch.log(_smooth(train[..., heldin], sigma) + 1e-3)
        glm = _fit_poisson_glm(features, train[..., heldout], l2, steps)
    return GaussianSmoothing(sigma=sigma, dt=data.dt, heldin=heldin, heldout=heldout, glm=glm)


class _BiRNN(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_latents: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(n_in, n_latents, batch_first=True, bidirectional=True)
        self.readout = nn.Linear(n_latents, n_out)

    def forward(self, x):
        forward, backward = self.rnn(x)[0].chunk(2, -1)
        latents = (forward + backward) / 2
        return nn.functional.softplus(self.readout(latents), beta=10), latents


class Seq2Seq(BaselineFit):
    """The trained bidirectional RNN ``net`` of :func:`seq2seq`: held-out neurons' rates from
    held-in counts; the latents are its averaged forward and backward states.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=2, n_trials=3, n_heldout=5)
        >>> fit = seq2seq(data, n_latents=4, n_iterations=2)
        >>> isinstance(fit, Seq2Seq), fit.neurons.tolist() == data.heldout.tolist()
        (True, True)
    """

    def __init__(self, *, net: nn.Module, dt: float, heldin, heldout) -> None:
        super().__init__(
            neurons=heldout,
            heldin=heldin,
            heldout=heldout,
            dt=dt,
            name=f"seq2seq bi-RNN ({net.rnn.hidden_size} latents)",
        )
        self.net = net

    def _rates_and_latents(self, counts):
        rate, latents = self.net(counts)
        return rate / self.dt, latents


def seq2seq(
    data: SpikeData,
    *,
    n_latents: int = 10,
    n_iterations: int = 1000,
    batch_size: int = 256,
    lr: float = 5e-3,
    seed: int = 0,
) -> Seq2Seq:
    """The Neuromatch bidirectional-RNN model, trained on ``data.train`` held-in → held-out.

    Adam (lr 5e-3), readout bias initialised at the mean counts, Poisson loss λ − k log λ.

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5, n_heldout=5)
        >>> fit = seq2seq(data, n_iterations=5)
        >>> fit.posterior_mean(data.valid.counts[..., data.heldin])["latents"].shape
        torch.Size([4, 100, 10])
    """
    _check_data(data)
    for name, value in (("n_latents", n_latents), ("n_iterations", n_iterations)):
        positive_int(name, value)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    seed_int("seed", seed)
    if not len(data.heldout):
        raise ValueError("data.heldout must name the neurons to predict")
    torch.manual_seed(seed)
    train = data.train.counts
    target = train[..., data.heldout]
    net = _BiRNN(len(data.heldin), len(data.heldout), n_latents)
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
    return Seq2Seq(net=net, dt=data.dt, heldin=data.heldin, heldout=data.heldout)


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


class ConditionPSTH(BaselineFit):
    """Per-condition PSTHs ``psth`` [conditions, time, neurons] (counts per bin) with their
    condition ``labels``, built by :func:`condition_psth`: a trial's rates are the PSTH of the
    condition under which its held-in spikes are most likely, and its latents that condition's
    label ([trials, 1, 1]).

    Example:
        >>> fit = ConditionPSTH(
        ...     labels=torch.tensor([3, 7]),
        ...     psth=torch.tensor([[[0.1]], [[2.0]]]),
        ...     sigma=1.0, dt=0.5, heldin=[0], heldout=[],
        ... )
        >>> fit.posterior_mean(torch.tensor([[[3.0]]]))["latents"].flatten().tolist()
        [7]
    """

    dims = {**BaselineFit.dims, "latents": ["trial", "latents_time", "latents_condition"]}

    def __init__(
        self, *, labels: torch.Tensor, psth: torch.Tensor, sigma: float, dt: float, heldin, heldout
    ) -> None:
        super().__init__(
            neurons=torch.arange(psth.shape[-1]),
            heldin=heldin,
            heldout=heldout,
            dt=dt,
            name=f"condition PSTH (σ = {sigma:g} bins)",
        )
        self.labels, self.psth, self.sigma = labels, psth, sigma
        self.log_psth = psth.clamp(min=1e-6).log()

    def _rates_and_latents(self, counts):
        heldin = self.heldin
        log_likelihood = torch.einsum("vtn,ctn->vc", counts, self.log_psth[..., heldin])
        log_likelihood = log_likelihood - self.psth[..., heldin].sum((1, 2))
        chosen = log_likelihood.argmax(1)
        return self.psth[chosen] / self.dt, self.labels[chosen].view(-1, 1, 1)


def condition_psth(data: SpikeData, *, sigma: float = 8.0) -> ConditionPSTH:
    """Rates from the condition a trial's spikes point to: each condition's PSTH (its training
    trials' counts averaged and smoothed with a Gaussian kernel of ``sigma`` bins), chosen by the
    Poisson likelihood of the trial's held-in spikes. The fit's rates cover every neuron and its
    latents are the chosen condition's label per trial ([trials, 1, 1]).

    Example:
        >>> from pyro_circuits.datasets import lorenz
        >>> data = lorenz(n_conditions=4, n_trials=5)
        >>> chosen = condition_psth(data).posterior_mean(data.valid.counts)["latents"]
        >>> bool((chosen.flatten() == data.conditions[data.valid_idx]).all())
        True
    """
    _check_data(data)
    positive_float("sigma", sigma)
    if data.conditions is None:
        raise ValueError("condition_psth needs data.conditions, a condition label per trial")
    labels, psth = condition_average(
        _smooth(data.train.counts, sigma), data.conditions[data.train_idx]
    )
    return ConditionPSTH(
        labels=labels, psth=psth, sigma=sigma, dt=data.dt, heldin=data.heldin, heldout=data.heldout
    )

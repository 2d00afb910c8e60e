"""Predicting an optogenetic perturbation from the light command alone: baselines and scores.

* :func:`sham_psth` -- the no-effect baseline: every trial's rates are the sham trials' PSTH;
* :class:`LightGLM` (:func:`light_glm`) -- a per-unit Poisson GLM (scikit-learn's
  ``PoissonRegressor``) whose regressors are the light convolved with a raised-cosine kernel
  basis and the unit's trial-averaged sham activity (its log sham PSTH);
* :func:`prior_predictive_rates` -- the rates a generative model with measured inputs (LFADS
  with ``ext_dim``) predicts from the inputs alone, averaged over its prior;
* :func:`perturbation_scores` -- bits/spike of held-out trials against the sham PSTH, and R² of
  the light-evoked PSTH change (opto − sham) over the units the light changes significantly.

Every rate here is in Hz, [trials, time, neurons].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_circuits.checks import check_counts, positive_int
from pyro_circuits.datasets.conditions import conditions_of
from pyro_circuits.metrics import bits_per_spike

__all__ = [
    "LightGLM",
    "light_glm",
    "light_basis",
    "perturbation_scores",
    "prior_predictive_rates",
    "sham_psth",
    "simulated_rates",
]


def _smooth_time(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of [..., time, neurons] along time (edges renormalised)."""
    if sigma <= 0:
        return x
    half = int(math.ceil(3 * sigma))
    lags = torch.arange(-half, half + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (lags / sigma) ** 2)
    flat = x.movedim(-2, -1).reshape(-1, 1, x.shape[-2])
    ones = torch.ones_like(flat[:1])
    num = torch.nn.functional.conv1d(flat, kernel.view(1, 1, -1), padding=half)
    den = torch.nn.functional.conv1d(ones, kernel.view(1, 1, -1), padding=half)
    return (num / den).reshape(*x.movedim(-2, -1).shape).movedim(-1, -2)


def sham_psth(sham_counts: torch.Tensor, dt: float, *, sigma: float = 2.0) -> torch.Tensor:
    """The sham trials' PSTH in Hz, [time, neurons], smoothed with a Gaussian of ``sigma`` bins
    (0: none) and floored at 0.01 Hz.

    Example:
        >>> sham_psth(torch.ones(4, 3, 2), dt=0.1, sigma=0).tolist()[0]
        [10.0, 10.0]
    """
    check_counts(sham_counts, "sham_counts")
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    return (_smooth_time(sham_counts.mean(0), sigma) / dt).clamp(min=0.01)


def simulated_rates(
    model, light: torch.Tensor, n_units: int, dt: float, *, simulations: int = 300, seed: int = 0
) -> torch.Tensor:
    """Rates (Hz) a simulating circuit model (``model.simulate(n, seed=, inputs=)``, e.g. a
    :class:`~pyro_circuits.models.BioRNN` with ``n_inputs``) predicts for trials with the given
    ``light`` commands [trials, time, channels]: per distinct command, the PSTH of its first
    ``n_units`` neurons over ``simulations`` simulated trials, smoothed and floored as
    :func:`sham_psth`.

    Example:
        >>> from pyro_circuits.models import BioRNN
        >>> model = BioRNN(1, n_exc=3, n_inh=1, n_steps=10, dt=10.0, n_inputs=1, seed=0)
        >>> simulated_rates(model, torch.zeros(2, 10, 1), 3, 0.01, simulations=20).shape
        torch.Size([2, 10, 3])
    """
    positive_int("simulations", simulations)
    rates = torch.empty(*light.shape[:2], n_units)
    for idx in conditions_of(light, len(light)):
        command = light[idx[:1]].expand(simulations, -1, -1)
        with torch.no_grad():
            spikes = model.simulate(simulations, seed=seed, inputs=command)[..., :n_units]
        rates[idx] = sham_psth(spikes, dt)
    return rates


def light_basis(n_basis: int = 8, span: int = 30) -> torch.Tensor:
    """Raised-cosine bumps on a log-stretched lag axis (Pillow et al. 2008), [span, n_basis],
    each summing to 1 (a feature is a weighted mean of the recent light): the light kernel of
    :class:`LightGLM` is a combination of them over lags 0…span−1 bins.

    Example:
        >>> basis = light_basis(4, 10)
        >>> basis.shape, bool(basis[0].sum() > 0)
        (torch.Size([10, 4]), True)
    """
    positive_int("n_basis", n_basis)
    positive_int("span", span)
    stretched = torch.log(torch.arange(span, dtype=torch.float32) + 1.0)
    centres = torch.linspace(0, float(stretched[-1]), n_basis)
    width = (centres[1] - centres[0]) if n_basis > 1 else stretched[-1] + 1
    phase = ((stretched[:, None] - centres) * math.pi / (2 * width)).clamp(-math.pi, math.pi)
    bumps = 0.5 * (1 + torch.cos(phase)) * ((stretched[:, None] - centres).abs() < 2 * width)
    return bumps / bumps.sum(0)


def _light_features(light: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """[conditions, time] light convolved causally with each basis column → [c, time, n_basis]."""
    span = basis.shape[0]
    padded = torch.nn.functional.pad(light[:, None], (span - 1, 0))
    kernel = basis.T.flip(-1)[:, None]  # [n_basis, 1, span], flipped: conv1d correlates
    return torch.nn.functional.conv1d(padded, kernel).transpose(1, 2)


@dataclass
class LightGLM:
    """A fitted per-unit Poisson GLM: log rate = b + w·(light * kernel basis) + a·log sham PSTH.

    ``coef`` [neurons, n_basis + 1], ``intercept`` [neurons], ``basis`` [span, n_basis],
    ``log_sham`` [time, neurons] (log sham PSTH, Hz), ``dt``. :meth:`predict` gives rates (Hz)
    from a light command alone. Built by :func:`light_glm`.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    basis: torch.Tensor
    log_sham: torch.Tensor
    dt: float
    wall_time: float = 0.0
    #: Rates are capped here (Hz): an exponential link extrapolates without bound.
    max_rate: float = 1000.0

    def predict(self, light: torch.Tensor) -> torch.Tensor:
        """Rates (Hz) [trials, time, neurons] of trials with light commands [trials, time(, 1)]."""
        light = light[..., 0] if light.dim() == 3 else light
        if light.dim() != 2 or light.shape[1] != self.log_sham.shape[0]:
            raise ValueError(
                f"light must be [trials, {self.log_sham.shape[0]}(, 1)], got {tuple(light.shape)}"
            )
        features = _light_features(light.float(), self.basis)  # [trials, time, n_basis]
        drive = features @ self.coef[:, :-1].T + self.coef[:, -1] * self.log_sham
        return (
            torch.exp((drive + self.intercept).clamp(max=math.log(self.max_rate * self.dt)))
            / self.dt
        )


def light_glm(
    counts: torch.Tensor,
    light: torch.Tensor,
    sham: torch.Tensor,
    dt: float,
    *,
    n_basis: int = 8,
    span: int = 30,
    alpha: float = 1e-2,
    sigma: float = 2.0,
    progress: bool = False,
) -> LightGLM:
    """Fit :class:`LightGLM` per unit with scikit-learn's ``PoissonRegressor`` (L2 ``alpha``).

    ``counts`` [trials, time, neurons] and ``light`` [trials, time(, 1)] are the training trials;
    ``sham`` is a boolean mask of the sham (no-light) trials among them, whose PSTH (smoothed by
    ``sigma`` bins) is the trial-averaged activity regressor. Every regressor is the same on all
    trials of one light command, so the fit runs on the trials grouped by command (their mean
    counts weighted by their number: the same Poisson likelihood, far fewer rows).

    Example:
        >>> light = torch.zeros(6, 20); light[3:, 5:10] = 1.0
        >>> counts = torch.poisson(torch.full((6, 20, 2), 0.2)); counts[3:, 6:12, 0] += 2
        >>> glm = light_glm(counts, light, torch.arange(6) < 3, dt=0.01, n_basis=3, span=6)
        >>> rates = glm.predict(light)
        >>> bool(rates[3:, 7:10, 0].mean() > rates[:3, 7:10, 0].mean())
        True
    """
    from sklearn.linear_model import PoissonRegressor
    from tqdm.auto import tqdm

    check_counts(counts)
    light = light[..., 0] if light.dim() == 3 else light
    sham = torch.as_tensor(sham, dtype=torch.bool)
    if light.shape != counts.shape[:2]:
        raise ValueError(f"light must be [trials, time] matching counts, got {tuple(light.shape)}")
    if sham.shape != (counts.shape[0],) or not sham.any():
        raise ValueError("sham must be a boolean mask over the trials with at least one True")
    import time

    start = time.perf_counter()
    log_sham = sham_psth(counts[sham], dt, sigma=sigma).log()
    basis = light_basis(n_basis, span)
    commands, group = torch.unique(light, dim=0, return_inverse=True)
    n_groups = len(commands)
    weights = torch.bincount(group, minlength=n_groups).float()
    means = counts.new_zeros(n_groups, *counts.shape[1:]).index_add_(0, group, counts)
    means = means / weights[:, None, None]
    features = _light_features(commands.float(), basis)  # [groups, time, n_basis]
    n_time, n_neurons = counts.shape[1:]
    rows = features.reshape(-1, n_basis).numpy().astype(np.float64)
    row_weight = weights.repeat_interleave(n_time).numpy()
    coef = np.zeros((n_neurons, n_basis + 1))
    intercept = np.zeros(n_neurons)
    for n in tqdm(range(n_neurons), desc="light GLM", disable=not progress):
        x = np.concatenate(
            [rows, np.tile(log_sham[:, n].numpy(), n_groups)[:, None].astype(np.float64)], 1
        )
        y = means[..., n].reshape(-1).numpy().astype(np.float64)
        if y.sum() == 0:
            intercept[n] = math.log(1e-4)
            continue
        reg = PoissonRegressor(alpha=alpha, max_iter=500).fit(x, y, sample_weight=row_weight)
        coef[n], intercept[n] = reg.coef_, reg.intercept_
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return LightGLM(
        coef=as_t(coef),
        intercept=as_t(intercept),
        basis=basis,
        log_sham=log_sham,
        dt=dt,
        wall_time=time.perf_counter() - start,
    )


@torch.no_grad()
def prior_predictive_rates(
    model, inputs: torch.Tensor, n_neurons: int, *, num_samples: int = 20, seed: int = 0
) -> torch.Tensor:
    """Mean ``rates`` (Hz) over ``num_samples`` draws from the model's prior, given only the
    measured ``inputs`` [trials, time, k]: what a generative model with measured inputs (LFADS
    with ``ext_dim``) predicts for trials whose spikes it never sees.

    Example:
        >>> from pyro_circuits.models import LFADS
        >>> model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, ext_dim=1)
        >>> prior_predictive_rates(model, torch.zeros(5, 7, 1), 3, num_samples=2).shape
        torch.Size([5, 7, 3])
    """
    positive_int("num_samples", num_samples)
    if inputs.dim() != 3:
        raise ValueError(f"inputs must be [trials, time, k], got {tuple(inputs.shape)}")
    model.eval()
    pyro.set_rng_seed(seed)
    dummy = inputs.new_zeros(*inputs.shape[:2], n_neurons)
    with (
        pyro.settings.context(module_local_params=True),
        pyro.plate("samples", num_samples, dim=-2),
    ):
        trace = poutine.trace(model).get_trace(dummy, inputs)
    return trace.nodes["rates"]["value"].mean(0)


def _rebin(x: np.ndarray, width: int) -> np.ndarray:
    """Mean over consecutive ``width``-bin windows of axis −2 (the remainder dropped)."""
    n = x.shape[-2] // width * width
    return x[..., :n, :].reshape(*x.shape[:-2], n // width, width, x.shape[-1]).mean(-2)


def perturbation_scores(
    rates: torch.Tensor,
    counts: torch.Tensor,
    conditions: torch.Tensor,
    sham_rates: torch.Tensor,
    sham_counts: torch.Tensor,
    predicted_sham: torch.Tensor,
    dt: float,
    *,
    window: slice = slice(None),
    rebin: int = 5,
    p_value: float = 1e-3,
) -> dict:
    """Scores of predicted rates on held-out perturbed trials.

    * ``bits_per_spike``: log-likelihood gain of ``rates`` over the sham PSTH ``sham_rates``
      ([time, neurons], Hz) on ``counts``, in bits per spike (> 0: better than "no effect");
    * ``evoked_r2``: R² of the light-evoked PSTH change per unit — recorded (condition PSTH of
      ``counts`` − PSTH of ``sham_counts``) against predicted (condition mean of ``rates`` −
      ``predicted_sham``, the model's own rates without light, [time, neurons]) — pooled over
      held-out conditions, the ``window`` bins rebinned by ``rebin``, and the units whose
      spike count in ``window`` differs between the held-out and the sham trials (two-sided
      Mann–Whitney U, p < ``p_value``, any condition); ``n_significant`` counts them.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> truth = torch.ones(20, 10, 3) * 5.0; truth[:, 5:, 0] = 40.0
        >>> counts = torch.poisson(truth * 0.1, generator=g)
        >>> sham = torch.poisson(torch.full((20, 10, 3), 0.5), generator=g)
        >>> s = perturbation_scores(truth, counts, torch.zeros(20), torch.full((10, 3), 5.0),
        ...                         sham, torch.full((10, 3), 5.0), 0.1, rebin=1)
        >>> s["n_significant"], s["bits_per_spike"] > 0, s["evoked_r2"] > 0.5
        (1, True, True)
    """
    from scipy.stats import mannwhitneyu

    check_counts(counts)
    check_counts(sham_counts, "sham_counts")
    if rates.shape != counts.shape:
        raise ValueError(f"rates {tuple(rates.shape)} and counts {tuple(counts.shape)} differ")
    null = sham_rates.expand_as(counts)
    bps = bits_per_spike(rates, counts, dt) - bits_per_spike(null, counts, dt)
    conditions = torch.as_tensor(conditions)
    labels = torch.unique(conditions)
    sham_np = sham_counts.numpy()
    recorded, predicted, significant = [], [], np.zeros(counts.shape[-1], dtype=bool)
    sham_window = sham_np[:, window].sum(1)
    sham_psth_hz = sham_np.mean(0) / dt
    for label in labels:  # a dozen conditions at most
        mine = (conditions == label).numpy()
        c = counts.numpy()[mine]
        p = mannwhitneyu(c[:, window].sum(1), sham_window, axis=0).pvalue
        significant |= np.nan_to_num(p, nan=1.0) < p_value
        recorded.append(_rebin((c.mean(0) / dt - sham_psth_hz)[window], rebin))
        predicted.append(
            _rebin((rates.numpy()[mine].mean(0) - predicted_sham.numpy())[window], rebin)
        )
    recorded, predicted = np.stack(recorded), np.stack(predicted)
    r2 = float("nan")
    if significant.any():
        truth, guess = recorded[..., significant], predicted[..., significant]
        r2 = float(1 - ((truth - guess) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
    return {
        "bits_per_spike": float(bps),
        "evoked_r2": r2,
        "n_significant": int(significant.sum()),
        "significant": np.flatnonzero(significant).tolist(),
    }

"""Dynamic neural stitching (Pandarinath et al. 2018): one LFADS shared by recording sessions of
different neurons.

Every session has its own read-in, a linear map from its neurons' counts to a shared encoder
input, and its own read-out, a linear map from the shared factors to its neurons' log rates;
the initial-condition prior, the generator, the factor map (and the encoder core of the guide
:class:`~pyro_circuits.guides.StitchedEncoder`) are shared by all. Sessions travel together in
one tensor (``datasets.Sessions.pack``): counts zero-padded to the widest session and
``inputs`` [trials, time, 1] holding each trial's session index, so that the package's training
(:func:`~pyro_circuits.svi.train`) fits them jointly, sessions interleaved in each minibatch.
A trial's read-in and read-out are those of its session only: another session's maps take no
part in its likelihood, so they get no gradient from it.

:func:`principal_components_regression` is the paper's initialisation: PCA of the sessions'
concatenated condition-averaged, smoothed activity, then, per session, ridge regression of the
shared components on its activity (read-in) and of its log rates on the components (read-out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from pyro_circuits.checks import check_counts, positive_int, real
from pyro_circuits.models.lfads import LFADS

__all__ = ["StitchedLFADS", "principal_components_regression", "ridge"]


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0):
    """Ridge regression y ≈ x W + b of rows [samples, features], penalty ``alpha``·‖W‖² on the
    centred data (the intercept unpenalised): (W [features, outputs], b [outputs]).

    Example:
        >>> x = torch.randn(50, 3, dtype=torch.float64)
        >>> w, b = ridge(x, x @ torch.ones(3, 1, dtype=torch.float64) + 2, alpha=1e-9)
        >>> w.squeeze().round(decimals=6).tolist(), round(b.item(), 6)
        ([1.0, 1.0, 1.0], 2.0)
    """
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, xc.T @ (y - y_mean))
    return weight, y_mean - x_mean @ weight


def principal_components_regression(
    activity: Sequence[torch.Tensor], n_components: int, alpha: float = 1.0
):
    """Shared components of several sessions' activity and each session's map onto them.

    ``activity``: one [samples, neurons] array per session whose rows correspond (the same
    condition and time bin). The rows of all sessions side by side are centred and their first
    ``n_components`` principal components, scaled to unit variance, are the shared components
    [samples, n_components]; each session's read-in is the :func:`ridge` regression of them on
    its activity. Returns (components, [(weight, bias) per session]).

    Example:
        >>> z = torch.randn(40, 2, dtype=torch.float64)
        >>> a, b = z @ torch.randn(2, 5).double(), z @ torch.randn(2, 4).double()
        >>> pcs, maps = principal_components_regression([a, b], 2, alpha=1e-9)
        >>> all(torch.allclose(x @ w + c, pcs, atol=1e-5) for x, (w, c) in zip([a, b], maps))
        True
    """
    stacked = torch.cat(list(activity), -1)
    n_components = positive_int("n_components", n_components)
    if n_components > min(stacked.shape):
        raise ValueError(
            f"n_components must be at most {min(stacked.shape)} (samples, neurons), "
            f"got {n_components}"
        )
    centred = stacked - stacked.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    pcs = centred @ vh[:n_components].T
    pcs = pcs / pcs.std(0).clamp(min=1e-12)
    return pcs, [ridge(x, pcs, alpha) for x in activity]


class StitchedLFADS(LFADS):
    """One LFADS for several sessions, each with its own read-in and read-out (module docs).

    Arguments:
        n_neurons: each session's number of neurons, in session order.
        read_in_dim: width of the shared encoder input (default ``fac_dim``).
        **lfads: the shared LFADS's options (``ic_dim``, ``gen_dim``, ``fac_dim``, ``co_dim``,
            ``dt``, priors, ``dropout``); the likelihood is Poisson, without measured inputs.

    Call signature ``model(counts, inputs, *, n_trials=None, cd_mask=None)`` with counts
    [trials, time, max(n_neurons)] (a session's neurons first, zeros after them) and ``inputs``
    [trials, time, 1] holding each trial's session index, as ``Sessions.pack`` gives them.
    Sites as :class:`LFADS`; ``rates`` are 0 on the padding, which the likelihood skips.

    Example:
        >>> model = StitchedLFADS([3, 5], ic_dim=4, gen_dim=8, fac_dim=2)
        >>> sessions = torch.tensor([0.0, 1.0]).reshape(2, 1, 1).expand(2, 7, 1)
        >>> counts = torch.zeros(2, 7, 5)
        >>> rates = pyro.poutine.trace(model).get_trace(counts, sessions).nodes["rates"]["value"]
        >>> (rates[0, :, 3:] == 0).all().item(), (rates[1] > 0).all().item()
        (True, True)
    """

    def __init__(self, n_neurons: Sequence[int], *, read_in_dim: int | None = None, **lfads):
        if isinstance(n_neurons, int) or not isinstance(n_neurons, Sequence) or not n_neurons:
            raise TypeError(
                f"n_neurons must be a list of each session's neurons, got {n_neurons!r}"
            )
        sizes = tuple(positive_int(f"n_neurons[{i}]", n) for i, n in enumerate(n_neurons))
        for option in ("ext_dim", "likelihood"):
            if option in lfads:
                raise TypeError(f"StitchedLFADS takes no {option}: Poisson counts, no inputs")
        if read_in_dim is not None:
            positive_int("read_in_dim", read_in_dim)
        super().__init__(max(sizes), **lfads)
        self.session_sizes = sizes
        self.read_in_dim = self.fac_dim if read_in_dim is None else read_in_dim
        self.read_in = nn.ModuleList(nn.Linear(n, self.read_in_dim) for n in sizes)
        self.readout = nn.ModuleList(nn.Linear(self.fac_dim, n) for n in sizes)
        for layer in self.readout:
            nn.init.normal_(layer.weight, std=1 / math.sqrt(self.fac_dim))
            nn.init.zeros_(layer.bias)
        valid = torch.arange(max(sizes)) < torch.tensor(sizes)[:, None]
        self.register_buffer("neuron_mask", valid)  # [session, neuron]: the session records it

    @property
    def n_sessions(self) -> int:
        """The number of sessions."""
        return len(self.session_sizes)

    def sessions_of(self, inputs: torch.Tensor) -> torch.Tensor:
        """Each trial's session index [trials] from ``inputs`` [trials, time, 1]."""
        if not torch.is_tensor(inputs) or inputs.dim() != 3 or inputs.shape[-1] != 1:
            shape = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
            raise ValueError(f"inputs must be session indices [trials, time, 1], got {shape}")
        index = inputs[:, 0, 0]
        if not (inputs[..., 0] == index[:, None]).all():
            raise ValueError("inputs must hold one session index per trial, constant in time")
        if (index != index.round()).any() or (index < 0).any() or (index >= self.n_sessions).any():
            raise ValueError(
                f"inputs must hold session indices 0 to {self.n_sessions - 1}, "
                f"got {sorted(set(index.tolist()))}"
            )
        return index.long()

    def check_data(self, counts, inputs=None) -> None:
        """Counts of the padded width, and with ``inputs`` valid session indices and no spikes
        on a trial's padding."""
        check_counts(counts)
        if counts.shape[-1] != self.n_neurons:
            raise ValueError(
                f"counts must have {self.n_neurons} columns (the widest session), "
                f"got {counts.shape[-1]}"
            )
        if inputs is None:
            return
        if inputs.shape[:2] != counts.shape[:2]:
            raise ValueError(f"inputs must be [{counts.shape[0]}, {counts.shape[1]}, 1]")
        padding = ~self.neuron_mask[self.sessions_of(inputs)]
        if (counts * padding[:, None]).any():
            raise ValueError("counts has spikes beyond a session's neurons (its padding)")

    def encoder_input(self, counts: torch.Tensor, inputs: torch.Tensor | None = None):
        """What the guide's encoder reads: each trial's counts through its session's read-in,
        [trials, time, read_in_dim]."""
        if inputs is None:
            raise ValueError("the stitched encoder input needs inputs (each trial's session)")
        sessions = self.sessions_of(inputs)
        out = counts.new_zeros(*counts.shape[:-1], self.read_in_dim)
        for s in sessions.unique().tolist():
            rows = sessions == s
            out[rows] = self.read_in[s](counts[rows][..., : self.session_sizes[s]])
        return out

    def log_rates(self, factors: torch.Tensor, sessions: torch.Tensor) -> torch.Tensor:
        """Each trial's factors [..., trials, time, fac_dim] through its session's read-out:
        log rates [..., trials, time, max neurons], 0 on the padding."""
        out = factors.new_zeros(*factors.shape[:-1], self.n_neurons)
        for s in sessions.unique().tolist():
            rows = sessions == s
            out[..., rows, :, : self.session_sizes[s]] = self.readout[s](factors[..., rows, :, :])
        return out

    def forward(self, counts, inputs=None, *, n_trials=None, cd_mask=None):
        if inputs is None:
            raise ValueError("inputs must hold each trial's session index (Sessions.pack)")
        self.check_data(counts, inputs)
        sessions = self.sessions_of(inputs)
        n_batch, n_steps, _ = counts.shape
        subsample = torch.arange(n_batch, device=counts.device)
        with pyro.plate("trials", n_trials or n_batch, subsample=subsample, dim=-1):
            factors = self.sample_factors(n_batch, n_steps)
            rates = torch.exp(self.log_rates(factors, sessions))
            recorded = self.neuron_mask[sessions][:, None, :].expand(counts.shape)
            pyro.deterministic("rates", rates * recorded, event_dim=2)
            scored = recorded if cd_mask is None else recorded & (cd_mask == 0)
            observation = dist.Poisson(rates * self.dt).mask(scored)
            return pyro.sample("counts", observation.to_event(2), obs=counts)

    # --- initialisation -------------------------------------------------------------------------
    def set_readout_rate(self, mean_count: torch.Tensor, session: int = 0) -> StitchedLFADS:
        """Read-out bias of ``session`` = log of each of its neurons' mean count per bin, in Hz."""
        with torch.no_grad():
            rate = mean_count.clamp(min=1e-3) / self.dt
            self.readout[session].bias.copy_(torch.log(rate))
        return self

    def init_readout(self, counts: torch.Tensor, inputs: torch.Tensor | None = None):
        """Set each session's read-out bias to its neurons' mean log rate in ``counts``."""
        if inputs is None:
            raise ValueError("init_readout needs inputs (each trial's session)")
        self.check_data(counts, inputs)
        sessions = self.sessions_of(inputs)
        for s in sessions.unique().tolist():
            mean = counts[sessions == s].mean((0, 1))[: self.session_sizes[s]]
            self.set_readout_rate(mean, s)
        return self

    def init_pcr(
        self,
        sessions,
        *,
        smooth: float = 2.0,
        alpha: float = 1.0,
        freeze_read_in: bool = False,
        freeze_read_out: bool = False,
    ) -> StitchedLFADS:
        """Initialise the read-ins (and, when ``fac_dim == read_in_dim``, the read-outs) by
        :func:`principal_components_regression` of the sessions' training trials.

        ``sessions``: the sessions in model order, each with ``counts``, ``conditions`` and
        ``train`` (a :class:`~pyro_circuits.datasets.Sessions` or a list of ``SpikeData``).
        Activity: each condition's trial-averaged counts that every session recorded (one
        condition when a session has no labels), smoothed in time by a Gaussian of ``smooth``
        bins (0: none). Read-ins: the shared components on the activity; read-outs: the log
        rates (floored at 10⁻³ counts per bin) on the components; ``alpha``: the ridge
        penalty. The ``freeze_*`` flags then hold those maps fixed in training.
        """
        sessions = list(sessions)
        if len(sessions) != self.n_sessions:
            raise ValueError(f"sessions must hold the model's {self.n_sessions} sessions")
        real("smooth", smooth, low=0.0)
        real("alpha", alpha, low=0.0)
        activity = _condition_averages(sessions, self.session_sizes, smooth)
        flat = [a.reshape(-1, a.shape[-1]).double() for a in activity]
        pcs, read_ins = principal_components_regression(flat, self.read_in_dim, alpha)
        with torch.no_grad():
            for s, (weight, bias) in enumerate(read_ins):
                self.read_in[s].weight.copy_(weight.T)
                self.read_in[s].bias.copy_(bias)
                if self.fac_dim == self.read_in_dim:
                    log_rate = torch.log(flat[s].clamp(min=1e-3) / self.dt)
                    weight, bias = ridge(pcs, log_rate, alpha)
                    self.readout[s].weight.copy_(weight.T)
                    self.readout[s].bias.copy_(bias)
                else:
                    self.set_readout_rate(flat[s].mean(0), s)
        self.read_in.requires_grad_(not freeze_read_in)
        self.readout.requires_grad_(not freeze_read_out)
        return self


def _condition_averages(sessions, sizes, smooth: float) -> list[torch.Tensor]:
    """Per session, the trial-averaged training counts of each condition all sessions share,
    [conditions, time, neurons], smoothed in time."""
    labels = []
    for i, (session, size) in enumerate(zip(sessions, sizes, strict=True)):
        if session.counts.shape[-1] != size:
            raise ValueError(
                f"session {i} has {session.counts.shape[-1]} neurons, the model {size}"
            )
        train = session.train
        labels.append(
            torch.zeros(len(train.counts), dtype=torch.long)
            if train.conditions is None
            else train.conditions
        )
    shared = sorted(set.intersection(*(set(lab.tolist()) for lab in labels)))
    if not shared:
        raise ValueError("the sessions share no condition label to average over")
    averages = []
    for session, lab in zip(sessions, labels, strict=True):
        counts = session.train.counts
        mean = torch.stack([counts[lab == c].mean(0) for c in shared])
        if smooth > 0:
            mean = torch.as_tensor(gaussian_filter1d(mean.numpy(), smooth, axis=1, mode="nearest"))
        averages.append(mean)
    return averages

"""Biologically constrained spiking circuits (bioRNN) and their unconstrained rate twin (σRNN).

The model family of Sourmpis et al. ("Biologically informed cortical models predict optogenetic
perturbations"), written as one Pyro program, :class:`BioRNN`. Areas × (E, I) populations of
leaky units in abstract voltage units (rest 0, threshold ``THRESHOLD`` = 0.1)::

    v_j(t) = α_j v_j(t−1) + (1 − α_j)(d_j(t) + v_rest,j) + σ_j θ √dt ξ_j(t)
    d_j(t) = [Σ_i s_i W_ij z_i(t − delay) + W_in,j x(t)] / dt          (the "drive", + light)
    z_j(t) ~ Bernoulli(dt · exp(x_j / Δ)),  x_j = (v_j − θ)/θ,  Δ = 2/25   (escape noise)

with reset (v ← v − θ z), a refractory period, and a triangular surrogate gradient
γ·max(0, 1 − |x|) for the Bernoulli draw (:class:`EscapeSpike`). The σRNN replaces the spike by
the deterministic rate sigmoid(5x)·dt/2 and drops reset and refractoriness.

Constraints are flags of the same program: ``dale`` (weights are magnitudes, the sign is the
presynaptic type, projected to ≥ 0 after every optimiser step by :meth:`BioRNN.project`),
``local_inhibition`` (I columns connect only within their own area), ``blocked`` area → area
pathways (kept exactly zero) and the cross-area L½ sparsity prior (``sparsity``, a proximal step in
:meth:`BioRNN.project`).

All randomness is drawn up front through :func:`~pyro_circuits.sites.noise` (membrane noise and the
uniforms of the spike draws), so one seed replays the same noise with and without light. The drive
of every neuron passes through the perturbation point ``"drive"`` with population labels
``"<area>/E"`` and ``"<area>/I"``: :class:`~pyro_circuits.handlers.optogenetic` with a ``current``
(in the units of θ; 0.1 is the distance from rest to threshold) is the light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from torch import nn

from pyro_circuits.checks import check_counts
from pyro_circuits.handlers.perturb import optogenetic, site
from pyro_circuits.sites import LocalPyroModule, noise

__all__ = ["THRESHOLD", "BioRNN", "EscapeSpike", "reference_circuit"]

#: Firing threshold in the model's abstract voltage units (rest is 0).
THRESHOLD = 0.1
_DELTA = 2.0 / 25.0  # escape-noise softness, in units of θ
_DAMPENING = 0.3  # surrogate-gradient height γ
_TEMPERATURE = 5.0  # σRNN sigmoid slope


class EscapeSpike(torch.autograd.Function):
    """Bernoulli spike with exponential escape noise; backward is the triangular surrogate.

    ``forward(x, u, dt)``: ``x`` is the scaled voltage (v − θ)/θ, ``u`` a uniform draw of the same
    shape; the spike is ``u < min(1, dt·exp(x/Δ))``. The gradient with respect to ``x`` is
    ``γ·max(0, 1 − |x|)`` (γ = 0.3), with no gradient to ``u`` or ``dt``.

    Example:
        >>> x = torch.tensor([-2.0, 0.0, 0.5], requires_grad=True)
        >>> z = EscapeSpike.apply(x, torch.tensor([0.5, 0.5, 0.5]), 2.0)
        >>> z.tolist()
        [0.0, 1.0, 1.0]
        >>> z.sum().backward(); x.grad.tolist()
        [0.0, 0.30000001192092896, 0.15000000596046448]
    """

    @staticmethod
    def forward(ctx, x, u, dt):
        ctx.save_for_backward(x)
        prob = (dt * torch.exp((x / _DELTA).clamp(max=30.0))).clamp(max=1.0)
        return (u < prob).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _DAMPENING * (1.0 - x.abs()).clamp(min=0.0), None, None


def escape_probability(x: torch.Tensor, dt: float) -> torch.Tensor:
    """The per-step spike probability min(1, dt·exp(x/Δ)) of the escape-noise unit."""
    return (dt * torch.exp((x / _DELTA).clamp(max=30.0))).clamp(max=1.0)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class BioRNN(LocalPyroModule):
    """A multi-area E/I recurrent circuit: the bioRNN, the σRNN, or any ablation, by flags.

    Arguments:
        n_areas: number of areas (each ``n_exc`` E then ``n_inh`` I neurons; neurons are ordered
            area by area).
        n_exc, n_inh: E and I neurons per area.
        n_steps: time steps per trial; dt: step in ms.
        stim_step: the step of the stimulus (the input pulse starts ``thalamic_delay`` ms later and
            lasts ``stim_duration`` ms, height dt/2, on every trial; ``stim_duration=0``: none).
        n_inputs: channels of a measured per-trial input (e.g. a light command) that reaches
            every neuron through a learned per-neuron gain (``w_light``, non-negative under
            Dale's law: a depolarising current); the call then takes ``inputs``.
        spiking: escape-noise spikes with reset and refractoriness (True) or the σRNN's sigmoid
            rate unit (False).
        dale: weights are non-negative magnitudes signed by the presynaptic type (projected after
            each step); False lets them take any sign.
        local_inhibition: inhibitory columns connect only within their own area.
        blocked: ``(source, target)`` area pairs whose synapses are kept at zero.
        sparsity: strength of the L½ proximal step on cross-area (and input) weights.
        l1_decay: strength of the L½ step on all recurrent weights.
        noise_level: membrane noise σ (per area, multiplied by a trainable per-neuron factor).
        tau_exc, tau_inh: membrane time constants in ms.
        refractory: refractory period in ms; delay: synaptic delay in steps (≥ 1).
        seed: seed of the initial weights.

    Calling it simulates ``n_trials`` trials and returns spikes (or rates) of shape
    ``(n_trials, n_steps, n_neurons)``, recorded in the deterministic site ``"spikes"``.

    Example:
        >>> model = BioRNN(n_exc=4, n_inh=1, n_steps=20, stim_step=5, seed=0)
        >>> pyro.set_rng_seed(0)
        >>> model(3).shape
        torch.Size([3, 20, 10])
        >>> model.populations[:2]
        ('A0/E', 'A0/E')
    """

    def __init__(
        self,
        n_areas: int = 2,
        n_exc: int = 40,
        n_inh: int = 10,
        *,
        n_steps: int = 100,
        dt: float = 2.0,
        stim_step: int = 24,
        spiking: bool = True,
        dale: bool = True,
        local_inhibition: bool = True,
        blocked: Sequence[tuple[int, int]] = (),
        sparsity: float = 0.0,
        l1_decay: float = 0.0,
        noise_level: float = 0.14,
        tau_exc: float = 30.0,
        tau_inh: float = 10.0,
        refractory: float = 4.0,
        delay: int = 1,
        thalamic_delay: float = 4.0,
        stim_duration: float = 10.0,
        n_inputs: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_int("n_areas", n_areas, 1)
        _check_int("n_exc", n_exc, 1)
        _check_int("n_inh", n_inh, 0)
        _check_int("n_steps", n_steps, 1)
        _check_int("stim_step", stim_step, 0)
        _check_int("delay", delay, 1)
        _check_int("seed", seed, 0)
        _check_int("n_inputs", n_inputs, 0)
        if not stim_duration >= 0:
            raise ValueError(f"stim_duration must be >= 0 (ms), got {stim_duration}")
        if not dt > 0:
            raise ValueError(f"dt must be positive (ms), got {dt}")
        if sparsity < 0 or l1_decay < 0:
            raise ValueError(f"sparsity and l1_decay must be >= 0, got {sparsity}, {l1_decay}")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        blocked = tuple((int(a), int(b)) for a, b in blocked)
        for a, b in blocked:
            if not (0 <= a < n_areas and 0 <= b < n_areas) or a == b:
                raise ValueError(
                    f"blocked pathway {(a, b)} must name two different areas in [0, {n_areas})"
                )
        self.n_areas, self.n_exc, self.n_inh = n_areas, n_exc, n_inh
        self.n_steps, self.dt, self.stim_step = n_steps, float(dt), stim_step
        self.spiking, self.dale, self.local_inhibition = spiking, dale, local_inhibition
        self.blocked, self.sparsity, self.l1_decay = blocked, float(sparsity), float(l1_decay)
        self.noise_level, self.delay = float(noise_level), delay
        self.refractory_steps = int(refractory // dt) if spiking else 0
        per_area = n_exc + n_inh
        self.n_neurons = n = n_areas * per_area
        area = torch.arange(n) // per_area
        excitatory = (torch.arange(n) % per_area) < n_exc
        self.populations = tuple(
            f"A{int(a)}/{'E' if e else 'I'}" for a, e in zip(area, excitatory, strict=True)
        )
        self.register_buffer("area", area)
        self.register_buffer("excitatory", excitatory)
        self.register_buffer("sign", torch.where(excitatory, 1.0, -1.0))
        tau = torch.where(excitatory, tau_exc, tau_inh)
        self.register_buffer("alpha", torch.exp(-self.dt / tau))
        same = area[:, None] == area[None, :]  # [pre, post]
        mask = ~torch.eye(n, dtype=torch.bool)
        if local_inhibition:
            mask &= same | excitatory[:, None]
        for a, b in blocked:
            mask &= ~((area[:, None] == a) & (area[None, :] == b))
        self.register_buffer("mask", mask.float())
        self.register_buffer("across", (~same).float())
        pulse = torch.zeros(n_steps)
        start = stim_step + int(round(thalamic_delay / dt))
        if stim_duration > 0:
            pulse[start : start + max(1, int(round(stim_duration / dt)))] = self.dt / 2
        self.register_buffer("pulse", pulse)

        g = torch.Generator().manual_seed(seed)
        theta = torch.exp(math.log(20.0) + math.log(2.0) * torch.randn(n, n, generator=g))
        theta = theta * same.float() * self.mask  # cross-area weights start at zero
        fan_in = (same.float() * self.mask).sum(0).clamp(min=1.0)
        theta = theta / fan_in
        # balance E and I input per postsynaptic neuron
        exc_sum = (theta * excitatory[:, None]).sum(0)
        inh_sum = (theta * ~excitatory[:, None]).sum(0).clamp(min=1e-12)
        theta = torch.where(excitatory[:, None], theta, theta * exc_sum / inh_sum)
        theta = theta * (THRESHOLD / 0.1) * 0.5
        init = theta if dale else theta * self.sign[:, None]
        self.w_rec = nn.Parameter(init)
        self.w_in = nn.Parameter(0.05 * torch.rand(n, generator=g) * (area == 0).float())
        self.v_rest = nn.Parameter(torch.zeros(n))
        self.noise_bias = nn.Parameter(torch.ones(n))
        self.n_inputs = n_inputs
        if n_inputs:
            self.w_light = nn.Parameter(0.01 * torch.rand(n_inputs, n, generator=g))

    # ----------------------------------------------------------------------------------------
    def effective_weights(self) -> torch.Tensor:
        """Signed recurrent weights ``[pre, post]`` as the dynamics use them (masks applied)."""
        w = self.w_rec * self.mask
        return w * self.sign[:, None] if self.dale else w

    def area_mask(self, area: int, kind: str | None = None) -> torch.Tensor:
        """Boolean mask of the neurons of ``area`` (``kind`` 'E', 'I' or None for both).

        Example:
            >>> BioRNN(n_exc=2, n_inh=1, seed=0).area_mask(1, "I").nonzero().flatten().tolist()
            [5]
        """
        if not isinstance(area, int) or not 0 <= area < self.n_areas:
            raise ValueError(f"area must be an int in [0, {self.n_areas}), got {area!r}")
        if kind not in (None, "E", "I"):
            raise ValueError(f"kind must be 'E', 'I' or None, got {kind!r}")
        selected = self.area == area
        if kind == "E":
            selected &= self.excitatory
        elif kind == "I":
            selected &= ~self.excitatory
        return selected

    @torch.no_grad()
    def project(self, lr: float = 0.0) -> None:
        """The post-step projection: L½ proximal steps (``l1_decay`` on all recurrent weights,
        ``sparsity`` on cross-area and input weights, each ``λ·lr/√|w|``), masks re-applied,
        Dale's law (weights < 1e-7 set to 0), and ``v_rest`` clamped to [−θ, 0.99 θ].

        Example:
            >>> model = BioRNN(n_exc=2, n_inh=1, dale=True, seed=0)
            >>> with torch.no_grad():
            ...     model.w_rec -= 1.0
            >>> model.project(); bool((model.w_rec >= 0).all())
            True
        """
        w = self.w_rec
        for strength, where in (
            (self.l1_decay, torch.ones_like(self.across)),
            (self.sparsity, self.across),
        ):
            if strength > 0 and lr > 0:
                mag = w.abs()
                valid = (mag > 1e-7) & (where > 0)
                step = strength * lr / mag.clamp(min=1e-7).sqrt()
                shrunk = torch.where(valid, (mag - step).clamp(min=0.0), mag)
                w.copy_(torch.sign(w) * shrunk)
        if self.sparsity > 0 and lr > 0:
            mag = self.w_in.abs()
            step = self.sparsity * lr / mag.clamp(min=1e-7).sqrt()
            shrunk = torch.where(mag > 1e-7, (mag - step).clamp(min=0.0), mag)
            self.w_in.copy_(torch.sign(self.w_in) * shrunk)
        w.mul_(self.mask)
        if self.dale:
            w.masked_fill_(w < 1e-7, 0.0)
            self.w_in.masked_fill_(self.w_in < 1e-7, 0.0)
            if self.n_inputs:
                self.w_light.masked_fill_(self.w_light < 1e-7, 0.0)
        self.v_rest.clamp_(-THRESHOLD, 0.99 * THRESHOLD)
        self.noise_bias.clamp_(min=0.0)

    @torch.no_grad()
    def init_rates(self, counts: torch.Tensor) -> BioRNN:
        """Set the resting potentials of the first ``counts.shape[-1]`` neurons (those mapped to
        recorded ones) so that, without input, each fires at its recorded mean rate (spikes per
        step, escape noise p = dt·exp(x/Δ) at v = θ(1 + x)); returns the model.

        Example:
            >>> model = BioRNN(1, n_exc=3, n_inh=1, dt=10.0, seed=0)
            >>> model.init_rates(torch.full((5, 20, 3), 0.05)).v_rest[:3].tolist()[0] > 0
            True
        """
        counts = check_counts(counts, integer=False, nonnegative=True)
        n = counts.shape[-1]
        if n > self.n_neurons:
            raise ValueError(f"counts have {n} neurons, the model {self.n_neurons}")
        rate = counts.mean((0, 1)).clamp(1e-3, 0.99)
        x = _DELTA * torch.log(rate / self.dt)
        self.v_rest[:n] = (THRESHOLD * (1 + x)).clamp(-THRESHOLD, 0.99 * THRESHOLD)
        return self

    def light(
        self,
        area: int,
        kind: str,
        power: float | torch.Tensor,
        window: tuple[float, float] | None = (-0.02, 0.02),
    ) -> optogenetic:
        """Light on the ``kind`` ('E': activation, 'I': inactivation) cells of ``area``: an
        :class:`~pyro_circuits.handlers.optogenetic` handler adding ``power`` (units of θ; a
        number, a [T]/[T, N] tensor or a callable of t) to their drive inside ``window`` (seconds
        from the stimulus; default ±20 ms).

        Example:
            >>> model = BioRNN(n_exc=3, n_inh=1, n_steps=30, stim_step=10, seed=0)
            >>> with model.light(1, "I", 1.0):
            ...     lit = model.simulate(2, seed=0)
            >>> bool(lit[:, :, model.area_mask(1, "I")].sum() > 0)
            True
        """
        if kind not in ("E", "I"):
            raise ValueError(f"kind must be 'E' (activation) or 'I' (inactivation), got {kind!r}")
        mask = self.area_mask(area, kind)
        if not callable(power):
            p = torch.as_tensor(power).detach()
            if torch.isnan(p).any() or (p < 0).any():
                raise ValueError(f"light power must be >= 0, got {power}")
        return optogenetic(mask, window, current=power, site="drive")

    def time(self, step: int) -> float:
        """Time of ``step`` in seconds relative to the stimulus."""
        return (step - self.stim_step) * self.dt / 1000.0

    # ----------------------------------------------------------------------------------------
    def _input_current(self, inputs, n_trials: int) -> torch.Tensor | None:
        """The measured inputs' current (trials, steps, neurons), or None without inputs."""
        if self.n_inputs == 0:
            if inputs is not None:
                raise ValueError("inputs given to a model built with n_inputs=0")
            return None
        expected = (n_trials, self.n_steps, self.n_inputs)
        if not isinstance(inputs, torch.Tensor) or tuple(inputs.shape) != expected:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else inputs
            raise ValueError(f"inputs must be a tensor of shape {expected}, got {shape}")
        gains = self.w_light.clamp(min=0.0) if self.dale else self.w_light
        return inputs.to(gains.dtype) @ gains

    def forward(self, n_trials: int, inputs: torch.Tensor | None = None) -> torch.Tensor:
        _check_int("n_trials", n_trials, 1)
        measured = self._input_current(inputs, n_trials)
        n, steps, dt = self.n_neurons, self.n_steps, self.dt
        xi = noise("membrane_noise", (n_trials, steps, n), like=self.v_rest)
        if self.spiking:
            uniform = torch.special.ndtr(noise("spike_noise", (n_trials, steps, n), like=xi))
        w = self.effective_weights()
        w_in = self.w_in if not self.dale else self.w_in.clamp(min=0.0)
        sigma = self.noise_level * self.noise_bias * THRESHOLD * math.sqrt(dt)
        alpha, v_rest = self.alpha, self.v_rest
        v = v_rest.expand(n_trials, n)
        history = [xi.new_zeros(n_trials, n) for _ in range(self.delay)]
        refractory = xi.new_zeros(n_trials, n)
        out = []
        for t in range(steps):
            current = history[-self.delay] @ w + self.pulse[t] * w_in
            if measured is not None:
                current = current + measured[:, t]
            drive = site(
                "drive", current / dt, t=self.time(t), populations=self.populations, step=t
            )
            drive = drive if drive.shape == v.shape else drive.expand(n_trials, n)
            v = alpha * v + (1 - alpha) * (drive + v_rest) + sigma * xi[:, t]
            x = (v - THRESHOLD) / THRESHOLD
            if self.spiking:
                z = EscapeSpike.apply(x, uniform[:, t], dt)
                if self.refractory_steps:
                    z = z * (refractory == 0)
                    refractory = torch.where(
                        z > 0, float(self.refractory_steps), (refractory - 1).clamp(min=0)
                    )
                v = v - (THRESHOLD - v_rest) * z
            else:
                z = torch.sigmoid(_TEMPERATURE * x) * dt / 2
            history.append(z)
            history.pop(0)
            out.append(z)
        spikes = torch.stack(out, 1)
        return pyro.deterministic("spikes", spikes)

    def simulate(
        self, n_trials: int, seed: int, *, grad: bool = False, inputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run ``n_trials`` trials with the noise of ``seed`` (replayable: the same seed gives
        the same noise, with or without a perturbation handler around the call); ``inputs``:
        the measured inputs (trials, steps, ``n_inputs``) of a model built with ``n_inputs``.

        Example:
            >>> model = BioRNN(n_exc=3, n_inh=1, n_steps=10, stim_step=2, seed=0)
            >>> bool((model.simulate(4, seed=1) == model.simulate(4, seed=1)).all())
            True
        """
        _check_int("seed", seed, 0)
        pyro.set_rng_seed(seed)
        with torch.set_grad_enabled(grad):
            return self(n_trials) if inputs is None else self(n_trials, inputs)


def reference_circuit(
    hypothesis: str,
    *,
    n_exc: int = 40,
    n_inh: int = 10,
    n_steps: int = 100,
    dt: float = 2.0,
    stim_step: int = 24,
    seed: int = 0,
) -> BioRNN:
    """The explicitly specified two-area teacher ("RefCirc") of one hypothesis.

    ``"nofb"``: area 0 → area 1 feedforward only (area 1 → area 0 blocked); ``"withfb"``: the
    same feedforward plus feedback of equal total strength. Weights are set by hand (not fitted):
    strong within-area E → E recurrence makes each area respond all-or-none to the input pulse,
    so trials fall into "both areas respond" or "neither", as in the reference's Go/NoGo design.

    Example:
        >>> teacher = reference_circuit("nofb", n_exc=8, n_inh=2)
        >>> teacher.blocked
        ((1, 0),)
    """
    if hypothesis not in ("nofb", "withfb"):
        raise ValueError(f"hypothesis must be 'nofb' or 'withfb', got {hypothesis!r}")
    model = BioRNN(
        2,
        n_exc,
        n_inh,
        n_steps=n_steps,
        dt=dt,
        stim_step=stim_step,
        blocked=((1, 0),) if hypothesis == "nofb" else (),
        seed=seed,
    )
    g = torch.Generator().manual_seed(10_000 + seed)
    n = model.n_neurons
    area, exc = model.area, model.excitatory
    same = area[:, None] == area[None, :]
    jitter = torch.exp(0.3 * torch.randn(n, n, generator=g))
    w = torch.zeros(n, n)
    ee = exc[:, None] & exc[None, :]
    ei = exc[:, None] & ~exc[None, :]
    ie = ~exc[:, None] & exc[None, :]
    w += same * ee * (4.0 / n_exc)
    w += same * ei * (1.2 / n_exc)
    w += same * ie * (1.0 / max(n_inh, 1))
    w += same * (~exc[:, None] & ~exc[None, :]) * (0.5 / max(n_inh, 1))
    forward = (area[:, None] == 0) & (area[None, :] == 1) & exc[:, None]
    feedback = (area[:, None] == 1) & (area[None, :] == 0) & exc[:, None]
    cross = 2.5 if hypothesis == "nofb" else 1.75
    w += forward * (cross / n_exc)
    if hypothesis == "withfb":
        w += feedback * (cross / n_exc)
    with torch.no_grad():
        model.w_rec.copy_(w * jitter * model.mask)
        model.w_in.copy_(
            ((area == 0) & exc).float() * 0.25 * (1 + 0.3 * torch.rand(n, generator=g))
        )
        model.v_rest.fill_(-0.3 * THRESHOLD)
    return model

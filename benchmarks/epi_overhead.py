"""Pyro's cost in an EPI step: the package's loss on the Pyro model against plain torch.

Regenerate: ``.venv/bin/python -m benchmarks.epi_overhead``

For ``lds2d``, ``rank2_rnn`` with N = 50 and the STG, with the catalogue's batch size and flow
(``MODELS`` of :mod:`pyro_circuits.catalog`) and one torch thread, times one EPI step (the
augmented Lagrangian on a fresh batch of the flow's draws, its backward pass and the Adam step)
three ways, alternating step by step on one flow and one Adam optimiser (so that neither the
machine's load nor the flow's state favours a way):

* ``traced``: the Pyro model run by a full trace of the conditioned program (the loss as it was
  before the light path of :mod:`pyro_circuits.epi.program`);
* ``pyro``: the package's :class:`~pyro_circuits.epi.EPILoss` as it is;
* ``plain``: the same flow, batch and Lagrangian with the hand-written plain-torch simulators
  below in place of the Pyro model.

Before timing, each plain simulator is checked against the Pyro model: for the same draws θ and
the same noise (drawn from the same seed), the statistics agree within float tolerance. The
ratio of a way is its median step time over plain torch's (target: the package's at most
1.15). The model run alone (no flow, no backward pass) is timed the same way, for Pyro's own
cost. One record per run (``benchmarks/records/epi_overhead/<date>-<commit>.json``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

import pyro
import torch

from benchmarks.records import command, current_commit, now, write_record
from pyro_circuits.catalog import MODELS
from pyro_circuits.epi import EPIGuide, EPILoss
from pyro_circuits.epi.fit import epi_loss
from pyro_circuits.epi.program import StatisticsRun
from pyro_circuits.models import stg
from pyro_circuits.sites import CircuitProgram

BENCHMARK = "epi_overhead"
TARGET = 1.15
WAYS = ("traced", "pyro", "plain")
#: Timed model runs alone (times ``--scale``).
RUN_REPEATS = {"lds2d": 3000, "rank2_rnn(50)": 400, "stg": 30}


def lds2d_statistics(theta: dict, noise: dict, model) -> dict:
    """Principal eigenvalue of A/τ: λ = tr/2 + √(tr² − 4 det)/2 (no noise)."""
    a11, a12, a21, a22 = (theta[k] / model.tau for k in ("a11", "a12", "a21", "a22"))
    trace = a11 + a22
    disc = trace * trace - 4 * (a11 * a22 - a12 * a21)
    root = disc.abs().sqrt()
    zero = torch.zeros_like(root)
    real = trace / 2 + torch.where(disc > 0, root, zero) / 2
    return {"real_lambda": real, "imag_lambda": torch.where(disc < 0, root, zero) / 2}


def rank2_statistics(theta: dict, noise: dict, model) -> dict:
    """W = U Vᵀ with noisy U, V: Re λ₁ of the 2 × 2 VᵀU, and λ_max((W + Wᵀ)/2) ≥ 0 computed in
    span[U, V] (for N > 4, where W has zero eigenvalues)."""
    u = theta["U"] + model.g * noise["U_noise"]
    v = theta["V"] + model.g * noise["V_noise"]
    small = v.transpose(-1, -2) @ u
    a, b, c, d = small[:, 0, 0], small[:, 0, 1], small[:, 1, 0], small[:, 1, 1]
    disc = (a + d) ** 2 - 4 * (a * d - b * c)
    real = (a + d) / 2 + torch.where(disc > 0, disc.abs().sqrt(), torch.zeros_like(disc)) / 2
    q, _ = torch.linalg.qr(torch.cat([u, v], dim=-1))
    w = (q.transpose(-1, -2) @ u) @ (q.transpose(-1, -2) @ v).transpose(-1, -2)
    sym = torch.linalg.eigvalsh((w + w.transpose(-1, -2)) / 2)[:, -1].clamp(min=0.0)
    return {"real_lambda": real, "sym_lambda": sym}


def stg_statistics(theta: dict, noise: dict, model) -> dict:
    """Euler steps of the five-neuron STG and the hub's soft-argmax frequency."""
    g_el, g_a = theta["g_el"][:, None], theta["g_synA"][:, None]
    xi, dt = noise["noise"], model.dt
    g_ca, g_k, g_h, gap, syn_a, syn_b, centre, slope, *x0 = (
        torch.tensor(x, dtype=torch.float32)
        for x in (stg.G_CA, stg.G_K, stg.G_H, stg.GAP, stg.SYN_A, stg.SYN_B)
        + (stg.GATE_CENTRE, stg.GATE_SLOPE, *stg.X0)
    )
    gap, syn_a, syn_b = gap.T, syn_a.T, stg.G_SYN_B * syn_b.T
    v, n, h = (x.expand(len(g_el), 5) for x in x0)
    hub = [v[:, 2]]
    for k in range(model.steps):
        m_inf, n_inf, h_inf, s_inf, sig_h = (
            0.5 + 0.5 * torch.tanh((v[..., None] - centre) * slope)
        ).unbind(-1)
        i_syn = (s_inf @ syn_b + g_a * (s_inf @ syn_a)) * (v - stg.V_SYN)
        i_total = (
            stg.G_LEAK * (v - stg.V_LEAK)
            + g_ca * m_inf * (v - stg.V_CA)
            + g_k * n * (v - stg.V_K)
            + g_h * h * (v - stg.V_H)
            + g_el * (v @ gap)
            + i_syn
        )
        rate_n = stg.PHI_N * torch.cosh((v - stg.V3) / (2 * stg.V4))
        tau_h = (272 + 1499 * sig_h) / 1000
        n, h = n + dt * rate_n * (n_inf - n), h + dt * (h_inf - h) / tau_h
        v = v + dt * (stg.SIGMA_I * xi[:, k] - i_total) / stg.C_M
        hub.append(v[:, 2])
    x = torch.relu(torch.stack(hub, -1)[:, 20:]).unfold(-1, 20, 1).mean(-1)
    x = x - x.mean(-1, keepdim=True)
    freqs = torch.linspace(0.0, 1.0, 101)
    phase = 2 * math.pi * dt * torch.arange(x.shape[-1])[:, None] * freqs
    modulus = ((x @ torch.cos(phase)) ** 2 + (x @ torch.sin(phase)) ** 2 + 1e-12).sqrt()
    return {"hub_freq": (torch.softmax(model.beta * modulus, -1) * freqs).sum(-1)}


#: name → (catalogue entry, size argument, plain simulator, model → {noise site: shape per draw}).
CASES: dict[str, tuple[str, int, Callable, Callable]] = {
    "lds2d": ("lds2d", 2, lds2d_statistics, lambda m: {}),
    "rank2_rnn(50)": (
        "rank2_rnn",
        50,
        rank2_statistics,
        lambda m: {"U_noise": (m.n, 2), "V_noise": (m.n, 2)},
    ),
    "stg": ("stg", 2, stg_statistics, lambda m: {"noise": (m.steps, 5)}),
}


def traced(loss: EPILoss) -> EPILoss:
    """``loss`` with the model run by a full trace of the conditioned program, as the package
    ran it before :mod:`pyro_circuits.epi.program`."""
    loss._simulator = lambda program: program
    return loss


class PlainStep:
    """The EPI step with a plain-torch simulator: the same flow draws and Lagrangian."""

    def __init__(self, loss: EPILoss, simulator: Callable, noise: dict, model) -> None:
        self.loss, self.simulator, self.noise, self.model = loss, simulator, noise, model

    def __call__(self, guide: EPIGuide) -> torch.Tensor:
        loss, n = self.loss, self.loss.num_particles
        theta, log_q = guide.rsample_and_log_prob(n)
        noise = {k: torch.randn(n, *shape) for k, shape in self.noise.items()}
        stats = self.simulator(guide.space.split(theta), noise, self.model)
        f = torch.stack([stats[k] for k in loss.prop.names], -1)
        mean = loss.prop.mean_vector
        violation = (torch.cat([f, (f - mean) ** 2], -1) - loss.target) / loss.scale
        r1, r2 = (half.mean(0) for half in violation.chunk(2))
        penalty = loss.c / 2 * (r1 @ r2.detach() + r1.detach() @ r2)
        return log_q.mean() + loss.eta @ ((r1 + r2) / 2) + penalty


def check_plain(name: str, seed: int = 0, n: int = 64) -> float:
    """Largest |plain − Pyro| over the statistics for the same θ and noise seed; raises when
    they disagree beyond float tolerance."""
    key, size, simulator, shapes = CASES[name]
    entry = MODELS[key]
    model = entry.build(size)
    program = CircuitProgram(model)
    guide = EPIGuide(program, flow=entry.flow, seed=seed)
    with torch.no_grad():
        values = guide.space.split(guide.rsample_and_log_prob(n)[0])
        pyro.set_rng_seed(seed)
        expected = program.simulate(values)
        pyro.set_rng_seed(seed)
        noise = {k: torch.randn(n, *shape) for k, shape in shapes(model).items()}
        got = simulator(values, noise, model)
    worst = 0.0
    for stat, value in expected.items():
        if not torch.allclose(got[stat], value, rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{name}: the plain simulator's {stat} disagrees with the model")
        worst = max(worst, (got[stat] - value).abs().max().item())
    return worst


def alternate(
    ways: Sequence[str],
    loss: Callable[[str], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    repeats: int,
    warmup: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU milliseconds of an optimiser step on ``loss(way)`` for each way,
    the ways alternating so that each takes each position in turn."""
    wall: dict[str, list[float]] = {way: [] for way in ways}
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    for rep in range(warmup + repeats):
        for i in range(len(ways)):
            way = ways[(rep + i) % len(ways)]
            start, start_cpu = time.perf_counter(), time.process_time()
            value = loss(way)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            if rep >= warmup:
                wall[way].append(time.perf_counter() - start)
                cpu[way].append(time.process_time() - start_cpu)
    median = {way: statistics.median(t) * 1e3 for way, t in wall.items()}
    return median, {way: statistics.median(t) * 1e3 for way, t in cpu.items()}


def time_model(name: str, repeats: int, warmup: int = 3, seed: int = 0) -> dict:
    """Median milliseconds (wall and CPU) of one EPI step for each way, alternating, and the
    ratios to plain torch."""
    key, size, simulator, shapes = CASES[name]
    entry = MODELS[key]
    model, config = entry.build(size), entry.config
    program = CircuitProgram(model)
    steps = {
        "traced": traced(epi_loss(entry.property(), config, seed)),
        "pyro": epi_loss(entry.property(), config, seed),
        "plain": PlainStep(
            epi_loss(entry.property(), config, seed), simulator, shapes(model), model
        ),
    }
    guide = EPIGuide(program, flow=entry.flow, seed=seed)  # one flow, trained by every way
    optimizer = torch.optim.Adam(guide.parameters(), lr=config.lr)

    def loss(way: str) -> torch.Tensor:
        return steps[way](guide) if way == "plain" else steps[way](model, guide)

    median, median_cpu = alternate(WAYS, loss, optimizer, repeats, warmup)
    return {
        "batch_size": config.batch_size,
        "flow_units": entry.flow.units,
        "steps_timed": repeats,
        "median_ms": median,
        "median_cpu_ms": median_cpu,
        "ratio_before": median["traced"] / median["plain"],
        "ratio": median["pyro"] / median["plain"],
        "ratio_before_cpu": median_cpu["traced"] / median_cpu["plain"],
        "ratio_cpu": median_cpu["pyro"] / median_cpu["plain"],
        "pyro_ms_per_step": median["pyro"] - median["plain"],
        "under_target": median["pyro"] / median["plain"] <= TARGET,
    }


def time_simulator(name: str, repeats: int, seed: int = 0) -> dict:
    """Median CPU milliseconds of the model run alone (forward, on the flow's draws with their
    graph) for each way, alternating: Pyro's own cost without the flow's."""
    key, size, simulator, shapes = CASES[name]
    entry = MODELS[key]
    model, n = entry.build(size), entry.config.batch_size
    program = CircuitProgram(model)
    guide = EPIGuide(program, flow=entry.flow, seed=seed)
    values = guide.space.split(guide.rsample_and_log_prob(n)[0])
    runs = {
        "traced": lambda: program.simulate(values),
        "pyro": lambda: StatisticsRun(program).simulate(values),
        "plain": lambda: simulator(
            values, {k: torch.randn(n, *shape) for k, shape in shapes(model).items()}, model
        ),
    }
    cpu: dict[str, list[float]] = {way: [] for way in WAYS}
    for rep in range(repeats + 1):
        for i in range(len(WAYS)):
            way = WAYS[(rep + i) % len(WAYS)]
            start = time.process_time()
            runs[way]()
            if rep:  # the first round warms up
                cpu[way].append(time.process_time() - start)
    return {way: statistics.median(t) * 1e3 for way, t in cpu.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the timed steps")
    parser.add_argument("--notes", default="", help="prose stored with the record")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = {"lds2d": 300, "rank2_rnn(50)": 40, "stg": 20}
    load_before = os.getloadavg()[0]
    models = {}
    for name in CASES:
        deviation = check_plain(name)
        models[name] = time_model(name, max(5, round(repeats[name] * args.scale)))
        models[name]["plain_max_abs_deviation"] = deviation
        run_repeats = max(5, round(RUN_REPEATS[name] * args.scale))
        models[name]["model_run_cpu_ms"] = time_simulator(name, run_repeats)
        print(name, models[name], flush=True)
    date, commit = now(), current_commit()
    argv_out = ("--scale", args.scale) if args.scale != 1.0 else ()
    write_record(
        BENCHMARK,
        f"{date.removesuffix('+00:00')}-{commit}",
        command(f"benchmarks.{BENCHMARK}", *argv_out),
        {
            "target_ratio": TARGET,
            "threads": 1,
            "ways": list(WAYS),
            "repeats": repeats,
            "model_run_repeats": RUN_REPEATS,
        },
        {
            "models": models,
            "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0],
        },
        notes=args.notes or None,
        commit=commit,
        date=date,
    )


if __name__ == "__main__":
    main()

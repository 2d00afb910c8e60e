"""EPI on the paper's mechanistic circuits: STG hub frequency and superior-colliculus switching.

Reproduces, at a CPU budget, items 1-2 of issue 6 (Bittner et al. 2021, Figures 1, 4 and 5):

* ``stg``: EPI on the hub-frequency property (0.55 ± 0.025 Hz); Hessian of log q at the mode
  (paper: eigenvalues -10.7 and -3.22); equal steps along the sensitive and robust eigenvectors;
  hub voltage traces plotted to ``docs/figures/circuits_stg_traces.png``.
* ``sc``: EPI on Pro and Anti accuracy 0.75 ± 0.075; modes along sW; delay-period silencing
  (0.8-1.2 s) across the EPI distribution; sampling speed of q vs brute-force rejection.
* ``sc-regimes``: paper Fig. 4C-D on the selected SC seed (the converged seed of greatest
  entropy), and the silencing figure ``docs/figures/circuits_sc_silencing.png``.

Each part writes one record, ``benchmarks/records/circuits_epi/<variant>.json`` (variants ``stg``,
``sc-seed<N>``, ``sc-regimes``; the SC flows beside them, ``sc-seed<N>_q.pt``), and
``python -m benchmarks report`` renders the section. Usage::

    .venv/bin/python -m benchmarks.circuits_epi stg      # ~100 min on one CPU thread
    .venv/bin/python -m benchmarks.circuits_epi sc --seed 0   # ~75 min; one run per flow seed
    .venv/bin/python -m benchmarks.circuits_epi sc-regimes    # the selected seed's modes, seconds
    .venv/bin/python -m benchmarks.circuits_epi all --quick   # tiny smoke run of everything

``--quick`` runs write their records to ``benchmarks/output/records_quick/`` (ignored by git),
never over the recorded ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.distributions import Normal

from benchmarks.records import RECORDS, ROOT, command, read_records, write_record
from benchmarks.report.circuits import EXPERIMENT_GAMMA, select_sc
from pyro_circuits.epi import EPIConfig, FlowConfig, epi
from pyro_circuits.epi.analysis import hessian_sensitivity
from pyro_circuits.epi.flow import SupportedFlow
from pyro_circuits.handlers import perturb
from pyro_circuits.models import STG, SuperiorColliculus
from pyro_circuits.models.stg import hub_frequency
from pyro_circuits.models.superior_colliculus import PARAMS, POPULATIONS
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

BENCHMARK = "circuits_epi"
FIGURE = ROOT / "docs" / "figures" / "circuits_stg_traces.png"
SC_FIGURE = ROOT / "docs" / "figures" / "circuits_sc_silencing.png"
QUICK_RECORDS = ROOT / "benchmarks" / "output" / "records_quick"
STG_C0_NOTE = (
    "STG penalty: with the paper's raw-unit c0 = 1e5 at batch 100 and 500 steps per epoch, q "
    "collapsed (entropy −37 nats, ‖R‖² = 0.014 after 4 epochs, 2026-11-21), so the STG run "
    "measures violations in units of σ and σ² (standardize=True) with c0 = 1."
)


def settings(part: str, quick: bool) -> dict:
    """EPI budgets (stated in the report). ``rejection``: the uniform prior draws simulated for
    the rejection start and the brute-force timing, and the band kept (in target sds)."""
    if part == "stg":
        config = dict(
            batch_size=400, epochs=12, iterations=1200, c0=1.0, beta=2.0, test_batch_size=100
        )
        config |= dict(standardize=True, init_iterations=1000, chunk=4000)
        flow = dict(stages=3, layers=2, units=25)
        rejection = dict(draws=4000, width=1.0, chunk=4000)  # one batch, as run on 2026-12-01
    else:
        config = dict(
            batch_size=100, epochs=5, iterations=2000, c0=1.0, beta=2.0, test_batch_size=25
        )
        config |= dict(standardize=True, init_iterations=1000, chunk=1000)
        flow = dict(stages=3, layers=2, units=50)
        rejection = dict(draws=60_000, width=2.0)
    if quick:
        config |= dict(epochs=1, iterations=5, init_iterations=5, test_batches=10)
        rejection["draws"] = 2000
    setup = {"config": config, "flow": flow, "rejection": rejection}
    return setup | {"trials": 10 if quick else 200}


def prior_rejection(model, prop, draws: int, width: float, chunk: int = 1000):
    """Brute-force rejection: the uniform prior draws whose statistics all lie within ``width``
    target standard deviations of the target means, shape ``(kept, params)``, and the seconds
    it took."""
    program = CircuitProgram(model)
    mean, sd = prop.mean_vector, prop.variance_vector.sqrt()
    kept, start = [], time.perf_counter()
    for first in range(0, draws, chunk):
        size = min(chunk, draws - first)
        values = {name: program.priors[name].sample((size,)) for name in program.params}
        with torch.no_grad():
            inside = ((prop.flatten(program.simulate(values)) - mean).abs() < width * sd).all(-1)
        kept.append(torch.stack([values[name][inside] for name in program.params], -1))
    return torch.cat(kept), time.perf_counter() - start


def rejection_start(kept: torch.Tensor) -> Normal:
    """The paper's ABC start: the mean of the kept prior draws, unit standard deviations."""
    if not len(kept):
        raise RuntimeError("no prior draw was kept; simulate more draws or widen the band")
    mean = kept.mean(0)
    return Normal(mean, torch.ones_like(mean))


def fit(model, prop, setup: dict, init: Normal | None = None, seed: int = 0):
    result = epi(
        model,
        prop,
        flow=FlowConfig(**setup["flow"]),
        config=EPIConfig(**setup["config"]),
        init=init,
        seed=seed,
    )
    history = result.history
    return result, {
        "converged": result.converged,
        "selected_epoch": result.epoch,
        "first_converged_epoch": int(history.epoch[history.converged].min())
        if history.converged.any()
        else None,
        "wall_time_s": result.wall_time,
        "simulations": result.simulations,
        "history": history.to_dict(orient="list"),
        "check": result.check(batches=100, batch_size=50).to_dict(orient="records"),
    }


def records_root(quick: bool) -> Path:
    """Where the records go: smoke runs never overwrite the recorded results."""
    return QUICK_RECORDS if quick else RECORDS


def run_stg(quick: bool) -> tuple[dict, dict]:
    """STG EPI: the record's configuration and metrics."""
    torch.manual_seed(0)
    setup = settings("stg", quick)
    model, prop = STG(), STG.intermediate_hub_frequency()
    start = rejection_start(prior_rejection(model, prop, **setup["rejection"])[0])
    result, out = fit(model, prop, setup, init=start)
    out["init_mean"] = dict(zip(("g_el", "g_synA"), start.loc.tolist(), strict=True))
    mode = result.mode(steps=50 if quick else 500, lr=0.01)
    sensitivity = result.sensitivity({k: v.reshape(1) for k, v in mode.items()})
    vectors = sensitivity.eigenvectors * torch.sign(sensitivity.eigenvectors[1])  # g_synA > 0
    center = torch.stack([mode["g_el"], mode["g_synA"]])
    program = CircuitProgram(model)
    draws = 20 if quick else 200
    steps = {}
    for label, column in (("sensitive v1", 0), ("robust v2", 1)):
        for distance in (-0.5, -0.25, 0.25, 0.5):
            point = center + distance * vectors[:, column]
            values = {"g_el": point[0].expand(draws), "g_synA": point[1].expand(draws)}
            with torch.no_grad():
                freq = program.simulate(values)["hub_freq"]
            steps[f"{label} {distance:+.2f}"] = {
                "g_el": point[0].item(),
                "g_synA": point[1].item(),
                "hub_freq_mean": freq.mean().item(),
                "hub_freq_std": freq.std().item(),
            }
    if not quick:
        plot_stg_traces(model, center, vectors)
    out |= {
        "mode": {k: v.item() for k, v in mode.items()},
        "hessian_eigenvalues": sensitivity.eigenvalues.tolist(),
        "eigenvectors": vectors.T.tolist(),
        "steps": steps,
    }
    return {"settings": setup}, out


def plot_stg_traces(model: STG, center: torch.Tensor, vectors: torch.Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    points = {"mode": center}
    points |= {f"mode + 0.5 v{i + 1}": center + 0.5 * vectors[:, i] for i in range(2)}
    fig, axes = plt.subplots(len(points), 1, figsize=(7, 5), sharex=True)
    xi = torch.randn(model.steps, 5, generator=torch.Generator().manual_seed(0))
    for ax, (label, point) in zip(axes, points.items(), strict=True):
        with torch.no_grad():
            v = model.simulate(point[0], point[1], xi)
        freq = float(hub_frequency(v[..., 2], model.dt, model.beta))
        t = torch.arange(model.steps + 1) * model.dt
        for i, name in enumerate(("f1", "hub", "s1")):
            ax.plot(t, 1e3 * v[:, (0, 2, 3)[i]], lw=0.8, label=name)
        ax.set_title(
            f"{label}: g_el={point[0]:.2f}, g_synA={point[1]:.2f} nS, hub {freq:.2f} Hz", fontsize=8
        )
        ax.set_ylabel("mV")
    axes[0].legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)


def flow_path(seed: int, quick: bool) -> Path:
    """The trained SC flow of ``seed``, beside its record."""
    return records_root(quick) / BENCHMARK / f"sc-seed{seed}_q.pt"


GAMMAS = tuple(round(0.5 + 0.025 * k, 3) for k in range(17))  # 0.5, 0.525, ..., 0.9
EXPERIMENT_ANTI_INCREASE = 0.07  # Duan et al. 2021, paper Fig. 5B: at γ EXPERIMENT_GAMMA
MODE_SW = tuple(1.0 - 0.25 * k for k in range(9))  # the paper's modes: sW = 1, 0.75, ..., -1


def errors(
    program: CircuitProgram, draws: dict, gamma: float, seed: int
) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(seed)
    with torch.no_grad(), perturb.optogenetic(POPULATIONS, window=(0.8, 1.2), gain=gamma):
        stats = program.simulate(draws)
    return 1 - stats["pro_accuracy"], 1 - stats["anti_accuracy"]


def silencing_effects(program: CircuitProgram, draws: dict, modes: dict) -> dict:
    """Error increases under delay-period silencing over ``draws`` of q (same noise as the
    unperturbed run): mean and sd per γ in :data:`GAMMAS` (paper Fig. 5B), and, at the
    experiment's γ and at 0.85, per group of draws closest to each mode along sW (Fig. 5C)."""
    base_pro, base_anti = errors(program, draws, 0.0, seed=2)
    increases = {g: errors(program, draws, g, seed=2) for g in GAMMAS}
    by_gamma = {
        str(g): {
            "pro_error_increase_mean": (pro - base_pro).mean().item(),
            "pro_error_increase_std": (pro - base_pro).std().item(),
            "anti_error_increase_mean": (anti - base_anti).mean().item(),
            "anti_error_increase_std": (anti - base_anti).std().item(),
        }
        for g, (pro, anti) in increases.items()
    }
    z = torch.stack([draws[name] for name in PARAMS], -1)
    centres = torch.tensor([[m[name] for name in PARAMS] for m in modes.values()])
    group = torch.cdist(z, centres).argmin(-1)
    by_mode = {}
    for index, label in enumerate(modes):
        member = group == index
        count = int(member.sum())
        row = {"draws": count}
        for g in (EXPERIMENT_GAMMA, 0.85):
            pro, anti = increases[g]
            for task, delta in (("pro", pro - base_pro), ("anti", anti - base_anti)):
                values = delta[member]
                row[f"{task}_{g}_mean"] = values.mean().item() if count else None
                row[f"{task}_{g}_se"] = (values.std() / count**0.5).item() if count > 1 else None
        by_mode[label] = row
    closest = min(
        GAMMAS,
        key=lambda g: abs(by_gamma[str(g)]["anti_error_increase_mean"] - EXPERIMENT_ANTI_INCREASE),
    )
    return {
        "silencing": by_gamma,
        "silencing_by_mode": by_mode,
        "gamma_closest_to_experiment": closest,
        "baseline_error_mean": {"pro": base_pro.mean().item(), "anti": base_anti.mean().item()},
    }


def run_sc(quick: bool, seed: int = 0) -> tuple[dict, dict]:
    """SC EPI with flow seed ``seed`` (the prior-rejection start is the same for every seed):
    the record's configuration and metrics.

    The trained flow's state dict goes to ``sc-seed{seed}_q.pt`` beside the record, for
    analyses without retraining (:func:`load_sc_flow`)."""
    torch.manual_seed(0)
    setup = settings("sc", quick)
    model = SuperiorColliculus(trials=setup["trials"])
    prop = SuperiorColliculus.rapid_task_switching()
    kept, rejection_seconds = prior_rejection(model, prop, **setup["rejection"])
    start = rejection_start(kept)
    result, out = fit(model, prop, setup, init=start, seed=seed)
    flow_path(seed, quick).parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.q.state_dict(), flow_path(seed, quick))
    out["init_mean"] = dict(zip(PARAMS, start.loc.tolist(), strict=True))
    program = CircuitProgram(model)

    modes = {}
    for s in MODE_SW:
        mode = result.mode(fixed={"sW": s}, steps=20 if quick else 300, lr=0.01)
        modes[f"{s:+.2f}"] = {k: v.item() for k, v in mode.items()}

    draws = result.sample(50 if quick else 1000, seed=1)
    effects = silencing_effects(program, draws, modes)

    begin = time.perf_counter()
    result.sample(10_000, seed=3)
    epi_seconds = (time.perf_counter() - begin) / 10_000
    out |= effects | {
        "selected_entropy": result.selected_entropy,
        "modes_along_sW": modes,
        "sampling": {
            "epi_seconds_per_sample": epi_seconds,
            "rejection_seconds_per_sample": rejection_seconds / max(len(kept), 1),
            "rejection_accepted": len(kept),
            "rejection_tried": setup["rejection"]["draws"],
            "speedup": rejection_seconds / max(len(kept), 1) / epi_seconds,
        },
    }
    return {"seed": seed, "settings": setup}, out


REGIME_STEPS = (-0.2, -0.1, 0.0, 0.1, 0.2)  # δ in z = z*(sW) + δ v1, paper Eq. 10
REGIME_TRIALS = 1000  # per condition: accuracy sd ≈ 0.014


def load_sc_flow(seed: int, quick: bool = False) -> SupportedFlow:
    """The trained SC flow of ``seed``, from ``sc-seed{seed}_q.pt`` beside its record."""
    space = ParameterSpace(CircuitProgram(SuperiorColliculus()).priors)
    q = SupportedFlow(space, FlowConfig(**settings("sc", quick)["flow"]))
    q.load_state_dict(torch.load(flow_path(seed, quick)))
    return q


def sc_runs(quick: bool = False) -> list[dict]:
    """Every SC record, its configuration and metrics in one dict."""
    return [
        {**record["configuration"], **record["metrics"]}
        for record in read_records(BENCHMARK, root=records_root(quick))
        if record["variant"].startswith("sc-seed")
    ]


def run_sc_regimes(quick: bool) -> tuple[dict, dict]:
    """Paper Fig. 4C-D on the selected seed's saved flow: at each mode z*(sW) the most
    sensitive Hessian eigenvector v1 (sign: negative hW element) and Pro / Anti accuracy at
    z*(sW) + δ v1 for δ in :data:`REGIME_STEPS` (regime 1: Anti accuracy falls both ways;
    regime 2: it rises with Pro accuracy)."""
    sc = select_sc(sc_runs(quick))
    q = load_sc_flow(sc["seed"], quick)
    program = CircuitProgram(SuperiorColliculus(trials=REGIME_TRIALS))
    steps = torch.tensor(REGIME_STEPS)
    modes = {}
    for label, mode in sc["modes_along_sW"].items():
        centre = torch.tensor([mode[name] for name in PARAMS])
        sensitivity = hessian_sensitivity(
            lambda z: q.log_prob(z.unsqueeze(0))[0], centre, list(PARAMS)
        )
        v1 = sensitivity.eigenvectors[:, 0]
        v1 = -v1 if v1[PARAMS.index("hW")] > 0 else v1
        points = centre + steps[:, None] * v1
        torch.manual_seed(0)
        with torch.no_grad():
            stats = program.simulate(dict(zip(PARAMS, points.T, strict=True)))
        modes[label] = {
            "eigenvalues": sensitivity.eigenvalues.tolist(),
            "v1": v1.tolist(),
            "pro_accuracy": stats["pro_accuracy"].tolist(),
            "anti_accuracy": stats["anti_accuracy"].tolist(),
            "inside_prior": bool((points.abs() <= 5).all()),
        }
    plot_sc_silencing(sc, SC_FIGURE if not quick else QUICK_RECORDS / "circuits_sc_silencing.png")
    configuration = {"seed": sc["seed"], "steps": list(REGIME_STEPS), "trials": REGIME_TRIALS}
    return configuration, {"modes": modes}


def plot_sc_silencing(sc: dict, path: Path) -> None:
    """Paper Fig. 5B-C: error increase vs γ across q, and Anti error increase per mode group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gammas = [float(g) for g in sc["silencing"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for task, color in (("pro", "tab:blue"), ("anti", "tab:red")):
        rows = sc["silencing"].values()
        mean = [r[f"{task}_error_increase_mean"] for r in rows]
        sd = [r[f"{task}_error_increase_std"] for r in rows]
        left.errorbar(gammas, mean, sd, color=color, capsize=2, label=task.capitalize())
    left.plot(EXPERIMENT_GAMMA, EXPERIMENT_ANTI_INCREASE, "ko", label="experiment (Anti)")
    left.set(xlabel="optogenetic strength γ", ylabel="error increase", title="across q")
    left.legend(fontsize=7)
    groups = {float(k): v for k, v in sc["silencing_by_mode"].items() if v["draws"] > 1}
    for task, color in (("pro", "tab:blue"), ("anti", "tab:red")):
        key = f"{task}_{EXPERIMENT_GAMMA}"
        right.errorbar(
            list(groups),
            [g[f"{key}_mean"] for g in groups.values()],
            [g[f"{key}_se"] for g in groups.values()],
            color=color,
            capsize=2,
            marker="o",
            label=task.capitalize(),
        )
    right.set(
        xlabel="sW of the closest mode",
        ylabel=f"error increase at γ = {EXPERIMENT_GAMMA}",
        title="by mode (mean ± se)",
    )
    right.invert_xaxis()
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["stg", "sc", "sc-regimes", "all"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="SC flow seed (one run per seed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = records_root(args.quick)
    quick = ["--quick"] if args.quick else []
    module = f"benchmarks.{BENCHMARK}"
    if args.part in ("stg", "all"):
        configuration, metrics = run_stg(args.quick)
        path = write_record(
            BENCHMARK,
            "stg",
            command(module, "stg", *quick),
            configuration,
            metrics,
            notes=STG_C0_NOTE,
            root=root,
        )
        print(f"wrote {path}")
    if args.part in ("sc", "all"):
        configuration, metrics = run_sc(args.quick, args.seed)
        path = write_record(
            BENCHMARK,
            f"sc-seed{args.seed}",
            command(module, "sc", "--seed", args.seed, *quick),
            configuration,
            metrics,
            artefacts=[str(flow_path(args.seed, args.quick).relative_to(ROOT))],
            root=root,
        )
        print(f"wrote {path}")
    if args.part in ("sc-regimes", "all"):
        configuration, metrics = run_sc_regimes(args.quick)
        path = write_record(
            BENCHMARK,
            "sc-regimes",
            command(module, "sc-regimes", *quick),
            configuration,
            metrics,
            root=root,
        )
        print(f"wrote {path}")
    if not args.quick:
        print("docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

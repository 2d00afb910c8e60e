"""EPI on the V1 stochastic stabilised supralinear network (Bittner et al. 2021, Figure 3).

Parts, each writing one record ``benchmarks/records/v1_sssn/<variant>.json``:

* ``rates``: the deterministic fixed point at contrast c ∈ {0, 0.5, 1} (simulated, and checked
  by a root-find), its Jacobian's eigenvalues, which populations respond paradoxically, and the
  prior predictive of s_E at each contrast (where the paper's 5 and 10 Hz lie in it).
* ``epi --rate R``: EPI for s_E = R ± 1 Hz (R = 5 or 10) at c = 0; the modes of q along σP
  with the Hessian's eigen-directions there (paper Fig. 3E); the flow is saved beside the record.
* ``compare``: both flows' σE–σP marginals and the predictive of σE² + σP² (paper Fig. 3E-F),
  drawn to ``docs/figures/v1_sssn.png``.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.v1_sssn rates
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.v1_sssn epi --rate 5    # ~10 min
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.v1_sssn epi --rate 10
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.v1_sssn compare
    .venv/bin/python -m benchmarks.v1_sssn all --quick    # smoke run, records not overwritten
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import optimize, stats

from benchmarks.records import RECORDS, ROOT, command, read_records, write_record
from pyro_circuits.epi import EPIConfig, FlowConfig, epi
from pyro_circuits.epi.flow import SupportedFlow
from pyro_circuits.models.v1_sssn import PARAMS, POPULATIONS, V1SSSN, W, inputs
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

BENCHMARK = "v1_sssn"
FIGURE = ROOT / "docs" / "figures" / "v1_sssn.png"
QUICK_RECORDS = ROOT / "benchmarks" / "output" / "records_quick"
CONTRASTS = (0.0, 0.5, 1.0)
CONTRAST = 0.0  # the contrast the EPI runs use: see the ``rates`` record
SHARED = "The 2 cores were shared with other work (about six processes) during the run."


def settings(quick: bool, epochs: int = 8) -> dict:
    """The EPI budget (the paper: batch 100, 100 trials, 2,000 steps per epoch, c0 = 0.1, β = 2,
    3 coupling layers of 2 × 50 units, N_test = 100)."""
    config = dict(batch_size=100, epochs=epochs, iterations=250, c0=0.1, beta=2.0, test_batches=100)
    config |= dict(test_batch_size=100, init_iterations=300, standardize=False, chunk=2000)
    config |= dict(stop_early=True)  # the reference script stops at the first converged epoch
    trials = 25
    if quick:
        config |= dict(epochs=1, iterations=3, init_iterations=3, test_batches=4)
        trials = 5
    flow = dict(stages=3, layers=2, units=50)
    return {"config": config, "flow": flow, "trials": trials, "contrast": CONTRAST}


def root(quick: bool) -> Path:
    return QUICK_RECORDS if quick else RECORDS


def fixed_point(contrast: float) -> dict:
    """The noiseless network at ``contrast``: simulated rates, a root-find, the Jacobian's
    eigenvalues (units of 1/τ) and the sign of each population's response to its own input."""
    model = V1SSSN(contrast=contrast, trials=1, steps=400)
    zeros = torch.zeros(400, 1, 4, dtype=torch.float64)
    simulated = model.simulate(torch.zeros(4, dtype=torch.float64), zeros[0], zeros)[-1, 0]
    weights, h = np.array(W), inputs(contrast, dtype=torch.float64).numpy()
    root_ = optimize.fsolve(lambda r: r - np.maximum(weights @ r + h, 0) ** 2, simulated.numpy())
    gain = np.diag(2 * np.maximum(weights @ root_ + h, 0))
    jacobian = -np.eye(4) + gain @ weights
    response = np.linalg.solve(np.eye(4) - gain @ weights, gain)  # d x* / d h
    return {
        "rates_simulated": simulated.tolist(),
        "rates_root": root_.tolist(),
        "jacobian_eigenvalues_real": np.linalg.eigvals(jacobian).real.tolist(),
        "paradoxical": [p for p, d in zip(POPULATIONS, np.diag(response), strict=True) if d < 0],
    }


def run_rates(quick: bool) -> tuple[dict, dict]:
    draws = 50 if quick else 1000
    torch.manual_seed(0)
    z = {name: 0.5 * torch.rand(draws) for name in PARAMS}
    out = {}
    for c in CONTRASTS:
        program = CircuitProgram(V1SSSN(contrast=c, trials=25))
        with torch.no_grad():
            s_e = program.simulate(z)["s_E"]
        quantiles = torch.quantile(s_e, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]))
        out[f"{c:g}"] = fixed_point(c) | {
            "prior_s_E_quantiles": quantiles.tolist(),
            "prior_within_1Hz_of_5": float(((s_e - 5).abs() < 1).float().mean()),
            "prior_within_1Hz_of_10": float(((s_e - 10).abs() < 1).float().mean()),
        }
    return {"prior_draws": draws, "trials": 25, "quantiles": [0.05, 0.25, 0.5, 0.75, 0.95]}, out


def flow_path(rate: float, quick: bool) -> Path:
    return root(quick) / BENCHMARK / f"epi-{rate:g}hz_q.pt"


def modes_along_sigma_p(result, quick: bool) -> list[dict]:
    """Modes of q with σP held at its 10-90 % quantiles, and the Hessian of log q there."""
    sigma_p = result.sample(2000, seed=1)["sigma_P"]
    grid = torch.quantile(sigma_p, torch.linspace(0.1, 0.9, 3 if quick else 7))
    rows = []
    for value in grid.tolist():
        mode = result.mode(fixed={"sigma_P": value}, steps=20 if quick else 300, lr=0.01)
        sensitivity = result.sensitivity({k: v.reshape(1) for k, v in mode.items()})
        v1 = sensitivity.eigenvectors[:, 0]
        v1 = -v1 if v1[0] < 0 else v1  # the direction of positive σE, as the paper draws it
        rows.append(
            {
                "mode": {k: v.item() for k, v in mode.items()},
                "eigenvalues": sensitivity.eigenvalues.tolist(),
                "v1": dict(zip(PARAMS, v1.tolist(), strict=True)),
            }
        )
    return rows


def run_epi(rate: float, quick: bool, seed: int, epochs: int) -> tuple[dict, dict]:
    setup = settings(quick, epochs)
    model = V1SSSN(contrast=setup["contrast"], trials=setup["trials"])
    result = epi(
        model,
        V1SSSN.e_variability(rate),
        flow=FlowConfig(**setup["flow"]),
        config=EPIConfig(**setup["config"]),
        seed=seed,
    )
    path = flow_path(rate, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.q.state_dict(), path)
    draws = result.sample(500, seed=2)
    out = {
        "converged": result.converged,
        "selected_epoch": result.epoch,
        "entropy": result.selected_entropy,
        "wall_time_s": result.wall_time,
        "simulations": result.simulations,
        "history": result.history.to_dict(orient="list"),
        "check": result.check(batches=50, batch_size=20).to_dict(orient="records"),
        "sample_mean": {k: v.mean().item() for k, v in draws.items()},
        "sample_std": {k: v.std().item() for k, v in draws.items()},
        "modes_along_sigma_P": modes_along_sigma_p(result, quick),
    }
    for name in ("fresh_p_values", "fresh_converged"):  # the selection's re-test, where kept
        if getattr(result, name, None) is not None:
            out[name] = getattr(result, name)
    return {"rate": rate, "seed": seed, "settings": setup}, out


def load_flow(rate: float, quick: bool) -> SupportedFlow:
    space = ParameterSpace(CircuitProgram(V1SSSN(trials=1)).priors)
    q = SupportedFlow(space, FlowConfig(**settings(quick)["flow"]))
    q.load_state_dict(torch.load(flow_path(rate, quick)))
    return q


def run_compare(quick: bool) -> tuple[dict, dict]:
    """σE² + σP² and σS² + σV² under q(5 Hz) and q(10 Hz) (500 draws each, as the paper)."""
    torch.manual_seed(3)
    draws, sums = {}, {}
    for rate in (5, 10):
        with torch.no_grad():
            draws[rate] = load_flow(rate, quick).sample(500).numpy()
        z = draws[rate]
        sums[rate] = {"EP": z[:, 0] ** 2 + z[:, 1] ** 2, "SV": z[:, 2] ** 2 + z[:, 3] ** 2}
    out = {}
    for pair in ("EP", "SV"):
        a, b = sums[5][pair], sums[10][pair]
        out[pair] = {
            "mean_5hz": float(a.mean()),
            "mean_10hz": float(b.mean()),
            "welch_p": float(stats.ttest_ind(b, a, equal_var=False).pvalue),
            "mannwhitney_p_10hz_greater": float(
                stats.mannwhitneyu(b, a, alternative="greater").pvalue
            ),
        }
    if not quick:
        plot(draws, sums)
    return {"draws": 500}, out


def plot(draws: dict, sums: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {
        r["configuration"]["rate"]: r
        for r in read_records(BENCHMARK)
        if "rate" in r["configuration"]
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for rate, color in ((5, "tab:blue"), (10, "tab:red")):
        z = draws[rate]
        left.scatter(z[:, 0], z[:, 1], s=3, alpha=0.3, color=color, label=f"q(z | {rate} Hz)")
        for row in records[rate]["metrics"]["modes_along_sigma_P"] if rate in records else []:
            m, v = row["mode"], row["v1"]
            scale = 2 / np.sqrt(abs(row["eigenvalues"][0]))  # ∝ 1/√|λ1|, as the paper
            left.plot(m["sigma_E"], m["sigma_P"], "ko", ms=3)
            left.arrow(m["sigma_E"], m["sigma_P"], scale * v["sigma_E"], scale * v["sigma_P"],
                       color="k", width=0.0008, head_width=0.005, length_includes_head=True)  # fmt: skip
        right.hist(sums[rate]["EP"], bins=40, alpha=0.5, color=color, label=f"{rate} Hz")
    edge = min(0.5, 1.1 * max(np.quantile(z[:, :2], 0.99) for z in draws.values()))
    left.set(xlabel="σE", ylabel="σP", xlim=(0, edge), ylim=(0, edge), title="σE–σP marginal")
    left.legend(fontsize=7)
    right.set(xlabel="σE² + σP²", ylabel="draws", title="predictive of σE² + σP²")
    right.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["rates", "epi", "compare", "all"])
    parser.add_argument("--rate", type=float, default=5.0, help="target s_E (Hz) of `epi`")
    parser.add_argument("--seed", type=int, default=0, help="EPI flow seed")
    parser.add_argument("--epochs", type=int, default=8, help="most EPI epochs of `epi`")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = ["--quick"] if args.quick else []
    module = f"benchmarks.{BENCHMARK}"
    jobs = []
    if args.part in ("rates", "all"):
        jobs.append(("rates", command(module, "rates", *quick), lambda: run_rates(args.quick), []))
    rates = (5.0, 10.0) if args.part == "all" else (args.rate,)
    for rate in rates if args.part in ("epi", "all") else ():
        jobs.append(
            (
                f"epi-{rate:g}hz",
                command(
                    module,
                    "epi",
                    "--rate",
                    rate,
                    "--seed",
                    args.seed,
                    "--epochs",
                    args.epochs,
                    *quick,
                ),
                lambda rate=rate: run_epi(rate, args.quick, args.seed, args.epochs),
                [str(flow_path(rate, args.quick).relative_to(ROOT))],
            )
        )
    if args.part in ("compare", "all"):
        jobs.append(
            ("compare", command(module, "compare", *quick), lambda: run_compare(args.quick), [])
        )
    for variant, line, job, artefacts in jobs:
        configuration, metrics = job()
        path = write_record(
            BENCHMARK, variant, line, configuration, metrics, notes=SHARED,
            artefacts=artefacts, root=root(args.quick),
        )  # fmt: skip
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

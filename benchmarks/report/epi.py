"""Sections of ``benchmarks.epi_rank2`` and ``benchmarks.epi_lds2d``."""

from __future__ import annotations

from benchmarks.report.common import code, day, provenance, second_moment
from benchmarks.tables import table

# Paper, §3 of the reference: seed-1 EPI traces (simulations to ‖E f − μ‖ < 0.5; first converged
# epoch).
RANK2_REFERENCE = {
    2: (30_000, 4),
    5: (10_000, 2),
    10: (0, 5),
    25: (40_000, 4),
    50: (50_000, 4),
    100: (60_000, 2),
}


def render_rank2(records: list[dict]) -> str:
    lines = ["## EPI: rank-2 RNN stable amplification across sizes"]
    for record in records:
        epochs = record["configuration"]["epochs"]
        rows = []
        for r in record["metrics"]["rows"]:
            ref = RANK2_REFERENCE.get(r["n"])
            rows.append(
                [
                    r["n"],
                    r["dim"],
                    r["seed"],
                    "yes" if r["converged"] else "no",
                    r["epoch"],
                    f"{r['simulations']:,}",
                    r["simulations_to_mean_within_0.5"],
                    f"{r['wall_time_s']:.0f}",
                    f"{r['entropy']:.1f}",
                    f"{ref[0]:,}, k={ref[1]}" if ref else "—",
                ]
            )
        header = [
            "n",
            "dim z",
            "seed",
            "converged",
            "epoch",
            "simulations",
            "sims to ‖E f − μ‖ < 0.5",
            "wall time (s)",
            "entropy (nats)",
            "paper (seed 1): sims to < 0.5, converged epoch",
        ]
        lines += [
            "",
            f"{code(record['command'])} — {record['machine']}, {day(record)}",
            "",
            'Paper settings (`MODELS["rank2_rnn"]` of `pyro_circuits.catalog`: 3 coupling stages '
            "× 2 × 100 units, N = 200, c0 = 1e3, β = 4, 500 Adam steps per epoch, N_test = 200, "
            f"raw constraint units), at most {epochs} epochs, stopping at the first converged "
            "epoch (hypothesis test on means and variances, α = 0.05 Bonferroni). Wall time "
            "includes the Gaussian initialisation (1000 steps); simulation counts exclude it and "
            "the test batches.",
            "",
            table(header, rows),
        ]
    lines += provenance(records)
    return "\n".join(lines)


def _lds2d_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        re_, im_ = r["achieved"]
        body.append(
            [
                r["seed"],
                f"{'yes' if r['converged'] else 'no'} ({r['epoch']})",
                f"{r['entropy']:.2f}",
                f"{re_['achieved mean']:.3f} / {second_moment(re_):.4f}",
                f"{im_['achieved mean']:.3f} / {second_moment(im_):.3f}",
                f"{r['std_half_trace']:.3f}",
                f"{r['mode_a12_pos']:.2f} / {r['mode_a12_neg']:.2f}",
                f"{r['simulations']:,}",
                f"{r['wall_time_s']:.0f}",
                "pass" if r["pass"] else "FAIL",
            ]
        )
    header = [
        "seed",
        "converged (epoch)",
        "entropy (nats)",
        "Re λ₁ mean / var",
        "Im λ₁ mean / var",
        "std (a11+a22)/2",
        "mass a12>0>a21 / a12<0<a21",
        "simulations",
        "wall time (s)",
        "all checks",
    ]
    return table(header, body)


def _selection(rows: list[dict]) -> str:
    converged = [r for r in rows if r["converged"]]
    if not converged:
        return "no seed converged"
    best = max(converged, key=lambda r: r["entropy"])
    return (
        f"seed {best['seed']} (H = {best['entropy']:.2f} nats, modes "
        f"{best['mode_a12_pos']:.2f} / {best['mode_a12_neg']:.2f}, checks "
        f"{'pass' if best['pass'] else 'FAIL'})"
    )


def render_lds2d(records: list[dict]) -> str:
    demo = [r for r in records if r["variant"] == "demo-settings"]
    others = [r for r in records if r["variant"] != "demo-settings"]
    lines = ["## EPI: 2-D linear system, 1 Hz oscillation"]
    for record in demo:
        rows = record["metrics"]["rows"]
        passed = sum(r["pass"] for r in rows)
        lines += [
            "",
            f"{code(record['command'])} — {record['machine']}, {day(record)}",
            "",
            f"Settings of `pyro-circuits epi lds2d` (`make demo`): {record['configuration']['config']}. "
            "Targets: Re λ₁ mean 0, var 0.0625; Im λ₁ mean 2π = 6.283, var (π/5)² = 0.395. Checks "
            "(issue #2): convergence test passes, std of (a11 + a22)/2 within 20 % of 0.25, each "
            "mode ≥ 25 % of the mass. Paper (tutorial, c0 = 1e-3, 2000 steps per epoch): converged "
            "at epoch 10 with H ≈ 7.4–7.7 nats.",
            "",
            _lds2d_table(rows),
            "",
            f"Seeds passing every check: {passed} of {len(rows)}. Selection over these seeds as "
            f"`epi(..., seed=[{', '.join(str(r['seed']) for r in rows)}])` does it (the converged "
            f"run of greatest entropy, the paper's protocol): {_selection(rows)}.",
        ]
    for record in others:
        rows = record["metrics"]["rows"]
        lines += [
            "",
            f"### Other settings: {record['variant']}",
            "",
            f"{record['configuration']['config']}; {record['machine']}, {day(record)}. Command: "
            f"{record['command']}.",
            "",
            _lds2d_table(rows),
            "",
            f"Selection as above: {_selection(rows)}.",
        ]
    lines += provenance(records)
    return "\n".join(lines)

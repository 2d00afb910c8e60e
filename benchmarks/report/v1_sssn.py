"""Section of ``benchmarks.v1_sssn``: EPI on the V1 stochastic stabilised supralinear network."""

from __future__ import annotations

from benchmarks.report.common import provenance, second_moment
from benchmarks.tables import table

TITLE = "V1 SSSN: EPI on excitatory variability (paper Fig. 3)"
POPULATIONS = ("E", "P", "S", "V")
PARAMS = tuple(f"sigma_{p}" for p in POPULATIONS)


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _rates(metrics: dict) -> list[str]:
    rows = []
    for c, m in metrics.items():
        q = m["prior_s_E_quantiles"]
        rows.append(
            [c, ", ".join(f"{r:.1f}" for r in m["rates_root"]),
             _f(max(m["jacobian_eigenvalues_real"])), ", ".join(m["paradoxical"]) or "none",
             f"{q[0]:.1f} / {q[2]:.1f} / {q[4]:.1f}",
             f"{m['prior_within_1Hz_of_5']:.3f}", f"{m['prior_within_1Hz_of_10']:.3f}"]
        )  # fmt: skip
    best = max(metrics, key=lambda c: metrics[c]["prior_within_1Hz_of_5"])
    header = ["contrast c", "fixed point x* (E, P, S, V; Hz)", "max Re λ(J) (1/τ)",
              "paradoxical", "prior s_E 5 / 50 / 95 % (Hz)", "prior within 5 ± 1 Hz",
              "within 10 ± 1 Hz"]  # fmt: skip
    return [
        "Deterministic fixed point x* = [W x* + h]₊² (a root-find; the simulation reaches the "
        "same rates) and the prior predictive of s_E (σ ~ U[0, 0.5]⁴) at each contrast:",
        "",
        table(header, rows),
        "",
        f"The most prior draws reach the paper's properties at c = {best}; at higher contrast "
        "the same noise gives tens to thousands of Hz of variability, so the EPI runs use "
        f"c = {best}. Figure 3B's traces are not given as numbers in the paper's text, so "
        "the rates cannot be matched to them directly.",
    ]


def _budget(settings: dict) -> str:
    config = settings["config"]
    return f"{'≤ ' if config.get('stop_early') else ''}{config['epochs']}"


def _epi(runs: list[dict]) -> list[str]:
    rows = []
    for r in runs:
        m, check = r["metrics"], r["metrics"]["check"][0]
        fresh = m.get("fresh_p_values")
        rows.append(
            [f"{r['configuration']['rate']:g} Hz", _budget(r["configuration"]["settings"]),
             "yes" if m["converged"] else "no",
             str(m["selected_epoch"]), _f(m["entropy"]),
             f"{check['achieved mean']:.2f} / {second_moment(check):.2f}",
             f"{check['p (mean)']:.2f} / {check['p (var)']:.2f}",
             "–" if not fresh else " / ".join(f"{p:.2f}" for p in fresh.values()),
             ", ".join(f"{m['sample_mean'][p]:.3f} ± {m['sample_std'][p]:.3f}" for p in PARAMS),
             f"{m['wall_time_s']:.0f}"]
        )  # fmt: skip
    header = ["property s_E", "budget", "converged", "epoch", "entropy (nats)",
              "check: mean / E[(s_E − μ)²]", "check p (mean / var)", "fresh re-test p",
              "σE, σP, σS, σV (mean ± sd)", "wall (s)"]  # fmt: skip
    setup = runs[0]["configuration"]["settings"]
    config, flow = setup["config"], setup["flow"]
    return [
        "",
        f"EPI at c = {setup['contrast']:g}, {setup['trials']} trials per draw (the paper: 100), "
        f"batch {config['batch_size']}, epochs of {config['iterations']} steps (the paper: "
        f"2,000; the budget column: epochs, ≤ where a run stops at the first epoch that passes "
        f"both tests), c0 = {config['c0']:g}, β = {config['beta']:g}, "
        f"{flow['stages']} coupling stages of {flow['layers']} × {flow['units']} units; the "
        "check (`result.check`) is the moment test on 1,000 fresh draws (50 batches of 20); "
        "the fresh re-test is EPI's own re-test of the selected epoch on new test batches "
        "(p of the mean and of the variance constraint; – where no epoch passed its own test):",
        "",
        table(header, rows),
        *_unconverged(runs),
    ]


def _unconverged(runs: list[dict]) -> list[str]:
    """A line per run that did not converge: its last epoch's test."""
    lines = []
    for r in runs:
        if r["metrics"]["converged"]:
            continue
        last = {k: v[-1] for k, v in r["metrics"]["history"].items()}
        lines += [
            "",
            f"The {r['configuration']['rate']:g} Hz run did not converge within its budget: its "
            f"last epoch's test (M = {r['configuration']['settings']['config']['test_batches']} "
            f"batches) gave p = {last['p E[s_E]']:.2f} for the mean and "
            f"{last['p Var[s_E]']:.2f} for the variance (violation "
            f"{last['R Var[s_E]']:+.2f} Hz²), while the smaller check above passes.",
        ]
    return lines


def _modes(runs: list[dict]) -> list[str]:
    rows = []
    for r in runs:
        for row in r["metrics"]["modes_along_sigma_P"]:
            mode, v1 = row["mode"], row["v1"]
            rows.append(
                [f"{r['configuration']['rate']:g} Hz", f"{mode['sigma_P']:.3f}",
                 f"{mode['sigma_E']:.3f}", _f(row["eigenvalues"][0]),
                 f"({v1['sigma_E']:.2f}, {v1['sigma_P']:.2f})",
                 ", ".join(_f(e) for e in row["eigenvalues"][1:])]
            )  # fmt: skip
    header = ["property", "σP (held)", "mode σE", "λ1", "v1 (σE, σP)", "λ2..λ4"]
    return [
        "",
        "Modes of q along σP (σP held at its 10-90 % quantiles, the other coordinates by ascent "
        "on log q) and the Hessian of log q there (paper Fig. 3E): v1 is the most sensitive "
        "direction, signed towards positive σE. A positive eigenvalue marks a point where the "
        "ascent did not reach a local maximum in every direction.",
        "",
        table(header, rows),
    ]


def _compare(record: dict) -> list[str]:
    m = record["metrics"]
    rows = [
        [label, f"{m[key]['mean_5hz']:.4f}", f"{m[key]['mean_10hz']:.4f}",
         f"{m[key]['welch_p']:.2g}", f"{m[key]['mannwhitney_p_10hz_greater']:.2g}"]
        for key, label in (("EP", "σE² + σP²"), ("SV", "σS² + σV²"))
    ]  # fmt: skip
    ep, sv = m["EP"], m["SV"]
    verdict = (
        "larger" if ep["mean_10hz"] > ep["mean_5hz"] and ep["welch_p"] < 1e-3 else "NOT larger"
    )
    return [
        "",
        f"Predictive of the sums of squares, {record['configuration']['draws']} draws of each q "
        "(paper Fig. 3F: σE² + σP² larger for 10 Hz, p < 1e-10; σS² + σV² not different, "
        f"p = 0.40). Here σE² + σP² is {verdict} under q(10 Hz); σS² + σV² has Welch p = "
        f"{sv['welch_p']:.2g} (means {sv['mean_5hz']:.3f} and {sv['mean_10hz']:.3f}). Figure: "
        "`docs/figures/v1_sssn.png`.",
        "",
        table(["sum", "mean, 5 Hz", "mean, 10 Hz", "Welch p", "Mann-Whitney p (10 > 5)"], rows),
    ]


def render(records: list[dict]) -> str:
    by_variant = {r["variant"]: r for r in records}
    lines = [f"## {TITLE}", ""]
    if "rates" in by_variant:
        lines += _rates(by_variant["rates"]["metrics"])
    runs = sorted(
        (r for r in records if r["variant"].startswith("epi-")),
        key=lambda r: r["configuration"]["rate"],
    )
    if runs:
        lines += _epi(runs) + _modes(runs)
    if "compare" in by_variant:
        lines += _compare(by_variant["compare"])
    notes = sorted({r["notes"] for r in records if r.get("notes")})
    if notes:
        lines += ["", *notes]
    lines += provenance(records)
    return "\n".join(lines)

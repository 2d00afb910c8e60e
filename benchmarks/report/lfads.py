"""Section of ``benchmarks.lfads_synthetic``: LFADS against two baselines with ground truth."""

from __future__ import annotations

from benchmarks.report.common import code, merged, provenance
from benchmarks.tables import table

TITLE = "LFADS on synthetic data (`benchmarks/lfads_synthetic.py`)"


def render(records: list[dict]) -> str:
    lines = [
        f"## {TITLE}",
        "",
        "Validation trials; LFADS posterior means over 50 guide samples. Rates R² against the true",
        "rates (all neurons); latents R² after an affine map fitted on training trials; co-bps on",
        "the held-out neurons (never read by any encoder). Settings: `LFADS_CONFIGS` of",
        "`pyro_circuits.catalog` (why: `docs/notes/lfads_configs.md`).",
    ]
    for record in sorted(records, key=lambda r: r["variant"]):
        r = merged(record)
        lines += [
            "",
            f"### {r['dataset']} — {r['n_train']} training / {r['n_valid']} validation trials, "
            f"{r['heldout']} held-out neurons",
            "",
            f"{code(record['command'])}. Hardware: {r['machine']}; run {r['date']}; LFADS budget "
            f"{r['budget_minutes']:g} min"
            + (
                f"; load average at the end {r['load_average'][1]:.1f}."
                if "load_average" in r
                else "."
            ),
            "",
        ]
        rows = []
        for method in ("lfads", "smoothing", "seq2seq"):
            m = r[method]
            timing = m.get("input_within_3_bins")
            rows.append(
                [
                    method,
                    f"{m['rates_r2']:.3f}" + (" (held-out only)" if method == "seq2seq" else ""),
                    f"{m['heldout_rates_r2']:.3f}",
                    f"{m['latents_r2']:.3f}",
                    f"{m['co_bps']:.3f}",
                    "–" if timing is None else f"{timing:.2f}",
                    f"{m['train_minutes']:.1f}",
                ]
            )
        header = [
            "method",
            "rates R²",
            "held-out rates R²",
            "latents R²",
            "co-bps",
            "input within ±3 bins",
            "train time (min)",
        ]
        lines.append(table(header, rows))
        lfads = r["lfads"]
        checks = [
            f"{key} ≥ {bar}: {lfads[key]:.3f} → {'met' if lfads[key] >= bar else 'MISSED'}"
            for key, bar in r["targets"].items()
        ]
        best = max(r[b]["co_bps"] for b in ("smoothing", "seq2seq"))
        checks.append(
            f"LFADS beats both baselines on co-bps: {lfads['co_bps']:.4f} vs "
            f"{best:.4f} → {'met' if lfads['co_bps'] > best else 'MISSED'}"
        )
        checks.append(
            f"training ≤ 45 min: {lfads['train_minutes']:.1f} min "
            f"({lfads['epochs']} epochs) → {'met' if lfads['train_minutes'] <= 45 else 'MISSED'}"
        )
        o = r["pyro_overhead"]
        checks.append(
            f"Pyro step {1e3 * o['pyro_step_s']:.0f} ms vs plain torch "
            f"{1e3 * o['torch_step_s']:.0f} ms (batch 128): ratio {o['ratio']:.2f} → "
            f"{'met' if o['ratio'] <= 1.3 else 'MISSED'} (≤ 1.3)"
        )
        lines += ["", "Targets: " + "; ".join(checks) + "."]
    lines += provenance(records)
    return "\n".join(lines)

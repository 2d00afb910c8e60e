"""Section of ``benchmarks.epi_overhead``: one EPI step with the Pyro model against plain torch."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "Pyro's cost in an EPI step (issue 51)"


def _rows(record: dict) -> list[list]:
    rows = []
    target = record["configuration"]["target_ratio"]
    load = (
        f"{record['metrics']['load_1min_before']:.1f} → {record['metrics']['load_1min_after']:.1f}"
    )
    for name, m in record["metrics"]["models"].items():
        ms = m["median_ms"]
        met = "met" if m["under_target"] else "MISSED"
        rows.append(
            [
                record["variant"],
                name,
                f"{m['batch_size']} / {m['flow_units']}",
                m["steps_timed"],
                f"{ms['traced']:.2f}",
                f"{ms['pyro']:.2f}",
                f"{ms['plain']:.2f}",
                f"{m['ratio_before']:.3f}× ({m['ratio_before_cpu']:.3f}×)",
                f"{m['ratio']:.3f}× ({m['ratio_cpu']:.3f}×; ≤ {target:g}: {met})",
                _model_run(m),
                f"{m['plain_max_abs_deviation']:.1g}",
                load,
            ]
        )
    return rows


def _model_run(m: dict) -> str | None:
    """The model run's CPU times, where the record has them (the first records do not)."""
    run = m.get("model_run_cpu_ms")
    return None if run is None else " / ".join(f"{run[w]:.3g}" for w in ("traced", "pyro", "plain"))


def _demo(record: dict) -> list[str]:
    """The demo's EPI before and after the light path, where a record has them."""
    rows = [
        [
            when,
            f"{m['epi_s']:.1f}",
            f"{m['whole_command_s']:g}",
            f"{m['user_cpu_s']:.1f}",
            f"{m['load_1min'][0]:g} → {m['load_1min'][1]:g}",
            m["converged_epoch"],
            f"{m['entropy_nats']:.3f}",
        ]
        for when, m in record["metrics"].items()
    ]
    header = [
        "demo run",
        "EPI (s)",
        "whole command (s)",
        "user CPU (s)",
        "load (1 min)",
        "selected epoch",
        "entropy (nats)",
    ]
    return ["", f"`{record['command']}`. {record['notes']}", "", table(header, rows)]


def render(records: list[dict]) -> str:
    demo = [r for r in records if r["variant"] == "demo"]
    records = [r for r in records if r["variant"] != "demo"]
    notes = [f"{r['variant']}: {r['notes']}" for r in records if r.get("notes")]
    header = [
        "record",
        "model",
        "batch / flow units",
        "steps timed",
        "traced (ms)",
        "package (ms)",
        "plain torch (ms)",
        "ratio before",
        "ratio now",
        "model run alone, CPU ms: traced / package / plain",
        "max |plain − Pyro| of the statistics",
        "load (1 min) before → after",
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "Median wall time of one EPI step (the augmented Lagrangian on the catalogue's batch "
            "of the flow's draws, backward pass, Adam step; the catalogue's flow; 1 torch "
            "thread) three ways, alternating step by step on one flow and one Adam optimiser: "
            "*traced*, the Pyro model run by a full trace of the conditioned program (the loss "
            "before the light path of `pyro_circuits/epi/program.py`); *package*, `EPILoss` as "
            "it is; *plain torch*, the same flow and Lagrangian with a hand-written simulator "
            "(`benchmarks/epi_overhead.py`), checked first to give the model's statistics for "
            "the same draws and noise seed; the model run alone (forward, no flow) is timed the "
            "same way. Ratio: a way's median wall time over plain "
            "torch's (in brackets: of CPU time, which other work on the cores disturbs less); "
            "the target for the package is at most 1.15, on wall time. A load above 2 means "
            "the 2 cores were shared with other work.",
            *(["", *notes] if notes else []),
            "",
            table(header, [row for r in records for row in _rows(r)]),
            *(line for r in demo for line in _demo(r)),
            *provenance(records + demo),
        ]
    )

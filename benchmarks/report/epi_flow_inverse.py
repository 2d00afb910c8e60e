"""Section of ``benchmarks.epi_flow_inverse``: zuko's LU inverse against the batched one."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "EPI step on the rank-2 RNN: the flow's LU inverse, zuko's against one batched solve"


def _rows(record: dict) -> list[list]:
    m = record["metrics"]
    load = f"{m['load_1min_before']:.1f} → {m['load_1min_after']:.1f}"
    return [
        [
            record["variant"],
            r["n"],
            r["dim"],
            r["steps_timed"],
            f"{r['median_ms']['zuko']:.1f}",
            f"{r['median_ms']['package']:.1f}",
            f"{r['ratio']:.1f}× ({r['ratio_cpu']:.1f}×)",
            f"{r['max_abs_deviation']:.1g}",
            load,
        ]
        for r in m["rows"]
    ]


def render(records: list[dict]) -> str:
    notes = [f"{r['variant']}: {r['notes']}" for r in records if r.get("notes")]
    header = [
        "record",
        "n",
        "dim z",
        "steps timed",
        "zuko's LU (ms)",
        "batched LU (ms)",
        "ratio (CPU)",
        "max |Δ| of draws and log q",
        "load (1 min) before → after",
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "Median wall time of one EPI step on `rank2_rnn(n)` (the catalogue's batch of 200, "
            "flow and Lagrangian; 1 torch thread) with the flow's LU layers two ways, "
            "alternating step by step on one flow and one Adam optimiser: zuko's "
            "`LULinearTransform`, whose inverse (run to draw from the flow) solves each draw "
            "against factors broadcast over the batch, and the package's "
            "`MatrixLULinearTransform` (`pyro_circuits/epi/lu.py`), one solve for the batch. "
            "Ratio: zuko's median over the package's (in brackets: of CPU time). After the "
            "timed steps both ways draw from the same flow with the same base draws; the last "
            "column is their largest difference. A load above 2 means the 2 cores were shared.",
            *(["", *notes] if notes else []),
            "",
            table(header, [row for r in records for row in _rows(r)]),
            *provenance(records),
        ]
    )

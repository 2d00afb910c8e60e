"""Section of ``benchmarks.scaleout``: speed-up of 2 Ray workers over 1 (executor seam)."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "Scale-out: 1 worker against 2 Ray workers (issue 48)"
WHAT = {
    "simulation": lambda c: (
        f"{c['simulations']:,} {c['model']} simulations (chunks of {c['chunk']})"
    ),
    "epi_seeds": lambda c: (
        f"EPI on {c['model']}, seeds {', '.join(map(str, c['seeds']))} "
        f"({c['epochs']} epochs × {c['iterations']} steps)"
    ),
}


def _row(record: dict) -> list:
    m, c = record["metrics"], record["configuration"]
    met = "met" if m["met"] else "MISSED"
    return [
        WHAT[record["variant"]](c),
        f"{m['seconds_inline']:.1f}",
        f"{m['seconds_1_worker']:.1f}",
        f"{m['seconds_2_workers']:.1f}",
        f"{m['speedup']:.2f}× (target ≥ {m['target']:g}: {met})",
        "yes" if m["identical_results"] else "NO",
    ]


def render(records: list[dict]) -> str:
    notes = sorted({r["notes"] for r in records if r.get("notes")})
    startup = records[0]["metrics"]["ray_startup_seconds"]
    started = ", ".join(f"{float(startup[k]):.1f} s ({k} CPU)" for k in sorted(startup))
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "The same work in one run: in the calling process without an executor, then on a "
            "local Ray instance with 1 CPU (1 worker) and on one with 2 CPUs (2 workers), through "
            "`pyro_circuits.parallel.RayExecutor`. Every worker and the calling process use 1 "
            "torch thread, and the workers are started before the clock; the speed-up is 1 "
            "worker's time over 2 workers'. *identical*: the three runs gave the same results "
            f"(the determinism guarantee). Ray's own start-up: {started}.",
            *(["", *notes] if notes else []),
            "",
            table(
                [
                    "work",
                    "no executor (s)",
                    "1 worker (s)",
                    "2 workers (s)",
                    "speed-up",
                    "identical",
                ],
                [_row(r) for r in records],
            ),
            *provenance(records),
        ]
    )

"""Section of ``benchmarks.cli_footprint``: a short ``pyro-circuits epi`` run's time and memory."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "`pyro-circuits epi` on the circuits with the largest simulations: time and peak memory"


def render(records: list[dict]) -> str:
    rows = [
        [
            r["configuration"]["model"],
            r["commit"],
            f"{r['configuration']['epochs']} × {r['configuration']['iterations']}",
            r["metrics"]["wall_s"],
            r["metrics"]["peak_rss_gb"],
            r["metrics"]["outcome"],
            r.get("notes", ""),
        ]
        for r in sorted(records, key=lambda r: (r["configuration"]["model"], r["date"]))
    ]
    header = ["model", "commit", "epochs × steps", "whole command (s)", "peak memory (GB)"]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "The whole command in a child process, one torch thread: the EPI run, then its report "
            "(InferenceData, plots, the constraint table on fresh draws). Peak memory is the "
            "child's resident set; the machine has 24 GB and no swap. Before 7cd2a0b the report "
            "simulated the constraint table's 100,000 fresh draws in one run of the model, twice "
            "(once for the file, once for the screen); since then it simulates the run's own "
            "test size once, at most 1,000 draws per run of the model, and the superior "
            "colliculus's end-of-epoch tests run 1,000 draws at a time (its catalogue `chunk`, "
            "20,000 before: the whole test of 5,000).",
            "",
            table([*header, "outcome", "notes"], rows),
            *provenance(records),
        ]
    )

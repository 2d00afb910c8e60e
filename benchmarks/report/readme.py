"""Section of the ``readme_example`` records: the README's first example, timed."""

from __future__ import annotations

from benchmarks.tables import table

TITLE = "The README's first example: wall time"


def render(records: list[dict]) -> str:
    rows = []
    for r in records:
        m = r["metrics"]
        runs = m["runs"]
        rows.append(
            [
                r["commit"],
                r["date"].removesuffix("+00:00"),
                f"{m['median_wall_s']:.1f}",
                ", ".join(f"{run['wall_s']:.1f}" for run in runs),
                f"{m['median_cpu_s']:.1f}",
                ", ".join(f"{run['load_1min']:.1f}" for run in runs),
                ", ".join(str(run["epoch"]) for run in runs),
                "yes" if m["under_target"] else "no",
                r.get("notes", ""),
            ]
        )
    header = [
        "commit",
        "date (UTC)",
        "median wall (s)",
        "each run (s)",
        "median CPU (s)",
        "load before each run",
        "converged at epoch",
        f"under {records[0]['configuration']['target_s']:g} s",
        "notes",
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "The first python block of `README.md` in a fresh interpreter (imports included), "
            "as a new user runs it; the target is under 30 s of wall time. CPU time is the "
            "child's user + system time; a one-minute load average above the core count means "
            "the cores were shared and the wall time is a contended figure. One record per run "
            f"of `{records[0]['command']}` (`benchmarks/records/readme_example/`).",
            "",
            table(header, rows),
        ]
    )

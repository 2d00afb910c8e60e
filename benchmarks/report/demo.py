"""Section of the ``demo`` records: ``make demo``'s wall time, one record per run."""

from __future__ import annotations

from benchmarks.tables import table

TITLE = "`make demo` wall time"


def minutes(seconds) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60} s"


def render(records: list[dict]) -> str:
    """``records`` read with exact decimals: every figure as its run stated it."""
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append(
            [
                r["commit"],
                r["date"].removesuffix("+00:00"),
                f"`{r['command']}`; {r['configuration']['conditions']}",
                minutes(m["whole_command_s"]),
                m["epi_s"],
                m.get("converged_epoch", "–"),
                m.get("entropy_nats", "–"),
                f"{m['simulations']:,}" if "simulations" in m else "–",
                r.get("notes", ""),
            ]
        )
    header = [
        "clone of",
        "date (UTC)",
        "command; conditions",
        "whole command",
        "EPI on lds2d (s)",
        "converged at epoch",
        "entropy (nats)",
        "simulations",
        "notes",
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "`make demo` on a fresh clone of the commit named (the figures were measured at it): "
            "it builds the virtualenv, installs the pinned CPU torch and the package unless the "
            "clone already had them, then runs `pyro-circuits epi lds2d` (10 epochs of 1,000 Adam "
            "steps after 1,000 initialisation steps; the issue's target: EPI in under 3 minutes). "
            "A run beside another job on the second core is a contended figure, not the demo's "
            "cost. One record per run (`benchmarks/records/demo/`); the command and conditions "
            "are each run's; the machine was not recorded apart from the first run (x86_64, 2 "
            "cores, torch with 2 threads) and e69d485's (an AMD EPYC).",
            "",
            table(header, rows),
        ]
    )

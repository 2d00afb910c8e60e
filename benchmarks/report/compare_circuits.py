"""Section of ``benchmarks.compare_circuits``: ``pyro-circuits compare`` on the STG and the SC."""

from __future__ import annotations

from benchmarks.report.common import day, provenance
from benchmarks.tables import table

TITLE = "`pyro-circuits compare` on the STG and the superior colliculus (issue #6)"
NAMES = {"stg": "STG", "superior_colliculus": "Superior colliculus"}


def _statistics(rows: list[dict]) -> list[str]:
    return [key.removeprefix("mean ") for key in rows[0] if key.startswith("mean ")]


def render(records: list[dict]) -> str:
    first = records[0]
    lines = [
        f"## {TITLE}",
        "",
        f"{first['machine']}, {day(first)}. Each model's command and its wall time:",
        "",
    ]
    for r in records:
        lines.append(f"    {r['configuration']['cli']}   # {r['metrics']['command_wall_time_s']} s")
    lines += [
        "",
        "Each method gets 3,000 simulations (EPI: 30 Adam steps of batch 100 with the model's CLI",
        "settings and `stop_early`; NPE: one round; SMC-ABC: 3,000 simulations); the table is the",
        "folder's `comparison.md` condensed, with 500 predictive draws per method. The paper's shared",
        "criterion ‖E f − μ‖ < 0.5 is met by every run; the moment test (means and variances,",
        "Bonferroni α = 0.05) is the other column. Smoke-scale budgets, not converged comparisons",
        "(`docs/notes/compare_circuits.md`).",
    ]
    for r in records:
        rows = r["metrics"]["rows"]
        statistics = _statistics(rows)
        header = ["method", "moment test", "‖E f − μ‖"]
        header += [f"mean / std {s}" for s in statistics]
        header += ["simulations", "wall time (s)"]
        body = [
            [
                row["method"],
                "pass" if row["moment_test"] else "fail",
                f"{row['distance']:.3f}",
                *(f"{row[f'mean {s}']:.3f} / {row[f'std {s}']:.3f}" for s in statistics),
                f"{row['simulations']:,}",
                f"{row['wall_time']:.0f}",
            ]
            for row in rows
        ]
        name = NAMES.get(r["variant"], r["variant"])
        lines += [
            "",
            f"{name}, property {r['configuration']['property']}:",
            "",
            table(header, body),
        ]
    folders = ", ".join(f"`{r['artefacts'][0].rsplit('/', 1)[0]}/`" for r in records)
    lines += ["", f"Pair plots and predictive scatters: {folders}."]
    lines += provenance(records)
    return "\n".join(lines)

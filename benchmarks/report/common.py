"""What every section of the report shares: the records' provenance and number formats."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.tables import table


def provenance(records: Sequence[dict], label: str = "record") -> list[str]:
    """Lines naming each record with the command that regenerates it, the commit its figures
    were measured at and when; the machine once if the records share it, else per record."""
    if not records:
        return []
    benchmarks = sorted({r["benchmark"] for r in records})
    folders = ", ".join(f"`benchmarks/records/{b}/`" for b in benchmarks)
    machines = sorted({r["machine"] for r in records})
    header = [label, "command", "commit", "date (UTC)"]
    rows = [[r["variant"], code(r["command"]), r["commit"], when(r)] for r in records]
    if len(machines) > 1:
        header.append("machine")
        for row, r in zip(rows, records, strict=True):
            row.append(r["machine"])
    lines = [
        "",
        f"Records ({folders}), with the command that regenerates each and the commit "
        "its figures were measured at:",
        "",
        table(header, rows),
    ]
    if len(machines) == 1:
        lines += ["", f"Machine: {machines[0]}."]
    notes = [r for r in records if r.get("provenance")]
    if notes:
        lines += [
            "",
            f"Converted records ({len(notes)} here, from the benchmarks' earlier JSON output or "
            "hand-written text) say in their `provenance` how their command, commit, date and "
            "machine were found.",
        ]
    return lines


def code(command: str) -> str:
    """A command as inline code, unless it is prose that quotes code itself."""
    return command if "`" in command else f"`{command}`"


def when(record: dict) -> str:
    """The record's date as the tables print it (UTC, no offset)."""
    return record["date"].removesuffix("+00:00")


def day(record: dict) -> str:
    """The record's date, day only."""
    return record["date"][:10]


def merged(record: dict) -> dict:
    """The record's configuration and metrics in one dict (metrics win), with its machine and
    date: the shape the benchmarks' earlier JSON files had."""
    return {**record["configuration"], **record["metrics"]} | {
        "machine": record["machine"],
        "date": record["date"],
        "record": record,
    }


def second_moment(row: dict) -> float:
    """A constraint-table row's achieved second moment about the target mean: the column is
    ``achieved E[(f-μ)²]`` since it was relabelled, ``achieved var`` in older records."""
    return row.get("achieved E[(f-μ)²]", row.get("achieved var"))


def notes_after(records: Sequence[dict]) -> str:
    """The records' notes, each once, as sentences to follow a paragraph."""
    notes = list(dict.fromkeys(r["notes"] for r in records if r.get("notes")))
    return "".join(f" {note}" for note in notes)

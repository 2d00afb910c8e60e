"""Section of the ``one_off`` records: benchmarks run once with one setting changed."""

from __future__ import annotations

from benchmarks.tables import table

TITLE = "One-off variant runs of 2026-11-30 to 12-05"


def render(records: list[dict]) -> str:
    number = {r["variant"]: i for i, r in enumerate(records, 1)}
    rows = []
    for i, r in enumerate(records, 1):
        conf = r["configuration"]
        command = r["command"]
        if conf.get("same_as"):
            command = f"(#{number[conf['same_as']]}) {command}"
        run = conf["run"]
        rows.append(
            [i, run, command, f"{r['commit']}, {r['date'].removesuffix('+00:00')}", r["notes"]]
        )
    notes: dict[str, list[int]] = {}
    for i, r in enumerate(records, 1):
        if note := r["configuration"].get("note"):
            notes.setdefault(note, []).append(i)
    noted = [f"Rows {', '.join(map(str, rows))}: {note}" for note, rows in notes.items()]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "Each is a benchmark above run once with one setting changed; the change is part of the "
            'command, as written when it ran (a command that begins "same" continues the row named '
            "in brackets). One record per row (`benchmarks/records/one_off/`); the machine was not "
            "recorded with the rows: one thread each, another single-thread job on the second core "
            "unless the row says otherwise. Commit: the one the row names, else the commit that "
            "added the row; date: the first the row names, else that commit's. A command's "
            "`CONFIGS[...]` is the benchmark script's dictionary of that day, now `LFADS_CONFIGS` "
            "and `CALCIUM_CONFIGS` of `pyro_circuits.catalog`.",
            *(["", *noted] if noted else []),
            "",
            table(["#", "run", "command", "commit, date (UTC)", "result"], rows),
        ]
    )

"""``python -m benchmarks report [--check | --stdout]`` and ``python -m benchmarks commands``.

* ``report``: regenerate ``docs/benchmarks.md`` from ``benchmarks/records/``; ``--check``: exit
  1 with a diff summary when the file differs from what the records render; ``--stdout``:
  print the rendering instead of writing it.
* ``commands``: the commands that regenerate the product benchmarks' records (what
  ``make bench`` prints), one per line; ``--studies`` adds the studies'.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    report = sub.add_parser("report", help="regenerate docs/benchmarks.md from the records")
    mode = report.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    mode.add_argument("--stdout", action="store_true", help="print, do not write")
    commands = sub.add_parser("commands", help="the commands that regenerate the records")
    commands.add_argument("--studies", action="store_true", help="the studies' commands too")
    args = parser.parse_args(argv)

    from benchmarks import report as rendering

    if args.action == "commands":
        from benchmarks.records import read_records

        names = [name for name, _ in rendering.PRODUCT if name not in ("one_off", "demo")]
        if args.studies:
            names += [name for name, _ in rendering.STUDIES]
        for name in names:
            print(f"# {name}")
            seen = []
            for record in read_records(name):
                if record["command"] not in seen and not record["command"].startswith("unknown"):
                    seen.append(record["command"])
            print("\n".join(seen))
        print("# demo\ntime make demo   # in a fresh clone")
        return 0

    text = rendering.build()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        ok, summary = rendering.check(text)
        print(summary, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    rendering.DOC.write_text(text)
    print(f"wrote {rendering.DOC.relative_to(rendering.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Section of the ``svi_step_time`` records: LFADS training on Lightning against plain torch."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "SVI step time: LFADS on the Lightning Trainer against plain torch (issue 50)"


def _row(record: dict) -> list:
    m, c = record["metrics"], record["configuration"]
    met = "met" if m["within_target"] else "MISSED"
    board = m["tensorboard"]
    return [
        record["variant"],
        f"{m['lightning_step_s'] * 1e3:.0f}",
        f"{m['torch_step_s'] * 1e3:.0f}",
        f"{m['ratio']:.2f} (target ≤ {c['target_ratio']:g}: {met})",
        f"{m['forward_backward']['ratio']:.2f}",
        f"{m['steps_timed']['lightning']} / {m['steps_timed']['torch']}",
        f"{m['load_1min_before']:.1f} → {m['load_1min_after']:.1f}",
        f"`{board['event_file']}` ({board['epochs']} epochs)",
        record.get("notes", ""),
    ]


def render(records: list[dict]) -> str:
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "The median time per optimiser step of `pyro_circuits.svi.train` (Pyro's ELBO, the "
            "package's hooks, the Lightning Trainer) and of a plain-torch loop of the same "
            "networks and ELBO (Adam, gradient clipping, the L2 penalty), on the Lorenz "
            "benchmark's configuration with coordinated dropout off on both sides, one torch "
            "thread, alternated in one run; a step's time is the interval between the ends of "
            "consecutive steps. *Forward + backward only*: one batch's Pyro ELBO and hand-written "
            "ELBO with their gradients, alternately, without the rest of a step (as "
            "`lfads_synthetic`'s Pyro overhead). A one-minute load average above the core count means the cores "
            "were shared and the times are contended (the ratio less so: the sides alternate). "
            "The TensorBoard log is that of a short run of the full configuration "
            "(`tensorboard --logdir` its folder).",
            "",
            table(
                [
                    "run",
                    "Lightning step (ms)",
                    "torch step (ms)",
                    "ratio",
                    "forward + backward only: ratio",
                    "steps timed",
                    "load (1 min)",
                    "TensorBoard log",
                    "notes",
                ],
                [_row(r) for r in records],
            ),
            *provenance(records),
        ]
    )

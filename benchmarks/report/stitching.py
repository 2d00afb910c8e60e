"""Section of ``benchmarks.stitching``: one LFADS stitched across sessions vs one per session."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "Dynamic neural stitching: one LFADS across sessions (synthetic Lorenz)"
MODELS = (("stitched", "stitched LFADS (all sessions)"), ("single", "LFADS per session"))
SCORES = (
    ("latent_r2", "latent R²"),
    ("shared_map_r2", "one map for all sessions, R²"),
    ("decoder_r2_other_sessions", "decoder from other sessions, R²"),
)


def _row(name: str, metrics: dict, key: str, label: str) -> list[str]:
    values = metrics[key]
    mean = sum(values) / len(values)
    return [name, label, *(f"{v:.3f}" for v in values), f"{mean:.3f}"]


def _epochs(epochs) -> str:
    """An epoch count, or the range of several fits' counts."""
    if isinstance(epochs, int):
        return str(epochs)
    low, high = min(epochs), max(epochs)
    return str(low) if low == high else f"{low}–{high}"


def render(records: list[dict]) -> str:
    parts = [f"## {TITLE}"]
    for record in records:
        m, conf = record["metrics"], record["configuration"]
        data, budget = conf["data"], conf["train"]
        n = data["n_sessions"]
        rows = [
            _row(label, m[key], score, score_label)
            for key, label in MODELS
            for score, score_label in SCORES
        ]
        stitched, single = m["stitched"]["latent_r2"], m["single"]["latent_r2"]
        wins = sum(a >= b for a, b in zip(stitched, single, strict=True))
        verdict = "met" if m["target_met"] else f"MISSED ({wins} of {n} sessions)"
        times = [
            [label, f"{m[key]['train_seconds']:.0f}", f"{m[key]['total_seconds']:.0f}",
             _epochs(m[key]["epochs"])]
            for key, label in MODELS
        ]  # fmt: skip
        parts += [
            "",
            f"A Lorenz system (`datasets.lorenz_sessions`) recorded in {n} sessions, each through "
            f"{data['n_neurons']} of {data['n_units']} neurons (drawn per session, so the sets "
            f"partly overlap) with {data['n_trials']} trials of each of {data['n_conditions']} "
            f"conditions ({data['n_bins']} bins of 10 ms). The stitched model "
            "(`models.StitchedLFADS` with `guides.StitchedEncoder`: one generator and encoder, "
            "per-session read-ins and read-outs initialised by principal components regression) "
            "is fitted to all sessions jointly; the baseline is one `LFADS` per session, with the "
            "same sizes and settings and the same budget: at most "
            f"{budget['max_epochs']} epochs over each session's trials and "
            f"{budget['max_time']:.0f} s of training in all (the stitched fit; the {n} single "
            "fits share as much), whichever ends first. Scores on each "
            "session's validation trials: latent R² (an affine map from posterior-mean factors "
            "to the true latents, fitted on that session's training trials); one map for all "
            "sessions (a single affine map fitted on every session's condition-averaged "
            "training factors, scored on each session's condition-averaged validation factors: "
            "consistent factors across sessions); and a ridge decoder (`baselines.decoding`) of "
            "the latents as behaviour, trained on the other sessions' factors. Target (issue "
            f"#49): stitched latent R² ≥ per-session LFADS on every session: **{verdict}**.",
            "",
            table(["model", "score", *(f"session {i}" for i in range(n)), "mean"], rows),
            "",
            table(["model", "train (s)", "train + read-out (s)", "epochs"], times),
        ]
        if record.get("notes"):
            parts += ["", record["notes"]]
    return "\n".join(parts + provenance(records))

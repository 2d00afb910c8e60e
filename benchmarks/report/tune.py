"""Section of ``benchmarks.tune_lfads``: LFADS's hyper-parameter search on Ray Tune."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "Hyper-parameter search: LFADS on the Lorenz data (Ray Tune, ASHA)"


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "–" if value is None else str(value)


def _trials(record: dict) -> str:
    """The trial table: the searched settings, the metric, epochs and status, best first."""
    rows = record["metrics"]["trials"]
    settings = list(record["configuration"]["space"])
    header = [*settings, "co-bps", "epochs", "status"]
    body = [
        [*(_value(row[key]) for key in settings), f"{row['co_bps']:.4f}", row["epochs"],
         row["status"]]
        for row in rows
    ]  # fmt: skip
    return table(header, body)


def _section(record: dict) -> list[str]:
    conf, m = record["configuration"], record["metrics"]
    best, default = m["best"], m["default"]
    verdict = "met" if m["target_met"] else "MISSED"
    if m.get("best_is_start"):
        verdict += " by the seeded default itself: no drawn setting beat it"
    space = "; ".join(f"`{key}` {domain}" for key, domain in conf["space"].items())
    start = (
        " The first trial takes the catalogue's values of these settings, the others are drawn."
        if conf.get("start")
        else ""
    )
    rows = [
        ["best of the search", f"{best['co_bps']:.4f}", f"{best['sampled_co_bps']:.4f}",
         best["epochs"], f"{best['minutes']:.1f} (all trials)"],
        ["default (`LFADS_CONFIGS['lorenz']`)", f"{default['co_bps']:.4f}",
         f"{default['sampled_co_bps']:.4f}", default["epochs"], f"{default['minutes']:.1f}"],
    ]  # fmt: skip
    lines = [
        f"Data: `{conf['data']}` ({conf['n_train']} training trials, {conf['n_valid']} "
        f"validation trials, {conf['heldout']} held-out neurons). `pyro_circuits.tune.tune`: "
        f"{conf['trials']} trials of random search over {space}, on the catalogue's Lorenz "
        f"settings; at most {conf['max_epochs']} epochs each, ASHA stopping trials from "
        f"{conf['grace_period']} epochs on, {conf['ray_cpus']} Ray CPUs (one trial per CPU)."
        f"{start} The default configuration is trained with the same epoch budget, data and seed. "
        "Co-bps on the validation trials' held-out neurons at each run's best epoch: of the "
        "rates of the guide's means (what the search maximises) and of the posterior "
        "averaged over 50 draws. Target (issue #48): the best configuration at least as good "
        "as the default.",
        "",
        table(["configuration", "co-bps (means)", "co-bps (50 draws)", "epochs", "minutes"], rows),
        "",
        f"Target: {best['co_bps']:.4f} vs {default['co_bps']:.4f} co-bps → {verdict}. "
        "The best settings: "
        + ", ".join(f"`{key}` = {_value(value)}" for key, value in best["config"].items())
        + ".",
        "",
        "Trials, best first:",
        "",
        _trials(record),
    ]
    if record.get("notes"):
        lines += ["", record["notes"]]
    return lines


def render(records: list[dict]) -> str:
    lines = [f"## {TITLE}"]
    for record in records:
        lines += ["", *_section(record)]
    return "\n".join([*lines, *provenance(records)])

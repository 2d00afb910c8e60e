"""Section of ``benchmarks.tune_lfads``: LFADS's hyper-parameter search on Ray Tune."""

from __future__ import annotations

from benchmarks.report.common import provenance
from benchmarks.tables import table

TITLE = "Hyper-parameter search: LFADS on the Lorenz data (Ray Tune: ASHA, PBT)"


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


def _protocol(conf: dict) -> str:
    """The scheduler, in words."""
    if conf["scheduler"] == "pbt":
        return (
            f"synchronous population-based training of a population of {conf['trials']} "
            f"(taking turns on the CPUs): every {conf['grace_period']} epochs the worst quarter "
            "continues the best quarter's states with perturbed settings (×0.8 or ×1.2, or "
            "redrawn); the table shows each trial's last settings"
        )
    return f"random search, ASHA stopping trials from {conf['grace_period']} epochs on"


def _row(label: str, run: dict, minutes: str) -> list:
    return [label, f"{run['co_bps']:.4f}", f"{run['sampled_co_bps']:.4f}", run["epochs"], minutes]


def _runs(m: dict) -> list[list]:
    """The table of runs: the search's best, its best searched trial, the default's seeds."""
    best, default = m["best"], m["default"]
    rows = [_row("best of the search", best, f"{best['minutes']:.1f} (all trials)")]
    if "searched" in m:
        rows.append(_row("best searched trial (the seeded default excluded)", m["searched"], ""))
    seed = f", seed {default['seed']}" if "seed" in default else ""
    label = f"default (`LFADS_CONFIGS['lorenz']`{seed})"
    rows.append(_row(label, default, f"{default['minutes']:.1f}"))
    if "default_next_seed" in m:
        other = m["default_next_seed"]
        rows.append(_row(f"default, seed {other['seed']}", other, f"{other['minutes']:.1f}"))
    return rows


def _verdict(m: dict) -> str:
    judged = m.get("searched", m["best"])
    verdict = "met" if m["target_met"] else "MISSED"
    if "searched" not in m and m.get("best_is_start"):
        verdict += " by the seeded default itself: no drawn setting beat it"
    noise = m.get("seed_noise_co_bps")
    noise = "" if noise is None else f" (the default's seed-to-seed difference: {noise:.4f})"
    return (
        f"Target: {judged['co_bps']:.4f} vs {m['default']['co_bps']:.4f} co-bps → {verdict}"
        f"{noise}. Its settings: "
        + ", ".join(f"`{key}` = {_value(value)}" for key, value in judged["config"].items())
        + "."
    )


def _section(record: dict) -> list[str]:
    conf, m = record["configuration"], record["metrics"]
    space = "; ".join(f"`{key}` {domain}" for key, domain in conf["space"].items())
    start = (
        " The first trial takes the catalogue's values of these settings, the others are drawn."
        if conf.get("start")
        else ""
    )
    judged = (
        "the best searched trial (any but the seeded default's own)"
        if "searched" in m
        else "the best configuration"
    )
    lines = [
        f"### `{record['variant']}`: {conf['scheduler'].upper()}",
        "",
        f"Data: `{conf['data']}` ({conf['n_train']} training trials, {conf['n_valid']} "
        f"validation trials, {conf['heldout']} held-out neurons). `pyro_circuits.tune.tune`: "
        f"{conf['trials']} trials over {space}, on the catalogue's Lorenz settings; at most "
        f"{conf['max_epochs']} epochs each, {_protocol(conf)}; {conf['ray_cpus']} Ray CPUs "
        f"(one trial per CPU).{start} The default configuration is trained with the same epoch "
        "budget, data and seed. Co-bps on the validation trials' held-out neurons at each "
        "run's best epoch: of the rates of the guide's means (what the search maximises) and "
        f"of the posterior averaged over 50 draws. Target (issue #48): {judged} at least as "
        "good as the default.",
        "",
        table(["run", "co-bps (means)", "co-bps (50 draws)", "epochs", "minutes"], _runs(m)),
        "",
        _verdict(m),
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

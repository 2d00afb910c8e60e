"""Sections of the studies (``benchmarks/studies/``): one question each, each its own renderer."""

from __future__ import annotations

from benchmarks.report.common import day, merged, provenance
from benchmarks.tables import table


def _notes(records: list[dict]) -> str:
    """The records' notes, each once, as sentences after a paragraph."""
    notes = list(dict.fromkeys(r["notes"] for r in records if r.get("notes")))
    return "".join(f" {note}" for note in notes)


def smc_kernel_support(records: list[dict]) -> str:
    (record,) = records
    conf, rows = record["configuration"], record["metrics"]["rows"]
    scales = conf["scales"]
    body = [[n, 4 * n, *(f"{r['inside']:.2g}" for r in rows if r["n"] == n)] for n in conf["sizes"]]
    lines = [
        "### SMC-ABC: perturbation-kernel draws inside the prior (rank-2 RNN)",
        "",
        f"`benchmarks/studies/smc_kernel_support.py`, {day(record)}. Population 0 of the "
        f"compare_rank2 protocol (1,000 of 2,000 prior draws nearest x₀), {conf['draws']:,} "
        "kernel draws per cell; 0 means none of them. `SMCABC` stops a population below 1e-5 "
        "(`min_kernel_acceptance`).",
        "",
        table(["n", "dim z", *(f"kernel × {s:g}" for s in scales)], body),
    ]
    return "\n".join(lines + provenance(records))


def ladder_diagnostics(records: list[dict]) -> str:
    order = {"sigma_learned": 0, "sigma_fixed": 1}
    records = sorted(records, key=lambda r: order.get(r["variant"], 2))
    runs = [merged(r) for r in records]
    body = [
        [
            r["variant"].removeprefix("sigma_"),
            f"{r['minutes']:g}",
            r["steps"],
            f"{r['spikes_r2']:.3f}",
            f"{r['fluor_r2']:.3f}",
            f"{r['rates_r2']:.3f}",
            f"{r['sigma']:.2f}",
        ]
        for r in runs
    ]
    gradients = next(r["gradients"] for r in runs if "gradients" in r)
    lines = [
        "### Calcium ladder diagnostics: σ learned vs fixed; gradients reaching the generator",
        "",
        f"`benchmarks/studies/ladder_diagnostics.py`, {day(records[0])}. Lorenz fluorescence, "
        "400 training / 100 validation trials, staged hold and ramp 300 steps; the spike level "
        "passes gradient into the deep model (`train_deep_through_spikes=True`)." + _notes(records),
        "",
        table(
            ["σ", "minutes", "steps", "spikes R²", "fluorescence R²", "rates R²", "final σ"], body
        ),
        "",
        "Gradient norms after the fixed-σ run (one batch of 64 trials, log-likelihood terms):",
        "",
        table(["term → weights", "‖gradient‖"], [[k, f"{v:.3g}"] for k, v in gradients.items()]),
    ]
    return "\n".join(lines + provenance(records))


ENCODER_INPUTS = ("spikes", "fluorescence", "innovation")
LADDER_VARIANTS = ("cut", "end_to_end")


def ladder_deep_level(records: list[dict]) -> str:
    runs = {r["variant"]: merged(r) for r in records}
    encoders = [
        [name, r["steps"], f"{r['minutes']:.1f}", f"{r['rates_r2']:.3f}"]
        for name in ENCODER_INPUTS
        if (r := runs.get(f"encoder_{name}")) is not None
    ]
    ladders = [
        [
            variant,
            row["step"],
            f"{row['minutes']:.1f}",
            f"{row['rates_r2']:.3f}",
            f"{row['spikes_r2']:.3f}",
            f"{row['fluor_r2']:.3f}",
        ]
        for variant in LADDER_VARIANTS
        for row in runs.get(f"ladder_{variant}", {}).get("trajectory", [])
    ]
    lines = [
        "### Calcium ladder: what the dynamics level needs to learn",
        "",
        f"`benchmarks/studies/ladder_deep_level.py`, {day(records[0])}. Lorenz, 400 training / "
        "100 validation trials, warm-up (and the ladder's hold and ramp) 300 steps, batch 64."
        + _notes(records),
        "",
        "LFADS scoring the true spikes, its encoder reading:",
        "",
        table(["encoder reads", "steps", "minutes", "rates R²"], encoders),
        "",
        "Ladder on fluorescence (dynamics encoder reads the innovation), validation R² during "
        "training; `cut`: the spike level reads detached factors (default), `end_to_end`: "
        "`train_deep_through_spikes=True`:",
        "",
        table(["variant", "step", "minutes", "rates R²", "spikes R²", "fluorescence R²"], ladders),
    ]
    return "\n".join(lines + provenance(records))


def readout_ceiling(records: list[dict]) -> str:
    (record,) = records
    body = [
        [
            row["dataset"],
            row["configured_fac_dim"],
            row["n_factors"],
            f"{row['r2']:.3f}",
            " / ".join(f"{s:.2f}" for s in row["segments"]),
        ]
        for row in record["metrics"]["rows"]
    ]
    lines = [
        "### Rates R² ceiling of an exponential readout of k factors",
        "",
        f"`benchmarks/studies/readout_ceiling.py`, {day(record)}. Factors fitted freely per "
        f"trial and time step on {record['configuration']['n_trials']} validation trials "
        "(`metrics.exp_readout_fit`): no model with k factors and an exponential readout can "
        "score higher rates R² on these data.",
        "",
        table(["data", "benchmark's fac_dim", "k", "rates R² ceiling", "per 10-bin segment"], body),
    ]
    return "\n".join(lines + provenance(records))


def ladder_adam_scale(records: list[dict]) -> str:
    lines = [
        "### Calcium ladder: gradient scale per level against Adam's ε",
        "",
        "`benchmarks/studies/ladder_adam_scale.py`. √v̂: Adam's bias-corrected root-mean-square "
        "gradient per parameter element at the end of training; step share at ε: the median of "
        "√v̂ / (√v̂ + ε), the fraction of the ε-free step that element keeps.",
    ]
    for record in records:
        r = merged(record)
        adam = r["adam"]
        epsilons = list(next(iter(r["levels"].values()))["step_share"])
        body = [
            [
                level,
                f"{s['elements']:,}",
                " / ".join(f"{q:.2g}" for q in s["quantiles"]),
                *(f"{s['step_share'][eps]:.3f}" for eps in epsilons),
            ]
            for level, s in r["levels"].items()
        ]
        lines += [
            "",
            f"#### {r['dataset']}: {r['epochs']} epochs ({r['steps']} steps, warm-up "
            f"{r['warmup_steps']}, {r['minutes']:.1f} min), Adam β {tuple(adam['betas'])}, "
            f"ε {adam['eps']:g}",
            "",
            f"{r['machine']}, {day(record)}.",
            "",
            table(
                [
                    "level",
                    "elements",
                    "√v̂ 10 % / 50 % / 90 %",
                    *(f"step share at ε {float(eps):g}" for eps in epsilons),
                ],
                body,
            ),
        ]
    return "\n".join(lines + provenance(records))


def ladder_calibration(records: list[dict]) -> str:
    body = []
    for record in records:
        r = merged(record)
        run_label = (
            f"{r['dataset']}, {r['minutes']:.1f} min, {r['epochs']} epochs, warm-up "
            f"{r['warmup_steps']}, seed {r['seed']}, {r['date']}"
        )
        draws = sorted((k for k in record["metrics"] if k.isdigit()), key=int)
        for d in draws:
            s = r[d]
            body.append(
                [
                    run_label,
                    d,
                    *(
                        f"{s[k]:.3f}"
                        for k in (
                            "latents_r2",
                            "r2",
                            "calibrated_r2",
                            "offset_share",
                            "mean_ratio",
                            "pooled_pearson_r2",
                            "train_r2",
                        )
                    ),
                ]
            )
    header = [
        "data set, run",
        "draws",
        "latents R²",
        "rates R²",
        "calibrated",
        "offset share",
        "mean ratio",
        "pooled r²",
        "train R²",
    ]
    lines = [
        "### Calcium ladder: rates calibration",
        "",
        "`benchmarks/studies/ladder_calibration.py`. Validation trials. R²: the calcium table's, "
        "per cell; calibrated: after each cell's own affine map fitted on the training trials; "
        "offset share: the part of the squared error that is each cell's mean offset; mean "
        "ratio: mean estimated rate over mean true rate; pooled r²: squared Pearson correlation "
        "of all entries (the reference's `infer_latent.py`); train R²: the rates R² on the "
        "training trials (10 draws), against which the validation R² shows overfitting.",
        "",
        table(header, body),
    ]
    lines += [f"\n{r['notes']}" for r in records if r.get("notes")]
    return "\n".join(lines + provenance(records))


def condition_ceiling(records: list[dict]) -> str:
    """The study's record, with the calcium benchmark's rows it was set beside (its
    ``metrics.calcium``: each model's date, rates R² and, where recorded, per tenth)."""
    (record,) = records
    rows = record["metrics"]["rows"]
    tables = record["metrics"].get("calcium", {})
    sigmas = [float(s) for s in rows[0]["psth"]]

    def table_rates(name: str, method: str) -> str:
        scores = tables.get(name, {}).get(method, {})
        return f"{scores['rates_r2']:.3f}" if "rates_r2" in scores else "–"

    body = []
    for row in rows:
        name = row["dataset"]
        body.append(
            [
                name,
                " × ".join(map(str, row["shape"])),
                row["n_conditions"],
                f"{row['condition_mean_r2']:.3f}",
                *(
                    f"{row['psth'][str(s)]['rates_r2']:.3f} ({row['psth'][str(s)]['accuracy']:.3f})"
                    for s in sigmas
                ),
                table_rates(name, "lfads_spikes"),
                table_rates(name, "ladder"),
            ]
        )
    header = [
        "data",
        "trials × bins × cells",
        "conditions",
        "condition mean (oracle)",
        *(f"condition PSTH σ = {s:g}: R² (accuracy)" for s in sigmas),
        "LFADS on the true spikes",
        "ladder",
    ]
    lines = [
        "### Calcium data: what a trial's condition explains",
        "",
        f"`benchmarks/studies/condition_ceiling.py`, {day(record)}. Rates R² on the validation "
        "trials of the calcium benchmark's data. *Condition mean*: the mean true rates of the "
        "trial's condition over its training trials (an oracle: it is told the condition and "
        "reads the true rates). *Condition PSTH*: the condition chosen by the Poisson likelihood "
        "of the trial's own spikes under each condition's training PSTH (Gaussian kernel of σ "
        "bins), and that PSTH (`baselines.condition_psth`); the accuracy is the share of trials "
        "whose condition it finds. The last two columns are the calcium table's rows on the same "
        "data as the study read them when it ran (its record's `calcium`, each row with its date).",
        "",
        table(header, body),
        "",
        "#### Rates R² per tenth of the trial",
        "",
        "The same validation trials, scored on each tenth of their bins (`metrics.r2_by_segment`) "
        "against the true rates' variance in that tenth. Models: the calcium table's rows that "
        "recorded it (older rows did not). The last row is no score: the effective number of "
        "dimensions of the true rates in each tenth, (Σλ)²/Σλ² over their covariance's "
        "eigenvalues.",
    ]
    methods = ("ladder", "lfads_spikes", "gaussian_lfads", "oasis_lfads", "threshold")

    def tenths(label: str, scores: list[float], overall: float) -> list:
        return [label, *(f"{x:.2f}" for x in scores), f"{overall:.3f}"]

    for row in rows:
        name = row["dataset"]
        best = max(sigmas, key=lambda s: row["psth"][str(s)]["rates_r2"])
        psth = row["psth"][str(best)]
        body = [
            tenths(
                "condition mean (oracle)",
                row["condition_mean_r2_by_tenth"],
                row["condition_mean_r2"],
            ),
            tenths(f"condition PSTH σ = {best:g}", psth["rates_r2_by_tenth"], psth["rates_r2"]),
        ]
        for method in methods:
            scores = tables.get(name, {}).get(method)
            if scores and "rates_r2_by_tenth" in scores:
                body.append(
                    tenths(
                        f"{method} ({scores['date'][:16]})",
                        scores["rates_r2_by_tenth"],
                        scores["rates_r2"],
                    )
                )
        body.append(
            [
                "*true rates' dimension (participation ratio)*",
                *(f"{x:.1f}" for x in row["dimension_by_tenth"]),
                f"{row['dimension']:.1f}",
            ]
        )
        lines += [
            "",
            f"**{name}**",
            "",
            table(["rates from", *(f"{i}/10" for i in range(1, 11)), "all"], body),
        ]
    return "\n".join(lines + provenance(records))


def stg_width(records: list[dict]) -> str:
    runs = {r["variant"]: r for r in records}
    grid = runs["all"]["metrics"]
    epi, widest = grid["epi"], grid["widest"]
    paper = ", ".join(f"{h:g}" for h in grid["paper_hessian"])

    def along(axis: str) -> list:
        rows = [r for r in grid["landscape"] if r["axis"] == axis and r["t"] in (-0.6, 0.0, 0.6)]
        return [f"{r['mean']:.3f} ± {r['noise_sd']:.3f}" for r in rows]

    body = [
        [f"{r['sd_v1']:g}", f"{r['sd_v2']:g}", f"{r['mean']:.4f}", f"{r['second_moment']:.2e}",
         "yes" if r["meets"] else "no", f"{r['entropy']:.2f}"]  # fmt: skip
        for r in grid["gaussians"]
    ]
    lines = [
        "### STG: does the simulator force EPI's narrow distribution?",
        "",
        f"`benchmarks/studies/stg_width.py`, {day(runs['all'])}. Along the eigenvectors of the "
        "EPI benchmark's Hessian at its mode, the hub frequency (mean ± simulator-noise s.d. "
        "over 32 noise draws) at −0.6, 0 and +0.6 nS reads "
        f"v1: {', '.join(along('v1'))}; v2: {', '.join(along('v2'))}. Gaussians centred on the "
        "mode with those principal axes, each simulated with fresh draws; \"within\" means the "
        "second moment about 0.55 Hz is at most the property's 0.025² (the property asks for "
        "equality, which a slightly wider Gaussian reaches) and the mean within 0.005 Hz.",
        "",
        table(["s.d. v1 (nS)", "s.d. v2 (nS)", "mean (Hz)", "E[(f − 0.55)²]", "within",
               "entropy (nats)"], body),  # fmt: skip
        "",
        f"The widest Gaussian within the property has Hessian eigenvalues "
        f"{widest['hessian'][0]:.3g} and {widest['hessian'][1]:.3g} (the paper: {paper}) and "
        f"entropy {widest['entropy']:.2f} nats, against EPI's {epi['hessian'][0]:.4g} and "
        f"{epi['hessian'][1]:.3g} at entropy {epi['entropy']:.2f} nats with the penalty grown to "
        f"c = {epi['c']:g}: the simulator's noise (s.d. about 0.001 Hz against the 0.025 Hz "
        "target) and slope allow the paper's width, so the narrow distribution is the "
        "optimisation's.",
    ]
    for variant, record in sorted(runs.items()):
        if variant == "all":
            continue
        m, conf = record["metrics"], record["configuration"]
        hessian = ", ".join(f"{h:.3g}" for h in m["hessian_eigenvalues"])
        lines += [
            "",
            f"EPI from the rejection start with s.d. {conf['start_sd']:g} nS instead of 1 "
            f"({day(record)}; {conf['settings']['config']['epochs']} epochs × "
            f"{conf['settings']['config']['iterations']} steps): converged {m['converged']} "
            f"(selected epoch {m['selected_epoch']}), entropy per epoch "
            f"{', '.join(f'{e:.2f}' for e in m['history']['entropy'])} nats, penalty c "
            f"{', '.join(f'{c:g}' for c in m['history']['c'])} (epoch 0: the fitted start); "
            f"Hessian eigenvalues at the mode {hessian}, "
            f"{_times_paper(m['hessian_eigenvalues'], runs['all']['metrics']['paper_hessian'])} "
            "the paper's.",
        ]
    return "\n".join(lines + _notes(records).split("\n") + provenance(records))


def _times_paper(eigenvalues: list[float], paper: list[float]) -> str:
    """``3.6× and 1.7×``: each eigenvalue over the paper's, largest magnitudes paired."""
    ours = sorted(eigenvalues, key=abs, reverse=True)
    theirs = sorted(paper, key=abs, reverse=True)
    return " and ".join(f"{a / b:.2g}×" for a, b in zip(ours, theirs, strict=True))


def threads(records: list[dict]) -> str:
    (record,) = records
    rows = record["metrics"]["rows"]
    counts = sorted({int(n) for row in rows for n in row["seconds"]})
    body = [
        [row["workload"], row["load"], *(f"{row['seconds'][str(n)]:.2f}" for n in counts),
         f"{row['seconds'][str(counts[0])] / row['seconds'][str(counts[-1])]:.2f}",
         f"{row['load_1min']:.1f}"]  # fmt: skip
        for row in rows
    ]
    lines = [
        "### torch intra-op threads per workload, idle and loaded",
        "",
        f"`benchmarks/studies/threads.py`, {day(record)}. Median wall time of 3 runs of each "
        "workload (EPI on lds2d: 200 Adam steps of batch 500; the STG simulated for 400 draws; "
        "10 LFADS SVI steps on the Lorenz data), with each thread count; *loaded*: one "
        "busy-loop process on each other core." + _notes(records),
        "",
        table(["workload", "machine", *(f"{n} thread(s) (s)" for n in counts),
               f"{counts[0]} ÷ {counts[-1]} threads", "load (1 min)"], body),  # fmt: skip
    ]
    return "\n".join(lines + provenance(records))

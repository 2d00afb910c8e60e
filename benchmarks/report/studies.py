"""Sections of the studies (``benchmarks/studies/``): one question each, each its own renderer."""

from __future__ import annotations

from benchmarks.report.common import day, merged, notes_after, provenance
from benchmarks.tables import table


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
        "passes gradient into the deep model (`train_deep_through_spikes=True`)."
        + notes_after(records),
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
        + notes_after(records),
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
        [
            f"{r['sd_v1']:g}",
            f"{r['sd_v2']:g}",
            f"{r['mean']:.4f}",
            f"{r['second_moment']:.2e}",
            "yes" if r["meets"] else "no",
            f"{r['entropy']:.2f}",
        ]
        for r in grid["gaussians"]
    ]
    lines = [
        "### STG: does the simulator force EPI's narrow distribution?",
        "",
        f"`benchmarks/studies/stg_width.py`, {day(runs['all'])}. Along the eigenvectors of the "
        "EPI benchmark's Hessian at its mode, the hub frequency (mean ± simulator-noise s.d. "
        "over 32 noise draws) at −0.6, 0 and +0.6 nS reads "
        f"v1: {', '.join(along('v1'))}; v2: {', '.join(along('v2'))}. Gaussians centred on the "
        'mode with those principal axes, each simulated with fresh draws; "within" means the '
        "second moment about 0.55 Hz is at most the property's 0.025² (the property asks for "
        "equality, which a slightly wider Gaussian reaches) and the mean within 0.005 Hz.",
        "",
        table(
            [
                "s.d. v1 (nS)",
                "s.d. v2 (nS)",
                "mean (Hz)",
                "E[(f − 0.55)²]",
                "within",
                "entropy (nats)",
            ],
            body,
        ),
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
    return "\n".join(lines + notes_after(records).split("\n") + provenance(records))


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
        [
            row["workload"],
            row["load"],
            *(f"{row['seconds'][str(n)]:.2f}" for n in counts),
            f"{row['seconds'][str(counts[0])] / row['seconds'][str(counts[-1])]:.2f}",
            f"{row['load_1min']:.1f}",
        ]
        for row in rows
    ]
    lines = [
        "### torch intra-op threads per workload, idle and loaded",
        "",
        f"`benchmarks/studies/threads.py`, {day(record)}. Median wall time of 3 runs of each "
        "workload (EPI on lds2d: 200 Adam steps of batch 500; the STG simulated for 400 draws; "
        "10 LFADS SVI steps on the Lorenz data), with each thread count; *loaded*: one "
        "busy-loop process on each other core." + notes_after(records),
        "",
        table(
            [
                "workload",
                "machine",
                *(f"{n} thread(s) (s)" for n in counts),
                f"{counts[0]} ÷ {counts[-1]} threads",
                "load (1 min)",
            ],
            body,
        ),
    ]
    return "\n".join(lines + provenance(records))


SC_GAIN = 0.02  # R² the seed's label may add before the seeds count as different functions
SC_TOLERANCE = 0.01  # a predicted mean Δ Anti agrees within max(2 se, this): 1/7 of the +7 %
SC_BIN_P = 0.01  # a bin's seeds differ when the test of equal means gives p below this
SC_NOISE = 0.1  # the share of Δ Anti's variance simulator noise may leave to the parameters


def _pm(cell: dict, key: str = "se") -> str:
    return f"{cell['mean']:+.3f} ± {cell[key]:.3f}"


def _agrees(measured: dict, predicted: float) -> bool:
    return abs(measured["mean"] - predicted) <= max(2 * measured["se"], SC_TOLERANCE)


def _sc_seed_tables(m: dict, large: float) -> list[str]:
    """The seeds' q and their silencing effects, measured and predicted from the others."""
    seeds = m["seeds"]
    shape = [
        [
            s,
            f"{r['entropy']:.2f}",
            r["converged"],
            r["larger_check"],
            f"{r['sW_negative']:.2f}",
            *(f"{p['mean']:+.2f} ± {p['sd']:.2f}" for p in r["params"].values()),
        ]
        for s, r in seeds.items()
    ]
    effects = []
    for s, r in seeds.items():
        h, first = r["held_out"], r.get("first_1000")
        covered = h.get("covered_measured")
        effects.append(
            [
                s,
                _pm(r["pro"]),
                _pm(r["anti"]),
                f"{r['anti_large']:.2f}",
                f"{h['predicted']:+.3f}",
                f"{h['r2']:.2f}",
                f"{h['covered']:.2f}",
                _pm(covered) if covered else "–",
                f"{h['covered_predicted']:+.3f}" if covered else "–",
                f"{first['anti']:+.4f} / {first['benchmark']:+.4f}" if first else "–",
            ]
        )
    transfer = [
        [f"seed {a}", *(f"{row[b]:+.3f}" for b in seeds)] for a, row in m["transfer"].items()
    ]
    transfer.append(["*measured*", *(_pm(r["anti"]) for r in seeds.values())])
    names = next(iter(seeds.values()))["params"]
    return [
        table(
            [
                "seed",
                "entropy (nats)",
                "epoch test",
                "larger check",
                "share sW < 0",
                *(f"{p} mean ± sd" for p in names),
            ],
            shape,
        ),
        "",
        f"Error increases at γ = {m['gamma']} (mean ± se over the draws); *predicted*: by the "
        "fit on the other seeds' draws; *covered*: the share of the seed's draws that lie near "
        "another seed's draw, and over those the measured and predicted mean; the last column "
        "repeats the benchmark's 1000 draws and noise (here / its record).",
        "",
        table(
            [
                "seed",
                "Δ Pro",
                "Δ Anti",
                f"share Δ Anti > {large:g}",
                "Δ Anti predicted",
                "held-out R²",
                "covered",
                "covered: Δ Anti",
                "covered: predicted",
                "benchmark's draws: Δ Anti here / recorded",
            ],
            effects,
        ),
        "",
        "Mean Δ Anti that the fit on one seed's draws (row) predicts for each seed's draws "
        "(column; on its own draws cross-validated), and the measured mean:",
        "",
        table(["fit on", *(f"draws of seed {s}" for s in seeds)], transfer),
    ]


def _sc_bins_table(m: dict) -> str:
    seeds = list(m["seeds"])

    def cell(c: dict) -> str:
        if "mean" in c:
            return f"{c['mean']:+.3f} ({c['n']})"
        return f"– ({c['n']})" if c["n"] else ""

    rows = [
        [
            b["sW"],
            f"[{b['vW'][0]:g}, {b['vW'][1]:g})",
            *(cell(b["seeds"][s]) for s in seeds),
            f"{b['p']:.2g}" if b["p"] is not None else "–",
        ]
        for b in m["bins"]
    ]
    return table(["sW", "vW", *(f"seed {s}" for s in seeds), "p (equal means)"], rows)


def _seed_list(seeds: list[str], word: str = "seed ") -> str:
    return word + ", ".join(seeds) if seeds else "none"


def _sc_missed(seeds: dict, missed: list[str], large: float) -> str:
    """Each seed the held-out fit misses: the fit over its covered draws, how often its draws
    and the others' show a large increase, and how far its large-increase draws lie from the
    other seeds' draws and from its own."""
    sentences = []
    for s in missed:
        h = seeds[s]["held_out"]
        others = [r["anti_large"] for o, r in seeds.items() if o != s]
        text = f" Seed {s}: "
        if "covered_measured" in h:
            text += (
                "over its draws near another seed's the fit predicts "
                f"{h['covered_predicted']:+.3f} against {_pm(h['covered_measured'])} measured; "
            )
        text += (
            f"{seeds[s]['anti_large']:.0%} of its draws have Δ Anti > {large:g}, against "
            f"{min(others):.0%} to {max(others):.0%} of the other seeds'"
        )
        if distance := h.get("large_distance"):
            text += (
                f"; those draws lie a median {distance['others']:.2f} from the nearest draw of "
                f"the other seeds ({len(others)} times as many draws) and {distance['own']:.2f} "
                "from the nearest other draw of their own seed"
            )
        sentences.append(text + ".")
    return "".join(sentences)


def _sc_verdict(gain: float, noise: float, carriers: list[str], missed: list[str]) -> str:
    if noise > SC_NOISE or gain >= SC_GAIN:
        return (
            "So where a draw lies does not settle its increase: simulator noise or the seed's "
            "label accounts for more than the regressor's margin."
        )
    if carriers:
        return (
            "So the increase is set by where a draw lies, and the seeds differ in the part of "
            f"the solution family their q covers: the draws of {_seed_list(carriers)} carry "
            "every other seed's mean, while the other seeds' draws do not carry the means their "
            f"held-out fits miss ({_seed_list(missed)})."
        )
    return (
        "So the increase is set by where a draw lies, but no seed's draws carry all the others' "
        "means."
    )


def _sc_conclusion(m: dict, conf: dict) -> str:
    """The verdict on "one function of the parameters, different coverage", from the figures."""
    fit, seeds = m["pooled"], m["seeds"]
    gain = fit["r2"]["params_and_seed"] - fit["r2"]["params"]
    noise = 1 - fit["noise_ceiling"]
    missed = [s for s, r in seeds.items() if not _agrees(r["anti"], r["held_out"]["predicted"])]
    reproduces = {
        a: [b for b in seeds if b != a and _agrees(seeds[b]["anti"], row[b])]
        for a, row in m["transfer"].items()
    }
    carriers = [a for a, found in reproduces.items() if len(found) == len(seeds) - 1]
    tested = [b for b in m["bins"] if b["p"] is not None]
    differing = [b for b in tested if b["p"] < SC_BIN_P]
    order = sorted(fit["importance"].items(), key=lambda kv: -kv[1])
    selected = str(m["selected_seed"])
    fits = "; ".join(f"seed {a} → {_seed_list(found, '')}" for a, found in reproduces.items())
    return (
        f"**Conclusion** (computed from the figures above; a predicted mean agrees within "
        f"max(2 se, {SC_TOLERANCE:g})). Simulator noise (the second noise seed) leaves "
        f"{noise:.0%} of the per-draw variance of Δ Anti, so the "
        f"{'parameters set it' if noise <= SC_NOISE else 'noise accounts for much of it'}; one "
        "simulator serves every seed, so at equal parameters the seeds agree by construction. "
        f"A regressor explains R² = {fit['r2']['params']:.2f}; given the seed's label as well, "
        f"{gain:+.3f} more. Permutation importance (drop in R²): "
        f"{', '.join(f'{k} {v:.2f}' for k, v in order)}. In {len(differing)} of the "
        f"{len(tested)} bins where two seeds or more have {conf['shared']} draws the seeds' means "
        f"differ (p < {SC_BIN_P:g}), so vW and the sign of sW alone "
        f"{'do not set' if differing else 'are consistent with setting'} the increase. Held "
        f"out, the other seeds' fit predicts the mean Δ Anti of {len(seeds) - len(missed)} of "
        f"{len(seeds)} seeds (misses: {_seed_list(missed)})."
        f"{_sc_missed(seeds, missed, conf['large'])} The seeds whose mean each seed's fit "
        f"reproduces: {fits}. "
        f"{_sc_verdict(gain, noise, carriers, missed)} EPI's choice, the converged seed of "
        f"greatest entropy, is seed {selected}"
        f"{' (one whose draws carry the others’ means)' if selected in carriers else ''}, with "
        f"mean Δ Anti {_pm(seeds[selected]['anti'])} at γ = {m['gamma']}."
    )


def sc_seeds(records: list[dict]) -> str:
    (record,) = records
    m, conf = record["metrics"], record["configuration"]
    where = "; ".join(
        f"{label} ({v['n']}): " + ", ".join(f"{k} {x:+.2f}" for k, x in v.items() if k != "n")
        for label, v in (
            (f"with Δ Anti > {conf['large']:g}", m["large"].get("large")),
            ("of the rest", m["large"].get("rest")),
        )
        if v
    )
    lines = [
        "### Superior colliculus: why the silencing result depends on the flow seed",
        "",
        f"`benchmarks/studies/sc_seeds.py`, {day(record)}. Hypothesis: the SC property admits a "
        "family of solutions, the Anti error increase under partial delay-period silencing is "
        "one function of a draw's parameters for every seed, and the seeds' distributions q "
        f"differ in the part of the family they cover. {conf['draws']:,} draws of each seed's "
        f"saved q (seeds {', '.join(map(str, conf['seeds']))}), each simulated "
        f"({conf['trials']} trials per condition) with and without silencing at γ = "
        f"{m['gamma']} with the same noise; a second noise seed gives the simulator-noise "
        "ceiling. Fits: gradient boosting of Δ Anti on (sW, vW, dW, hW), 5-fold cross-validated "
        f"on the pooled draws; a draw is *covered* within {conf['near']:g} (Euclidean) of "
        "another seed's draw." + notes_after(records),
        "",
        *_sc_seed_tables(m, conf["large"]),
        "",
        f"Mean Δ Anti (draws) per sign of sW and vW bin of width {conf['bin_width']:g}, per seed; "
        f"p: the χ² test of equal means over the seeds with {conf['shared']} draws or more in "
        f"the bin. Mean parameters of the pooled draws {where}.",
        "",
        _sc_bins_table(m),
        "",
        _sc_conclusion(m, conf),
    ]
    return "\n".join(lines + provenance(records))


def epi_rank2_large(records: list[dict]) -> str:
    lines = ["### EPI on the rank-2 RNN at large n: why it collapses"]
    for record in sorted(records, key=lambda r: (r["configuration"]["n"], r["variant"])):
        m, conf = record["metrics"], record["configuration"]
        constraints = [k[2:] for k in m["epochs"][0] if k.startswith("R ")]
        body = [
            [
                row["epoch"],
                f"{row['c']:.3g}",
                f"{row['entropy']:.4g}",
                *(f"{row['R ' + c]:.3g}" for c in constraints),
                f"{min(row['p ' + c] for c in constraints):.2g}",
                "yes" if row["converged"] else "no",
            ]
            for row in m["epochs"]
        ]
        cap = conf.get("max_penalty") or 0
        lines += [
            "",
            f"`benchmarks/studies/epi_rank2_large.py`, {day(record)}: n = {m['n']} "
            f"(dim z = {4 * m['n']}), seed {m['seed']}, the catalog's settings "
            f"({conf['epochs']} epochs × {conf['iterations']} steps of batch 200 after "
            f"{conf['init']} initialisation steps), "
            + (f"the penalty capped at {cap:,.0f}" if cap else "the penalty uncapped (the paper)")
            + ". Each epoch's end-of-epoch test (epoch 0: after the initialisation): the penalty "
            "c it was trained under, entropy, mean violations R of each constraint and the "
            "smallest p-value of the moment test." + notes_after([record]),
            "",
            table(
                ["epoch", "c", "entropy", *(f"R {c}" for c in constraints), "min p", "passed"], body
            ),
            "",
            f"{_ending(m)}; selected epoch {m['selected_epoch']} "
            f"({'converged: passed its test and the re-test on fresh draws' if m['converged'] else 'not converged'}); "
            f"{m['at_bounds']:.1%} of the final flow's parameter draws lie within 1e-3 of a "
            f"bound. Wall time {m['wall_time']:.0f} s. {_collapse(m)}",
        ]
    lines += _cap_verdicts(records)
    return "\n".join(lines + provenance(records))


def _ending(m: dict) -> str:
    if m["stopped"]:
        return f"Stopped: {m['stopped']}"
    if m["converged"] and m["selected_epoch"] == m["epochs"][-1]["epoch"]:
        return "Ended at its first converged epoch (`stop_early`)"
    return "All epochs ran"


def _cap_verdicts(records: list[dict]) -> list[str]:
    """For each run with a capped penalty and the uncapped run of the same n and seed: whether
    the cap alone changed the outcome (the runs agree until the cap binds)."""
    lines = []
    capped_runs = [r["metrics"] for r in records if r["configuration"].get("max_penalty")]
    if capped_runs:
        done = [m for m in capped_runs if m["converged"]]
        lines += [
            "",
            f"With a capped penalty {len(done)} of {len(capped_runs)} seeds converged"
            + (
                " ("
                + ", ".join(f"seed {m['seed']} at epoch {m['selected_epoch']}" for m in done)
                + ")"
                if done
                else ""
            )
            + ".",
        ]
    for capped in records:
        cap = capped["configuration"].get("max_penalty") or 0
        key = (capped["metrics"]["n"], capped["metrics"]["seed"])
        free = [
            r
            for r in records
            if not r["configuration"].get("max_penalty")
            and (r["metrics"]["n"], r["metrics"]["seed"]) == key
        ]
        if not cap or not free:
            continue
        a, b = free[0]["metrics"]["epochs"], capped["metrics"]["epochs"]
        same = 0
        while same < min(len(a), len(b)) and a[same]["entropy"] == b[same]["entropy"]:
            same += 1
        outcome = "converged" if capped["metrics"]["converged"] else "did not converge"
        lines += [
            "",
            f"**Conclusion** (n = {key[0]}, seed {key[1]}, computed from the two records): the "
            f"uncapped and capped runs agree exactly for epochs 0–{same - 1}, until the cap "
            f"binds; uncapped, c grew to {max(e['c'] for e in a):.3g} and the run "
            f"{'diverged' if free[0]['metrics']['stopped'] else 'ended'} "
            f"({free[0]['metrics']['at_bounds']:.0%} of its draws on the bounds); capped at "
            f"{cap:,.0f} it {outcome} at epoch {capped['metrics']['selected_epoch']} with "
            f"{capped['metrics']['at_bounds']:.0%} on the bounds. The penalty's growth set off "
            "the collapse."
            if capped["metrics"]["converged"] and free[0]["metrics"]["stopped"]
            else f"**Comparison** (n = {key[0]}, seed {key[1]}): capped at {cap:,.0f} the run "
            f"{outcome}; uncapped it {'stopped' if free[0]['metrics']['stopped'] else 'ended'}.",
        ]
    return lines


def _collapse(m: dict) -> str:
    """Where the run diverged, from its trace: the first logged step whose minibatch ‖R‖ is
    100 times the previous logged one's, the penalty then, and the best epoch before it."""
    trace, epochs = m["trace"], m["epochs"]
    jumps = [
        (before, after)
        for before, after in zip(trace, trace[1:], strict=False)
        if after["R_norm"] > 100 * before["R_norm"]
    ]
    if not jumps:
        return "No logged step's ‖R‖ jumped 100-fold: the run did not diverge."
    before, after = jumps[0]
    c = next(e["c"] for e in epochs if e["epoch"] == after["epoch"])
    earlier = [e for e in epochs if 0 < e["epoch"] < after["epoch"]]
    best = min(earlier, key=lambda e: e["R_norm2"]) if earlier else None
    closest = (
        f" The closest epoch before it was {best['epoch']} (‖R‖² = {best['R_norm2']:.2g}, "
        f"trained under c = {best['c']:.3g}), which failed the moment test."
        if best
        else ""
    )
    return (
        f"**Divergence**: between step {before['step']} of epoch {before['epoch']} and step "
        f"{after['step']} of epoch {after['epoch']} the minibatch ‖R‖ went from "
        f"{before['R_norm']:.2g} to {after['R_norm']:.2g} and the entropy from "
        f"{before['entropy']:.4g} to {after['entropy']:.3g} (the draws on the bounds), in the "
        f"epoch trained under c = {c:.3g}.{closest}"
    )

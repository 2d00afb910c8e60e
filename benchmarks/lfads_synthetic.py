"""LFADS vs baselines on synthetic spiking data with ground truth (Lorenz, chaotic RNN with inputs).

For each dataset: generate it, train LFADS (model + encoder guide, SVI) on the training trials
(10 % of them held back for early stopping) within a wall-time budget, then score on the
validation trials: rates R² against the true rates, latents R² (affine map fitted on training
trials), co-bps on held-out neurons, and for the input-pulse data the timing of the inferred input.
The Gaussian-smoothing and Neuromatch seq2seq baselines are scored the same way. The cost of Pyro
is the time of one Pyro model+guide SVI step over a plain-torch forward/backward of the same
networks and the same ELBO estimator, measured alternately in one run.

Settings: :data:`pyro_circuits.catalog.LFADS_CONFIGS` (why: ``docs/notes/lfads_configs.md``);
the budget and the targets are this benchmark's. Each dataset is one record,
``benchmarks/records/lfads_synthetic/<dataset>.json``; regenerate (each dataset may run in its
own process)::

    .venv/bin/python -m benchmarks.lfads_synthetic --datasets lorenz chaotic_rnn

Each dataset trains within its own budget (:data:`BUDGETS`; ``--minutes`` overrides).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pyro
import pyro.distributions as dist
import torch

from benchmarks.records import ROOT, command, write_record
from pyro_circuits import metrics
from pyro_circuits.baselines import gaussian_smoothing, seq2seq
from pyro_circuits.catalog import LFADS_CONFIGS
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import train

BENCHMARK = "lfads_synthetic"
#: LFADS's training budget per dataset (minutes; checked after each epoch, so a 45-min budget
#: can end past 45 min, hence 44 for Lorenz).
BUDGETS = {"lorenz": 44.0, "chaotic_rnn": 40.0}
TARGETS = {
    "lorenz": {"rates_r2": 0.95, "latents_r2": 0.95},
    "chaotic_rnn": {"rates_r2": 0.85, "input_within_3_bins": 0.5},
}
#: Where the training checkpoints go (``--resume`` continues from them): ignored by git, not a
#: record.
CHECKPOINTS = ROOT / "benchmarks" / "output"


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
    """Train and score LFADS and both baselines on ``name``; return the record's
    configuration and metrics."""
    config = LFADS_CONFIGS[name]
    minutes = BUDGETS[name] if minutes is None else minutes
    data = config.data.make()
    train_data = data.train
    n_fit = int(0.9 * len(train_data.counts))
    order = torch.randperm(len(train_data.counts), generator=torch.Generator().manual_seed(seed))
    fit_counts, stop_counts = train_data.counts[order[:n_fit]], train_data.counts[order[n_fit:]]
    configuration = {
        "dataset": name,
        "n_trials": list(data.counts.shape),
        "n_train": len(data.train_idx),
        "n_valid": len(data.valid_idx),
        "heldout": len(data.heldout),
        "config": {k: v for k, v in config.as_dict().items() if k in ("model", "guide", "train")},
        "data": str(config.data),
        "budget_minutes": minutes,
        "targets": TARGETS[name],
        "seed": seed,
    }
    result = {}

    torch.manual_seed(seed)
    model = LFADS(data.counts.shape[-1], dt=data.dt, **config.model).init_readout(fit_counts)
    guide = LFADSEncoder(model, observed=data.heldin, **config.guide)
    result["pyro_overhead"] = _pyro_overhead(model, guide, fit_counts[:128])
    checkpoint = CHECKPOINTS / f"lfads_{name}.ckpt"
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
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
        **config.train,
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
        rates, _ = gaussian_smoothing(inner, sigma=sigma).predict(outer.counts[..., data.heldin])
        candidates.append((metrics.co_bps(rates, outer.counts, data.heldout, data.dt), sigma))
    sigma = max(candidates)[1]
    smoother = gaussian_smoothing(data, sigma=sigma)
    rates_valid, latents_valid = smoother.predict(heldin_valid)
    result["smoothing"] = _score(
        data, rates_valid, smoother.predict(heldin_train)[1], latents_valid
    )
    result["smoothing"].update(train_minutes=(time.perf_counter() - start) / 60, sigma_bins=sigma)

    start = time.perf_counter()
    s2s = seq2seq(data, n_latents=config.model["fac_dim"], n_iterations=2000, seed=seed)
    rates_valid, latents_valid = s2s.predict(heldin_valid)
    result["seq2seq"] = _score(
        data, rates_valid, s2s.predict(heldin_train)[1], latents_valid, neurons=s2s.neurons
    )
    result["seq2seq"]["train_minutes"] = (time.perf_counter() - start) / 60
    result["load_average"] = list(os.getloadavg())  # the CPU may be shared with other jobs
    return {"configuration": configuration, "metrics": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=list(LFADS_CONFIGS), choices=list(LFADS_CONFIGS)
    )
    parser.add_argument(
        "--minutes", type=float, help="LFADS training budget per dataset (default: BUDGETS)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the saved checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        result = run(name, args.minutes, args.seed, not args.no_progress, args.resume)
        options: list[object] = ["--datasets", name]
        if args.minutes is not None:
            options += ["--minutes", args.minutes]
        if args.seed:
            options += ["--seed", args.seed]
        path = write_record(
            BENCHMARK,
            name,
            command(f"benchmarks.{BENCHMARK}", *options),
            result["configuration"],
            result["metrics"],
        )
        print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`", flush=True)


if __name__ == "__main__":
    main()

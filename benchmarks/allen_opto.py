"""Predicting optogenetic perturbations on a real recording (issue #49).

The shipped Allen Brain Observatory session (``pyro_circuits.datasets.allen_pv_opto``; CC-BY-4.0,
Siegle, Jia et al., Nature 2021): train on the sham trials plus some light conditions, predict
the held-out conditions' trials from their light command alone. Two splits
(``datasets.allen.SPLITS``): held-out level (train 1.3 and 1.7, predict 2.0) and held-out waveform
(train pulses and pulse trains, predict the raised-cosine ramps). Models:

* ``sham_psth``: no effect, the sham PSTH for every trial;
* ``glm``: per-unit Poisson GLM (scikit-learn ``PoissonRegressor``) with a light kernel and the
  unit's trial-averaged sham activity (``baselines.opto.light_glm``);
* ``lfads``: LFADS with the light as a measured input (``ext_dim=1``, no inferred inputs), fitted
  with SVI on the training trials; held-out trials are predicted from its prior given the light
  (``baselines.opto.prior_predictive_rates``), never from their spikes;
* ``biornn`` (``--model biornn``, a record of its own): a one-area spiking bioRNN (Dale's law,
  local inhibition) whose E cells are the recorded units and whose I cells are hidden, with the
  light as an input current through learned non-negative per-neuron gains (cell types are
  unlabelled), fitted by trial matching within light conditions (``svi.fit_circuit``); a held-out
  condition is predicted by simulating its light command (the smoothed simulated PSTH).

Scores on the held-out trials (``baselines.opto.perturbation_scores``): bits/spike against the
sham PSTH and the R² of the light-evoked PSTH change over significantly modulated units.

    .venv/bin/python -m benchmarks.allen_opto --split heldout_level --max-time 420
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.records import command, write_record
from pyro_circuits.baselines.opto import (
    light_glm,
    perturbation_scores,
    prior_predictive_rates,
    sham_psth,
    simulated_rates,
)
from pyro_circuits.datasets.allen import SPLITS, allen_opto_split, allen_pv_opto
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS, BioRNN
from pyro_circuits.svi import fit_circuit, train

BENCHMARK = "allen_opto"
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
LFADS_MODEL = dict(ic_dim=16, gen_dim=64, fac_dim=12, co_dim=0, ext_dim=1, dropout=0.05)
LFADS_GUIDE = dict(enc_dim=48)
SHAM_GUIDE = dict(enc_dim=48, ci_dim=32, con_dim=32)
LFADS_TRAIN = dict(batch_size=32, lr=5e-3, kl_warmup=300, cd_rate=0.3, patience=25)
WINDOW = slice(50, 150)  # light onset to the end of the trial
BIORNN_MODEL = dict(n_inh=32, dt=10.0, stim_step=0, stim_duration=0.0, n_inputs=1)
BIORNN_TRAIN = dict(batch_size=32, lr=3e-3, patience=30)
BIORNN_LIGHT_GAIN = 0.2  # initial per-neuron light gains ~ U(0, 0.2)
BIORNN_SIMULATIONS = 300  # simulated trials per predicted condition
SHARED_CORES = "Measured on 2 CPU cores shared with several other jobs (training time inflated)."


def split_data(split: str, seed: int = 0):
    """(data, train_idx, fit_idx, valid_idx, test_idx): ``fit``/``valid`` split the training
    trials 85/15 at random (``seed``) for early stopping."""
    data = allen_pv_opto()
    train_idx, test_idx = allen_opto_split(split)
    g = torch.Generator().manual_seed(seed)
    order = train_idx[torch.randperm(len(train_idx), generator=g)]
    n_valid = int(0.15 * len(order))
    return data, train_idx, order[n_valid:].sort().values, order[:n_valid].sort().values, test_idx


def fit_lfads(data, fit_idx, valid_idx, *, max_epochs, max_time, seed, progress=True):
    torch.manual_seed(seed)
    counts, light = data.counts, data.inputs
    model = LFADS(counts.shape[-1], dt=data.dt, **LFADS_MODEL).init_readout(counts[fit_idx])
    guide = LFADSEncoder(model, **LFADS_GUIDE)
    fit = train(
        model,
        guide,
        counts[fit_idx],
        light[fit_idx],
        valid_counts=counts[valid_idx],
        valid_inputs=light[valid_idx],
        max_epochs=max_epochs,
        max_time=max_time,
        seed=seed,
        progress=progress,
        **LFADS_TRAIN,
    )
    return fit


def fit_biornn(data, fit_idx, valid_idx, *, steps: int, seed: int, progress=True):
    """The bioRNN of the recorded units (its E cells) and hidden I cells, fitted by trial
    matching within light conditions; resting potentials start at each unit's mean rate."""
    counts, light = data.counts, data.inputs
    n_units, n_bins = counts.shape[-1], counts.shape[1]
    model = BioRNN(1, n_units, n_steps=n_bins, seed=seed, **BIORNN_MODEL)
    model.init_rates(counts[fit_idx])
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        model.w_light.uniform_(0.0, BIORNN_LIGHT_GAIN, generator=generator)
    spikes = counts.clamp(max=1.0)  # the model fires at most once per 10-ms step
    return fit_circuit(
        model,
        spikes[fit_idx],
        spikes[valid_idx],
        [torch.ones(n_units, dtype=torch.bool)],
        dt=model.dt,
        steps=steps,
        train_inputs=light[fit_idx],
        test_inputs=light[valid_idx],
        recorded=torch.arange(n_units),
        seed=seed,
        progress=progress,
        **BIORNN_TRAIN,
    )


def run(split: str, *, max_epochs: int, max_time: float, seed: int, model: str = "lfads",
        steps: int = 600):  # fmt: skip
    """Fit ``model`` (``"lfads"`` or ``"biornn"``) and the two baselines on ``split`` and score
    them; returns ``{model: scores}`` and the predictions ``{model: (held-out rates, predicted
    sham)}``."""
    data, train_idx, fit_idx, valid_idx, test_idx = split_data(split, seed)
    counts, light, dt = data.counts, data.inputs, data.dt
    is_sham = data.conditions == 0
    sham_counts = counts[is_sham]
    sham = sham_psth(sham_counts, dt)
    test_counts, test_light = counts[test_idx], light[test_idx]
    conditions = data.conditions[test_idx]
    predictions, times = {}, {}
    predictions["sham_psth"] = (sham.expand_as(test_counts), sham)
    times["sham_psth"] = 0.0

    glm = light_glm(counts[train_idx], light[train_idx], is_sham[train_idx], dt, progress=True)
    predictions["glm"] = (glm.predict(test_light), glm.predict(torch.zeros(1, *light.shape[1:]))[0])
    times["glm"] = glm.wall_time

    if model == "lfads":
        fit = fit_lfads(data, fit_idx, valid_idx, max_epochs=max_epochs, max_time=max_time,
                        seed=seed)  # fmt: skip
        rates = prior_predictive_rates(fit.model, test_light, counts.shape[-1], seed=seed)
        no_light = prior_predictive_rates(
            fit.model, torch.zeros(len(sham_counts), *light.shape[1:]), counts.shape[-1], seed=seed
        ).mean(0)
        extra = {"epochs": len(fit.history), "best_epoch": fit.best_epoch}
    else:
        fit = fit_biornn(data, fit_idx, valid_idx, steps=steps, seed=seed)
        n_units = counts.shape[-1]
        simulate = dict(simulations=BIORNN_SIMULATIONS, seed=seed)
        rates = simulated_rates(fit.model, test_light, n_units, dt, **simulate)
        no_light = simulated_rates(fit.model, torch.zeros(1, *light.shape[1:]), n_units, dt,
                                   **simulate)[0]  # fmt: skip
        valid = [record["valid_loss"] for record in fit.history]
        extra = {"steps": fit.steps, "epochs": len(valid), "best_epoch": valid.index(min(valid))}
    predictions[model] = (rates, no_light)
    times[model] = fit.wall_time

    scores = {}
    for name, (pred, pred_sham) in predictions.items():
        scores[name] = perturbation_scores(
            pred, test_counts, conditions, sham, sham_counts, pred_sham, dt, window=WINDOW
        )
        scores[name]["train_seconds"] = times[name]
    scores[model].update(extra)
    # Evaluated on the same units for every model: those the light changes significantly.
    return scores, predictions, (test_counts, conditions, sham_counts)


def run_sham(*, max_epochs: int, max_time: float, seed: int, heldout_fraction: float = 0.2):
    """LFADS latent dynamics of the sham trials alone (no light): co-bps on a random 20 % of
    held-out units of validation trials (20 % of the sham trials), against the Gaussian
    smoothing baseline with its kernel width picked on the same validation trials. Returns
    (metrics, posterior factors of the validation trials)."""
    from pyro_circuits.baselines import gaussian_smoothing
    from pyro_circuits.datasets import SpikeData
    from pyro_circuits.metrics import co_bps

    data = allen_pv_opto()
    sham = data.counts[data.conditions == 0]
    g = torch.Generator().manual_seed(seed)
    n_units, n_trials = sham.shape[-1], len(sham)
    heldout = torch.randperm(n_units, generator=g)[: int(heldout_fraction * n_units)].sort().values
    order = torch.randperm(n_trials, generator=g)
    n_valid = int(0.2 * n_trials)
    valid_idx, train_idx = order[:n_valid].sort().values, order[n_valid:].sort().values
    sd = SpikeData(sham, dt=data.dt, train_idx=train_idx, valid_idx=valid_idx, heldout=heldout)
    heldin = sd.heldin
    valid = sd.valid.counts
    scores = {}
    start = time.perf_counter()
    best = max(
        (
            co_bps(
                gaussian_smoothing(sd, sigma=sigma).predict(valid[..., heldin])[0],
                valid,
                heldout,
                sd.dt,
            ),
            sigma,
        )  # fmt: skip
        for sigma in (1.0, 2.0, 4.0, 8.0)
    )
    scores["smoothing"] = {"co_bps": best[0], "sigma_bins": best[1],
                           "train_seconds": time.perf_counter() - start}  # fmt: skip
    torch.manual_seed(seed)
    model_config = {**LFADS_MODEL, "ext_dim": 0, "co_dim": 2}  # inferred inputs: no light here
    model = LFADS(n_units, dt=sd.dt, **model_config).init_readout(sd.train.counts)
    guide = LFADSEncoder(model, observed=heldin, **SHAM_GUIDE)
    # early stopping on the training trials' held-in ELBO would need a split of its own: the
    # validation trials' held-in spikes are what the encoder reads, so they stop training.
    hidden = valid.clone()
    hidden[..., heldout] = 0
    fit = train(model, guide, sd.train.counts, max_epochs=max_epochs, max_time=max_time,
                seed=seed, progress=True, **LFADS_TRAIN)  # fmt: skip
    post = fit.posterior_mean(hidden, seed=seed)
    scores["lfads"] = {"co_bps": co_bps(post["rates"], valid, heldout, sd.dt),
                       "train_seconds": fit.wall_time, "epochs": len(fit.history)}  # fmt: skip
    return scores, post["factors"], {"n_train": len(train_idx), "n_valid": n_valid,
                                     "n_heldout": len(heldout), "model": model_config}  # fmt: skip


def plot_latents(factors: torch.Tensor, out: Path) -> None:
    """The first three principal components of LFADS's factors on held-out sham trials: the
    trial average (black) over a few single trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = factors.numpy()
    flat = f.reshape(-1, f.shape[-1])
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    pcs = (f - mean) @ vt[:3].T  # [trials, time, 3]
    t = np.arange(f.shape[1]) * 0.01
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.6), sharex=True)
    for k, ax in enumerate(axes):
        ax.plot(t, pcs[:6, :, k].T, color="0.7", lw=0.7)
        ax.plot(t, pcs[..., k].mean(0), "k", lw=2)
        ax.set_title(f"factor PC {k + 1}", fontsize=9)
        ax.set_xlabel("time in trial (s)", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot(figure_data: Path, out: Path, n_units: int = 4) -> None:
    """Recorded vs predicted light-evoked PSTH changes (50-ms bins) of the ``n_units`` units
    with the largest recorded change, one column per held-out condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyro_circuits.datasets.allen import allen_pv_opto_trials

    d = np.load(figure_data)
    dt, width = 0.01, 5
    labels = allen_pv_opto_trials()["label"]
    by_condition = {int(c): labels[allen_pv_opto_trials()["light_condition"] == c][0]
                    for c in np.unique(d["conditions"])}  # fmt: skip
    sham = d["sham_counts"].mean(0) / dt
    rebin = lambda x: x[: x.shape[0] // width * width].reshape(-1, width, x.shape[-1]).mean(1)  # noqa: E731
    conditions = sorted(by_condition)
    recorded = {c: rebin(d["test_counts"][d["conditions"] == c].mean(0) / dt - sham)
                for c in conditions}  # fmt: skip
    predicted = {
        (m, c): rebin(d[f"{m}_rates"][d["conditions"] == c].mean(0) - d[f"{m}_sham"])
        for m in ("glm", "lfads")
        for c in conditions
    }
    size = sum(np.abs(r[10:]).sum(0) for r in recorded.values())
    units = np.argsort(size)[::-1][:n_units]
    t = (np.arange(recorded[conditions[0]].shape[0]) + 0.5) * width * dt - 0.5
    fig, axes = plt.subplots(n_units, len(conditions), figsize=(3 * len(conditions), 2 * n_units),
                             sharex=True, squeeze=False)  # fmt: skip
    for i, unit in enumerate(units):
        for j, c in enumerate(conditions):
            ax = axes[i, j]
            ax.axvspan(0, 1.0, color="0.93")
            ax.plot(t, recorded[c][:, unit], "k", lw=1.5, label="recorded")
            ax.plot(t, predicted[("glm", c)][:, unit], "C0", lw=1, label="GLM")
            ax.plot(t, predicted[("lfads", c)][:, unit], "C3", lw=1, label="LFADS")
            ax.axhline(0, color="0.6", lw=0.5)
            if i == 0:
                ax.set_title(by_condition[c], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"unit {unit}\nΔ rate (Hz)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time from light onset (s)", fontsize=8)
    axes[0, -1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=[*sorted(SPLITS), "sham_latents"], required=True,
                        help="a perturbation split, or sham_latents: co-bps on sham trials")  # fmt: skip
    parser.add_argument("--max-epochs", type=int, default=400)
    parser.add_argument("--max-time", type=float, default=420.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["lfads", "biornn"], default="lfads",
                        help="the fitted model (biornn: a record of its own, '<split>/bioRNN')")  # fmt: skip
    parser.add_argument("--steps", type=int, default=600, help="bioRNN optimiser steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure-data", type=Path, default=None,
                        help="save held-out PSTHs and predictions (.npz) for the docs' figure")  # fmt: skip
    parser.add_argument("--plot-from", type=Path, default=None,
                        help="only draw the figure from saved --figure-data, then exit")  # fmt: skip
    args = parser.parse_args(argv)
    if args.plot_from is not None:
        plot(args.plot_from, FIGURES / f"real_data_{args.split}.png")
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.split == "sham_latents":
        return _main_sham(args, start)
    scores, predictions, (test_counts, conditions, sham_counts) = run(
        args.split,
        max_epochs=args.max_epochs,
        max_time=args.max_time,
        seed=args.seed,
        model=args.model,
        steps=args.steps,
    )
    if args.model == "biornn":
        return _write_split(args, scores, start)
    if args.figure_data is not None:
        np.savez_compressed(
            args.figure_data,
            test_counts=test_counts.numpy().astype(np.int8),
            conditions=conditions.numpy(),
            sham_counts=sham_counts.numpy().astype(np.int8),
            significant=np.array(scores["lfads"]["significant"]),
            **{f"{k}_rates": v[0].numpy() for k, v in predictions.items()},
            **{f"{k}_sham": v[1].numpy() for k, v in predictions.items()},
        )
        plot(args.figure_data, FIGURES / f"real_data_{args.split}.png")
    _write_split(args, scores, start)


def _command(args) -> str:
    """The command line that regenerates a split's record."""
    if args.model == "biornn":
        options = ["--split", args.split, "--model", "biornn", "--steps", args.steps]
    else:
        options = ["--split", args.split, "--max-time", args.max_time]
        options += ["--max-epochs", args.max_epochs]
    return command("benchmarks.allen_opto", *options, "--seed", args.seed)


def _write_split(args, scores, start) -> None:
    """The record of a perturbation split: ``<split>`` for LFADS, ``<split>/bioRNN``."""
    metrics = {
        name: {k: v for k, v in s.items() if k != "significant"} for name, s in scores.items()
    }
    metrics["total_seconds"] = time.perf_counter() - start
    if args.model == "biornn":
        variant, notes = f"{args.split}/bioRNN", SHARED_CORES
        model = {
            "biornn_model": {**BIORNN_MODEL, "n_areas": 1, "n_exc": "one per recorded unit"},
            "biornn_train": {**BIORNN_TRAIN, "steps": args.steps},
            "light_gain_init": BIORNN_LIGHT_GAIN,
            "simulations_per_condition": BIORNN_SIMULATIONS,
        }
    else:
        variant, notes = args.split, None
        model = {
            "lfads_model": LFADS_MODEL,
            "lfads_guide": LFADS_GUIDE,
            "lfads_train": {
                **LFADS_TRAIN,
                "max_epochs": args.max_epochs,
                "max_time": args.max_time,
            },
        }
    configuration = {
        "split": SPLITS[args.split],
        "seed": args.seed,
        **model,
        "glm": {"n_basis": 8, "span_bins": 30, "alpha": 1e-2, "sham_sigma_bins": 2},
        "scores": {"window_bins": [50, 150], "rebin": 5, "p_value": 1e-3},
        "threads": args.threads,
    }
    write_record(BENCHMARK, variant, _command(args), configuration, metrics, notes=notes)
    for name, s in metrics.items():
        print(name, s)


def _main_sham(args, start) -> None:
    scores, factors, setting = run_sham(max_epochs=args.max_epochs, max_time=args.max_time,
                                        seed=args.seed)  # fmt: skip
    plot_latents(factors, FIGURES / "real_data_sham_latents.png")
    scores["total_seconds"] = time.perf_counter() - start
    write_record(
        BENCHMARK,
        args.split,
        _command(args),
        configuration={
            "split": "sham trials only: co-bps on 20 % held-out units of 20 % held-out trials",
            "seed": args.seed,
            **setting,
            "lfads_guide": SHAM_GUIDE,
            "lfads_train": {
                **LFADS_TRAIN,
                "max_epochs": args.max_epochs,
                "max_time": args.max_time,
            },
            "threads": args.threads,
        },
        metrics=scores,
    )
    print(scores)


if __name__ == "__main__":
    main()

"""Latents, rates, spikes and fluorescence from synthetic two-photon data (Ladder-LFADS Tables 1–2).

For each data kind of :data:`pyro_circuits.catalog.CALCIUM_CONFIGS` (Lorenz, 30 cells; chaotic
RNN, 50 cells with one input pulse per trial, in the ladder papers' recipe) the spike counts are
turned into fluorescence with the papers' recipe (AR(1) calcium, τ = 0.4 s, α = 1, σ = 0.2,
dt = 10 ms; ``benchmarks.calcium_data``). Each model trains within a wall-time budget (10 % of
the training trials held back for early stopping, except by the ladder) and is scored on the
validation trials:

* ``ladder``: CalciumLFADS + LadderEncoder on fluorescence, with the staged schedule and σ
  fixed at the recipe's 0.2 (the reference fixes σ² = 0.04); it trains on all training trials
  for its whole budget and its learning-rate schedule and best-epoch restore watch the
  training loss (its validation loss is almost all fluorescence and says nothing of the deep
  level; ``docs/notes/calcium_configs.md``);
* ``lfads_spikes``: LFADS on the true spikes (the upper bound);
* ``gaussian_lfads``: GaussianCalciumLFADS on fluorescence (moment-matched rates → calcium);
* ``oasis_lfads``: OASIS deconvolution with the papers' known parameters (``s_min`` 0.5),
  then LFADS on the inferred spikes rounded to counts (only when the optional, GPL
  ``oasis-deconv`` is installed: ``pip install -e .[oasis]``; otherwise recorded as skipped);
* ``threshold``: no model, no training: spikes read off the fluorescence's AR(1) innovation
  where it exceeds α/2 (``baselines.calcium.threshold_deconvolve``), the floor any spike
  inference should clear, and their calcium against the fluorescence.

R² (uniform average over neurons or latent dimensions, trials and time flattened): latents after
an affine map fitted on the training trials; rates against the true rates; spikes: inferred
spikes against the true spike counts; fluorescence: the model's fluorescence mean (its
``calcium`` site) against the observed fluorescence, whose ceiling is the true calcium's R²
(the ``true_calcium`` record: what the noise leaves; a model that fits the noise can pass it).
Each model also records its rates R² on each tenth of the trial (``rates_r2_by_tenth``).

Each (data kind, model) is one record, ``benchmarks/records/calcium_synthetic/<kind>--<model>.json``
(variant ``<kind>/<model>``), so ``--methods ladder`` replaces only the ladder's. Regenerate::

    .venv/bin/python -m benchmarks.calcium_synthetic --datasets lorenz chaotic_rnn --minutes 10

``--deep-stop`` makes the ladder hold 10 % of its training trials back and let its learning-rate
decay and restored epoch watch their deep level's share of the ELBO (``ic``, ``co``, the Poisson
tie).

``--refine STEPS`` also scores each deep model's validation read refined for those trials
(:func:`pyro_circuits.svi.refine`: a copy of the guide fine-tuned to their own ELBO, the model
fixed), in the model's record under ``refined``.

``--warmup`` (default 1600 steps, the reference's) sets the KL warm-up, the ladder's deep-model
hold and its ramp; short budgets need it shorter.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks import calcium_data
from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.baselines import calcium as baselines_calcium
from pyro_circuits.catalog import CALCIUM_CONFIGS
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.calcium_lfads import GaussianCalciumLFADS
from pyro_circuits.svi import refine

BENCHMARK = "calcium_synthetic"
# The ladder papers' OASIS with known parameters (their recipe's decay, zero baseline, no spike
# under half a spike's amplitude); OASIS's own noise-constrained default reads spikes worse.
OASIS_S_MIN = 0.5
METHODS = ("ladder", "lfads_spikes", "gaussian_lfads", "oasis_lfads", "threshold")


def _score(data, fluor, post_train, post_valid, spikes=None) -> dict:
    valid = data.valid
    out = {
        "latents_r2": metrics.latent_r2(
            post_train["factors"], data.train.latents, post_valid["factors"], valid.latents
        ),
        "rates_r2": metrics.r2_score(valid.rates, post_valid["rates"]),
        "rates_r2_by_tenth": metrics.r2_by_segment(valid.rates, post_valid["rates"]),
    }
    if spikes is not None:
        out["spikes_r2"] = metrics.r2_score(valid.counts, spikes)
    if "calcium" in post_valid:
        out["fluor_r2"] = metrics.r2_score(fluor[data.valid_idx], post_valid["calcium"])
    return out


def _command(name: str, method: str, minutes, seed, warmup, deep_stop, refine_steps) -> str:
    """The command that regenerates the record of ``(name, method)``."""
    args: list[object] = ["--datasets", name, "--methods", method]
    if method != "threshold":
        args += ["--minutes", minutes, "--warmup", warmup]
        if deep_stop and method == "ladder":
            args.append("--deep-stop")
        if refine_steps:
            args += ["--refine", refine_steps]
    if seed:
        args += ["--seed", seed]
    return command(f"benchmarks.{BENCHMARK}", *args)


def run(
    name: str,
    minutes: float,
    seed: int,
    warmup: int,
    methods=METHODS,
    deep_stop: bool = False,
    refine_steps: int = 0,
) -> list:
    """Train and score ``methods`` on data kind ``name``; write one record per method (and the
    noise's ceiling, ``true_calcium``); return the records' paths."""
    config, prepared = CALCIUM_CONFIGS[name], calcium_data.prepare(name, seed)
    data, fluor, split = prepared.data, prepared.fluor, prepared.split
    train_idx = data.train_idx
    n_neurons = data.counts.shape[-1]
    steps = calcium_data.steps(name, warmup)
    base = {
        "dataset": name,
        "recipe": str(config.data),
        "shape": list(data.counts.shape),
        "n_train": len(train_idx),
        "n_valid": len(data.valid_idx),
        "seed": seed,
    }
    paths = []

    def save(method: str, configuration: dict, scores: dict) -> None:
        paths.append(
            write_record(
                BENCHMARK,
                f"{name}/{method}",
                _command(name, method, minutes, seed, warmup, deep_stop, refine_steps),
                base | {"method": method} | configuration,
                scores,
            )
        )

    # The ceiling the fluorescence noise leaves: the true calcium against the fluorescence.
    save(
        "true_calcium",
        {"fluorescence": dict(config.fluorescence)},
        {
            "fluor_r2": metrics.r2_score(
                fluor[data.valid_idx], prepared.true_calcium[data.valid_idx]
            )
        },
    )

    def posterior(fit, observations):
        return (
            fit.posterior_mean(observations[train_idx], num_samples=10, seed=seed),
            fit.posterior_mean(observations[data.valid_idx], num_samples=20, seed=seed),
        )

    def refined_scores(fit, observations, post_train):
        """Scores of ``fit``'s read of the validation ``observations`` refined for those trials
        (:func:`refine`; the latents' map fitted on ``post_train`` as for the encoder's read)."""
        start = time.perf_counter()
        valid = observations[data.valid_idx]
        tuned = refine(fit, valid, steps=refine_steps, seed=seed, progress=False)
        post = tuned.posterior_mean(valid, num_samples=20, seed=seed)
        return _score(data, fluor, post_train, post, post.get("spikes")) | {
            "steps": refine_steps,
            "minutes": (time.perf_counter() - start) / 60,
        }

    def record(method, fit, scores, observations, post_train, settings: dict):
        """Write ``method``'s record: its scores, its run's details and, with ``refine_steps``,
        its refined read's scores."""
        if refine_steps:
            scores["refined"] = refined_scores(fit, observations, post_train)
        scores.update(
            train_minutes=fit.wall_time / 60,
            epochs=len(fit.history),
            load_average=os.getloadavg()[1],
        )
        if fit.best_epoch is not None:  # the epoch whose parameters were restored and scored
            scores["best_epoch"] = fit.best_epoch
        if fit.diverged:  # training stopped early with its best epoch kept
            scores["diverged"] = fit.diverged
        configuration = {
            "budget_minutes": minutes,
            "warmup_steps": warmup,
            "lr": steps["lr"],
            **settings,
        }
        save(method, configuration, scores)

    if "ladder" in methods:
        fit = calcium_data.fit_ladder(name, prepared, minutes, seed, warmup, deep_stop)
        post_train, post_valid = posterior(fit, fluor)
        scores = _score(data, fluor, post_train, post_valid, post_valid["spikes"])
        settings = {"deep_stop": deep_stop, "config": config.as_dict()}
        record("ladder", fit, scores, fluor, post_train, settings)

    def encoder_fit(model, observations, spikes):
        """Fit ``model`` with the LFADS encoder, its readout set from ``spikes``."""
        model.init_readout(spikes)
        fit = calcium_data.fit(
            model,
            LFADSEncoder(model, **config.deep_guide),
            observations,
            *split,
            minutes,
            seed,
            patience=config.patience,
            l2_scale=config.l2_scale,
            l2_warmup=warmup,
            **steps,
        )
        return fit, *posterior(fit, observations)

    def lfads_on(counts):
        torch.manual_seed(seed)
        return encoder_fit(LFADS(n_neurons, dt=data.dt, **config.deep), counts, counts[split[0]])

    encoder_settings = {
        "deep": dict(config.deep),
        "deep_guide": dict(config.deep_guide),
        "l2_scale": config.l2_scale,
        "patience": config.patience,
    }
    if "lfads_spikes" in methods:
        fit, post_train, post_valid = lfads_on(data.counts)
        scores = _score(data, fluor, post_train, post_valid)
        record("lfads_spikes", fit, scores, data.counts, post_train, encoder_settings)

    if "gaussian_lfads" in methods:
        torch.manual_seed(seed)
        gaussian = GaussianCalciumLFADS(
            n_neurons, dt=data.dt, calcium=dict(config.fluorescence), **config.deep
        )
        fit, post_train, post_valid = encoder_fit(
            gaussian, fluor, prepared.spikes_from_mean_fluorescence()
        )
        scores = _score(data, fluor, post_train, post_valid)
        record("gaussian_lfads", fit, scores, fluor, post_train, encoder_settings)

    if "oasis_lfads" in methods and not baselines_calcium.available():
        save("oasis_lfads", {}, {"skipped": "oasis-deconv (GPL, optional) is not installed"})
    elif "oasis_lfads" in methods:
        calcium_hat, spikes_hat = baselines_calcium.oasis_deconvolve(
            fluor, dt=data.dt, tau=config.fluorescence["tau"], s_min=OASIS_S_MIN
        )
        counts_hat = spikes_hat.round().clamp(min=0)
        fit, post_train, post_valid = lfads_on(counts_hat)
        scores = _score(data, fluor, post_train, post_valid, spikes_hat[data.valid_idx])
        scores["fluor_r2"] = metrics.r2_score(fluor[data.valid_idx], calcium_hat[data.valid_idx])
        settings = encoder_settings | {"oasis_s_min": OASIS_S_MIN}
        record("oasis_lfads", fit, scores, counts_hat, post_train, settings)

    if "threshold" in methods:
        calcium_hat, spikes_hat = baselines_calcium.threshold_deconvolve(
            fluor,
            dt=data.dt,
            tau=config.fluorescence["tau"],
            alpha=config.fluorescence["alpha"],
        )
        valid = data.valid_idx
        scores = {
            "spikes_r2": metrics.r2_score(data.counts[valid], spikes_hat[valid]),
            "fluor_r2": metrics.r2_score(fluor[valid], calcium_hat[valid]),
        }
        save("threshold", {}, scores)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=list(CALCIUM_CONFIGS), choices=list(CALCIUM_CONFIGS)
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per model")
    parser.add_argument(
        "--warmup", type=int, default=1600, help="steps of KL warm-up, hold and ramp (paper: 1600)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--deep-stop",
        action="store_true",
        help="the ladder holds 10%% of its trials back and restores its epoch of best deep-level"
        " validation loss (and decays its learning rate on it)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="also score each deep model's validation read refined for those trials"
        " (pyro_circuits.svi.refine, STEPS steps; 0: not)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        paths = run(
            name, args.minutes, args.seed, args.warmup, args.methods, args.deep_stop, args.refine
        )
        print("\n".join(f"wrote {path}" for path in paths), flush=True)
    print("docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

"""Latents, rates, spikes and fluorescence from synthetic two-photon data (Ladder-LFADS Tables 1–2).

For each dataset (Lorenz, 30 cells; chaotic RNN, 50 cells with one input pulse per trial, in the
ladder papers' recipe: network time constant 0.25 s and rates ½·10 Hz·(tanh(x) + 1), "adjusted
to make the data more representative of firing rates and time scales observed in calcium
imaging") the spike counts are turned into fluorescence with the papers' recipe (AR(1)
calcium, τ = 0.4 s, α = 1, σ = 0.2, dt = 10 ms). Each model trains within a wall-time budget
(10 % of the training trials held back for early stopping, except by the ladder) and is scored
on the validation trials:

* ``ladder``: CalciumLFADS + LadderEncoder on fluorescence, with the staged schedule and σ
  fixed at the recipe's 0.2 (the reference fixes σ² = 0.04; learned, σ grew to about 0.8);
  it trains on all training trials for its whole budget and its learning-rate schedule and
  best-epoch restore watch the training loss: its validation loss is almost all
  fluorescence and says nothing of the deep level (watching it, the Lorenz ladder ended at
  rates R² 0.656 after 25 minutes; watching the training loss, 0.849);
* ``lfads_spikes``: LFADS on the true spikes (the upper bound);
* ``gaussian_lfads``: GaussianCalciumLFADS on fluorescence (moment-matched rates → calcium);
* ``oasis_lfads``: OASIS deconvolution with the papers' known parameters (``s_min`` 0.5),
  then LFADS on the inferred spikes rounded to counts (only when the optional, GPL
  ``oasis-deconv`` is installed: ``pip install -e .[oasis]``; otherwise reported as skipped).
* ``threshold``: no model, no training: spikes read off the fluorescence's AR(1) innovation
  where it exceeds α/2 (``baselines_calcium.threshold_deconvolve``), the floor any spike
  inference should clear, and their calcium against the fluorescence.

R² (uniform average over neurons or latent dimensions, trials and time flattened): latents after
an affine map fitted on the training trials; rates against the true rates; spikes: inferred
spikes against the true spike counts; fluorescence: the model's fluorescence mean (its
``calcium`` site) against the observed fluorescence, whose ceiling is the true calcium's R²
(the table's last row: what the noise leaves; a model that fits the noise can pass it). Each
row also records its rates R² on each tenth of the trial (``rates_r2_by_tenth``), which
``benchmarks.condition_ceiling`` sets beside what the trial's condition explains there.

Regenerate (datasets may run as separate processes; the table merges whatever has finished):

    .venv/bin/python -m benchmarks.calcium_synthetic --datasets lorenz chaotic_rnn --minutes 10

``--methods ladder`` re-runs only the ladder and keeps the other models' rows of the last run
on the same data (each row records its own date).

``--deep-stop`` makes the ladder hold 10 % of its training trials back and let its learning-rate
decay and restored epoch watch their deep level's share of the ELBO (``ic``, ``co``, the Poisson
tie); tried on both data sets, it scored lower than watching the training loss (docs/calcium.md).

``--refine STEPS`` also scores each deep model's validation read refined for those trials
(:func:`pyro_circuits.refine.refine`: a copy of the guide fine-tuned to their own ELBO, the
model fixed), in a row of its own under the model's.

``--warmup`` (default 1600 steps, the reference's) sets the KL warm-up, the ladder's deep-model
hold and its ramp; short budgets need it shorter.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import time

import torch

from benchmarks._report import machine, read_all_json, read_json, update_section, write_json
from pyro_circuits import baselines_calcium, metrics
from pyro_circuits.datasets import chaotic_rnn, lorenz
from pyro_circuits.datasets.spike_data import SpikeData
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS, GaussianCalciumLFADS
from pyro_circuits.refine import refine
from pyro_circuits.train import Staged, SVIFit, train

COMMAND = ".venv/bin/python -m benchmarks.calcium_synthetic --datasets lorenz chaotic_rnn"
CALCIUM = dict(tau=0.4, alpha=1.0, sigma=0.2)
# The ladder papers' OASIS with known parameters (their recipe's decay, zero baseline, no
# spike under half a spike's amplitude); OASIS's own noise-constrained default reads the
# Lorenz spikes at R² 0.79 against 0.94 (baselines_calcium.oasis_deconvolve).
OASIS_S_MIN = 0.5
# The ladder's deep level: the sites its validation loss watches with --deep-stop.
DEEP_LEVEL = ("ic", "co", "spikes_given_rates")
METHODS = ("ladder", "lfads_spikes", "gaussian_lfads", "oasis_lfads", "threshold")
# Tables 1 and 2 of the seed paper (shared/seeds/002_314b3fef826b9482.txt): every model the issue
# asks for (the paper's Edgeworth-LFADS is not built here). The ladder's row is issue #5's target.
PAPER = {
    "lorenz": {
        "ladder": {"latents_r2": 0.962, "rates_r2": 0.943, "spikes_r2": 0.697, "fluor_r2": 0.850},
        "lfads_spikes": {"latents_r2": 0.978, "rates_r2": 0.970},
        "gaussian_lfads": {"latents_r2": 0.898, "rates_r2": 0.771, "fluor_r2": 0.001},
        "oasis_lfads": {"latents_r2": 0.924, "rates_r2": 0.946, "spikes_r2": 0.950},
    },
    "chaotic_rnn": {
        "ladder": {"rates_r2": 0.719, "spikes_r2": 0.520, "fluor_r2": 0.811},
        "lfads_spikes": {"rates_r2": 0.839},
        "gaussian_lfads": {"rates_r2": 0.656, "fluor_r2": -6.27e-6},
        "oasis_lfads": {"rates_r2": 0.808, "spikes_r2": 0.956},
    },
}
PAPER["chaotic_rnn_long"] = PAPER["chaotic_rnn"]
# Sizes from the reference hyper-parameter files (hierarchical_lfads svlae.yaml).
CONFIGS = {
    "lorenz": dict(
        data=(lorenz, dict(n_neurons=30, seed=0)),
        # The deep model of our LFADS Lorenz benchmark, not svlae.yaml's generator 64 / factors 3.
        # 60-min ladder runs: latents / rates 0.944 / 0.906 against 0.929 / 0.889 (seed 1 of this
        # model: 0.925 / 0.887, as wide a spread); LFADS on the true spikes 0.942 / 0.906 against
        # 0.924 / 0.873.
        deep=dict(ic_dim=64, gen_dim=128, fac_dim=8, co_dim=0, dropout=0.05),
        deep_guide=dict(enc_dim=64, dropout=0.05),
        ladder=dict(z_dim=64),
        # stacked=True (the paper's dynamics encoder over the spike-level one): 0.868 / 0.815.
        ladder_guide=dict(enc_dim=32, con_dim=32),
        # svlae.yaml's 250 and a 300-step warm-up read latents / rates 0.944 / 0.906 in 60 min;
        # 500 (the LFADS benchmark's) with --warmup 1500: 0.954 / 0.920 (docs/calcium.md).
        l2_scale=500.0,
        # The ladder's dropout on its deep model and deep encoder (the encoder-fitted models keep
        # `deep`'s 0.05): with 0.05 its deep level overfits (training-trial rates R² 0.950 against
        # 0.917 held out); 0.2 read latents / rates 0.975 / 0.948, and 0.974 / 0.946 and
        # 0.973 / 0.944 on seeds 1 and 2 (docs/calcium.md).
        ladder_dropout=0.2,
        cd_rate=0.0,  # the ladder's coordinated dropout: 0.3 gave 0.952 / 0.913, not adopted
        # The ladder's Adam options (train's adam_betas, adam_eps); empty: torch's defaults.
        # svlae.yaml's betas (0.9, 0.99) with eps 0.1 left the deep level untrained (rates -0.005),
        # with eps 1e-3 half-trained (0.527); beta2 0.99 alone changed nothing (0.917).
        ladder_adam=dict(),
        batch_size=64,
        lr=1e-2,  # Adam's learning rate, every model's (svlae.yaml's)
        # Early-stopping patience (epochs) of the encoder-fitted models, as in the LFADS Lorenz
        # benchmark: with 30, LFADS on the true spikes stopped at 18.7 min (rates 0.908).
        patience=200,
    ),
    "chaotic_rnn": dict(
        # The ladder papers' recipe, slower and sparser than the LFADS one (τ 25 ms, 30 Hz), with
        # their rates ½·10 Hz·(tanh(x) + 1), not LFADS's per-trial min-max normalisation.
        data=(
            chaotic_rnn,
            dict(
                n_conditions=100,
                n_neurons=50,
                g=2.5,
                tau=0.25,
                max_rate=10.0,
                normalise_per_trial=False,
                input_magnitude=20.0,
                seed=5,
            ),
        ),
        # 40 factors, not svlae.yaml's 20: the readout ceiling of 20 on these rates is R² 0.87
        # (benchmarks/readout_ceiling.py; 0.82 on the min-max rates, where 20 factors read ladder
        # latents / rates 0.600 / 0.545 against 40's 0.659 / 0.562).
        # 4 inferred inputs, not 1: a trial's condition alone explains rates R² 0.946, far above
        # what the deep level reads, and more inputs let the controller steer the generator. With
        # l2_scale 500 the ladder's rates rose from 0.615 / 0.595 to 0.658 / 0.667 on seeds 0 / 1
        # (co_dim 8: 0.640 with 2000; docs/benchmarks.md, one-off runs).
        deep=dict(ic_dim=64, gen_dim=200, fac_dim=40, co_dim=4, dropout=0.05),
        deep_guide=dict(enc_dim=128, ci_dim=128, con_dim=128, dropout=0.05),
        ladder=dict(z_dim=100),
        ladder_guide=dict(enc_dim=64, con_dim=64),
        l2_scale=500.0,  # 2000 and 50 read 0.641 and 0.643 with co_dim 4
        ladder_dropout=0.05,  # 0.2 (the Lorenz setting) read rates 0.593 against 0.609 beside it
        cd_rate=0.0,
        ladder_adam=dict(),
        batch_size=64,
        # 3e-3, not svlae.yaml's 1e-2: the ladder read rates 0.682 against 0.658 in 40 min
        # (0.698 / 0.688 in 60 min on seeds 0 / 1, 0.694 in the table's 115) and LFADS on the
        # true spikes 0.691 against 0.677; the two shallow baselines lost a little, OASIS +
        # LFADS 0.647 against 0.661 and Gaussian-LFADS 0.250 against 0.287 (docs/benchmarks.md,
        # one-off runs). One rate for every row keeps the table like for like.
        lr=3e-3,
        patience=30,
    ),
}
# The same chaotic RNN on the deprecated reference generator's own defaults: 400 conditions × 10
# trials of 200 frames (the table above follows its command line's 100 × 10 of 100). On these
# data LFADS on the true spikes reads rates R² 0.787 in 45 min, against 0.667 (docs/calcium.md).
_chaotic, _chaotic_recipe = CONFIGS["chaotic_rnn"]["data"]
CONFIGS["chaotic_rnn_long"] = CONFIGS["chaotic_rnn"] | dict(
    data=(_chaotic, _chaotic_recipe | dict(n_conditions=400, n_bins=200)),
    # The deep settings of its table's runs (the 1-s data's before co_dim 4 and l2_scale 500).
    deep=CONFIGS["chaotic_rnn"]["deep"] | dict(co_dim=1),
    l2_scale=2000.0,
    lr=1e-2,
    # svlae.yaml's β₂: with torch's 0.999 the ladder diverged at step 1,238 (NaN at the Poisson
    # tie); with 0.99 it trains without diverging: rates R² 0.727 in 112 min with --warmup 100,
    # 0.725 with --warmup 300 (docs/calcium.md).
    ladder_adam=dict(adam_betas=(0.9, 0.99)),
)


def _now() -> str:
    """The time of a run (UTC, minutes), as each row records it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")


def _fit(
    model,
    guide,
    observations,
    fit_idx,
    stop_idx,
    minutes,
    seed,
    patience,
    max_epochs=5000,
    **options,
):
    """Train on ``observations[fit_idx]``, early-stopping on ``stop_idx`` unless it is None;
    ``minutes`` None: no wall-time budget."""
    return train(
        model,
        guide,
        observations[fit_idx],
        valid_counts=None if stop_idx is None else observations[stop_idx],
        max_epochs=max_epochs,
        max_time=None if minutes is None else 60 * minutes,
        patience=patience,
        seed=seed,
        progress=False,
        **options,
    )


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


@dataclasses.dataclass
class Prepared:
    """A dataset's spikes, their fluorescence and the split of its training trials."""

    data: SpikeData
    true_calcium: torch.Tensor
    fluor: torch.Tensor
    #: The training trials to fit and those held back for early stopping (90 % / 10 %).
    split: tuple[torch.Tensor, torch.Tensor]

    def spikes_from_mean_fluorescence(self) -> torch.Tensor:
        """Spike counts guessed from the fitting trials' fluorescence, to start a readout:
        the AR(1) calcium's steady state, mean F ≈ α·(mean spikes per frame)·τ/dt."""
        return self.fluor[self.split[0]] * self.data.dt / (CALCIUM["tau"] * CALCIUM["alpha"])


def ladder_study_parser(description: str, warmup: int) -> argparse.ArgumentParser:
    """The options of a study of one data set's ladder: ``--dataset``, ``--warmup``, ``--seed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="lorenz", choices=list(CONFIGS))
    parser.add_argument(
        "--warmup", type=int, default=warmup, help="KL warm-up, hold and ramp steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def prepare(name: str, seed: int) -> Prepared:
    """``CONFIGS[name]``'s spikes, turned into fluorescence with the noise of ``seed``."""
    make_data, recipe = CONFIGS[name]["data"]
    data = make_data(**recipe)
    true_calcium, fluor = fluorescence_from_spikes(data.counts, dt=data.dt, seed=seed, **CALCIUM)
    train_idx = data.train_idx
    order = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))]
    n_fit = int(0.9 * len(order))
    return Prepared(data, true_calcium, fluor, (order[:n_fit], order[n_fit:]))


def _steps(name: str, warmup: int) -> dict:
    """The minibatch size, learning rate and KL warm-up every model of ``CONFIGS[name]`` trains
    with."""
    config = CONFIGS[name]
    return dict(batch_size=config["batch_size"], lr=config["lr"], kl_warmup=warmup)


def build_ladder(name: str, prepared: Prepared) -> tuple[CalciumLFADS, LadderEncoder]:
    """The untrained ladder model and guide of ``CONFIGS[name]`` (σ fixed at the recipe's), the
    readout started from ``prepared``'s fluorescence; :func:`fit_ladder` trains them, and
    ``SVIFit.load`` fills them with a saved fit."""
    config, data = CONFIGS[name], prepared.data
    dropout = dict(dropout=config["ladder_dropout"])
    model = CalciumLFADS(
        data.counts.shape[-1],
        dt=data.dt,
        calcium=dict(CALCIUM, learn=()),
        **config["ladder"],
        **config["deep"] | dropout,
    )
    model.init_readout(prepared.spikes_from_mean_fluorescence())
    guide = LadderEncoder(model, deep=config["deep_guide"] | dropout, **config["ladder_guide"])
    return model, guide


def fit_ladder(
    name: str,
    prepared: Prepared,
    minutes: float | None,
    seed: int,
    warmup: int,
    deep_stop: bool = False,
    **options,
) -> SVIFit:
    """Train the ladder of ``CONFIGS[name]`` on ``prepared``'s fluorescence (σ fixed at the
    recipe's); ``options`` go to :func:`pyro_circuits.train.train` (``max_epochs``,
    ``checkpoint``)."""
    config, data, fluor = CONFIGS[name], prepared.data, prepared.fluor
    torch.manual_seed(seed)
    model, guide = build_ladder(name, prepared)
    return _fit(
        model,
        guide,
        fluor,
        # Watching the whole validation ELBO (almost all fluorescence) blinds the schedule
        # to the deep level; watching its deep level alone needs trials held back.
        *(prepared.split if deep_stop else (data.train_idx, None)),
        minutes,
        seed,
        staged=Staged(hold=warmup, ramp=warmup),
        patience=None,
        l2_scale=config["l2_scale"],
        cd_rate=config["cd_rate"],
        **config["ladder_adam"],
        valid_sites=DEEP_LEVEL if deep_stop else None,
        **_steps(name, warmup),
        **options,
    )


def run(
    name: str,
    minutes: float,
    seed: int,
    warmup: int,
    methods=METHODS,
    deep_stop: bool = False,
    refine_steps: int = 0,
) -> dict:
    config, prepared = CONFIGS[name], prepare(name, seed)
    data, fluor, split = prepared.data, prepared.fluor, prepared.split
    train_idx = data.train_idx
    n_neurons = data.counts.shape[-1]
    deep, steps = config["deep"], _steps(name, warmup)
    result = {
        "dataset": name,
        "recipe": _recipe(name),
        "shape": tuple(data.counts.shape),
        "n_train": len(train_idx),
        "n_valid": len(data.valid_idx),
        # The ceiling the fluorescence noise leaves: the true calcium against the fluorescence.
        "true_calcium": {
            "fluor_r2": metrics.r2_score(
                fluor[data.valid_idx], prepared.true_calcium[data.valid_idx]
            )
        },
    }

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

    def record(method, fit, scores, observations, post_train):
        """Keep ``method``'s ``scores``, its run's details and, with ``refine_steps``, its
        refined read's scores."""
        if refine_steps:
            scores["refined"] = refined_scores(fit, observations, post_train)
        scores.update(
            train_minutes=fit.wall_time / 60,
            epochs=len(fit.history),
            budget_minutes=minutes,
            warmup_steps=warmup,
            lr=steps["lr"],
            load_average=os.getloadavg()[1],
            date=_now(),
        )
        if fit.best_epoch is not None:  # the epoch whose parameters were restored and scored
            scores["best_epoch"] = fit.best_epoch
        if fit.diverged:  # training stopped early with its best epoch kept
            scores["diverged"] = fit.diverged
        result[method] = scores

    if "ladder" in methods:
        fit = fit_ladder(name, prepared, minutes, seed, warmup, deep_stop)
        post_train, post_valid = posterior(fit, fluor)
        scores = _score(data, fluor, post_train, post_valid, post_valid["spikes"])
        record("ladder", fit, scores, fluor, post_train)

    def encoder_fit(model, observations, spikes):
        """Fit ``model`` with the LFADS encoder, its readout set from ``spikes``."""
        model.init_readout(spikes)
        fit = _fit(
            model,
            LFADSEncoder(model, **config["deep_guide"]),
            observations,
            *split,
            minutes,
            seed,
            patience=config["patience"],
            l2_scale=config["l2_scale"],
            l2_warmup=warmup,
            **steps,
        )
        return fit, *posterior(fit, observations)

    def lfads_on(counts):
        torch.manual_seed(seed)
        return encoder_fit(LFADS(n_neurons, dt=data.dt, **deep), counts, counts[split[0]])

    if "lfads_spikes" in methods:
        fit, post_train, post_valid = lfads_on(data.counts)
        scores = _score(data, fluor, post_train, post_valid)
        record("lfads_spikes", fit, scores, data.counts, post_train)

    if "gaussian_lfads" in methods:
        torch.manual_seed(seed)
        gaussian = GaussianCalciumLFADS(n_neurons, dt=data.dt, calcium=dict(CALCIUM), **deep)
        fit, post_train, post_valid = encoder_fit(
            gaussian, fluor, prepared.spikes_from_mean_fluorescence()
        )
        scores = _score(data, fluor, post_train, post_valid)
        record("gaussian_lfads", fit, scores, fluor, post_train)

    if "oasis_lfads" in methods and not baselines_calcium.available():
        result["oasis_lfads"] = {"skipped": "oasis-deconv (GPL, optional) is not installed"}
    elif "oasis_lfads" in methods:
        calcium_hat, spikes_hat = baselines_calcium.oasis_deconvolve(
            fluor, dt=data.dt, tau=CALCIUM["tau"], s_min=OASIS_S_MIN
        )
        counts_hat = spikes_hat.round().clamp(min=0)
        fit, post_train, post_valid = lfads_on(counts_hat)
        scores = _score(data, fluor, post_train, post_valid, spikes_hat[data.valid_idx])
        scores["fluor_r2"] = metrics.r2_score(fluor[data.valid_idx], calcium_hat[data.valid_idx])
        record("oasis_lfads", fit, scores, counts_hat, post_train)
    if "threshold" in methods:
        calcium_hat, spikes_hat = baselines_calcium.threshold_deconvolve(
            fluor, dt=data.dt, tau=CALCIUM["tau"], alpha=CALCIUM["alpha"]
        )
        valid = data.valid_idx
        result["threshold"] = {
            "spikes_r2": metrics.r2_score(data.counts[valid], spikes_hat[valid]),
            "fluor_r2": metrics.r2_score(fluor[valid], calcium_hat[valid]),
            "date": _now(),
        }
    result["machine"] = machine()
    return result


def _recipe(name: str) -> str:
    """The generator call that made ``name``'s spikes, e.g. ``lorenz(n_neurons=30, seed=0)``."""
    make_data, recipe = CONFIGS[name]["data"]
    return f"{make_data.__name__}({', '.join(f'{k}={v}' for k, v in recipe.items())})"


def _number(value: float) -> str:
    return f"{value:.2g}" if 0 < abs(value) < 5e-4 else f"{value:.3f}"


SCORES = ("latents_r2", "rates_r2", "spikes_r2", "fluor_r2")  # the table's columns


def _cell(scores: dict, paper: dict, key: str) -> str:
    """Our figure and, in brackets, the paper's: "0.954 (0.962)"; "–" where there is none."""
    ours = _number(scores[key]) if key in scores else "–"
    return f"{ours} ({_number(paper[key])})" if key in paper else ours


def _checks(scores: dict, targets: dict) -> str:
    """Each target against the score: "rates 0.694 vs 0.719 → MISSED; …"."""
    checks = [
        f"{key.removesuffix('_r2')} {scores[key]:.3f} vs {bar} → "
        f"{'met' if scores[key] >= bar else 'MISSED'}"
        for key, bar in targets.items()
    ]
    return "; ".join(checks) + "."


def _bound_shares(r: dict) -> list[str]:
    """Each fluorescence model's rates R² as a share of LFADS on the true spikes (its upper
    bound), beside the same share in the paper."""
    paper, bound = PAPER[r["dataset"]], r.get("lfads_spikes", {}).get("rates_r2")
    if bound is None:
        return []
    shares = [
        f"{method} {r[method]['rates_r2'] / bound:.3f} (paper "
        f"{paper[method]['rates_r2'] / paper['lfads_spikes']['rates_r2']:.3f})"
        for method in ("ladder", "oasis_lfads", "gaussian_lfads")
        if "rates_r2" in r.get(method, {})
    ]
    return ["Rates R² as a share of LFADS on the true spikes: " + "; ".join(shares) + ".", ""]


def _markdown(results: list[dict]) -> str:
    lines = [
        "## Calcium imaging: Ladder-LFADS Tables 1 and 2 on synthetic data",
        "",
        f"Regenerate: `{COMMAND} --minutes M --warmup W` (`benchmarks/calcium_synthetic.py`; the docstring",
        "defines each R²). Fluorescence: AR(1) calcium τ = 0.4 s, α = 1, σ = 0.2, dt = 10 ms;",
        "the ladder holds σ at 0.2 (rows from 2026-11-22T04:50 on; before, σ was learned and its",
        "spike encoder read the fluorescence alone), Gaussian-LFADS learns σ. Every fluorescence",
        "encoder reads the AR(1) innovation (`encoder_input`; Gaussian-LFADS rows before",
        "2026-11-30 read the raw fluorescence).",
        'Validation trials; posterior means over 20 guide samples. A row "model, refined" reads',
        "the same fit with its guide fine-tuned to the validation trials' own ELBO, the model fixed",
        "(`--refine STEPS`, `pyro_circuits.refine`; its time column: minutes and steps of that).",
        "In brackets: the seed paper's",
        "Tables 1 and 2 (`shared/seeds/002_314b3fef826b9482.txt`) for the same model; its data",
        "sets' parameters are not public, so its figures come from other draws of the recipe.",
        "",
    ]
    for r in results:
        lines += [
            f"### {r['dataset']} — {r['n_train']} training / {r['n_valid']} validation trials, "
            f"{r['shape'][2]} cells",
            "",
            f"Spikes: `{r['recipe']}`.",
            "",
            f"{r['machine']}. Budget: wall-time minutes per model; warm-up: steps of KL / L2"
            " warm-up (and of the ladder's deep-model hold and ramp); best: the epoch whose"
            " parameters were restored and scored, counted from 0 (rows from 2026-12-03T11:00 on);"
            " load: 5-min load average at the end; lr: Adam's learning rate (recorded from"
            " 2026-12-05 on; 0.01 before).",
            "",
            "| model | latents R² | rates R² | spikes R² | fluorescence R² | train (min, epochs) "
            "| run (UTC), budget, warm-up, load |",
            "|---|---|---|---|---|---|---|",
        ]
        paper = PAPER[r["dataset"]]
        for method in METHODS:
            scores = r.get(method, {"skipped": "not yet run on these data"})
            if "skipped" in scores:
                lines.append(f"| {method} | skipped: {scores['skipped']} | | | | | |")
                continue
            training = (
                f"{scores['train_minutes']:.1f}, {scores['epochs']}"
                + (f" (best {scores['best_epoch']})" if "best_epoch" in scores else "")
                + f" | {scores['date']}, "
                f"{scores['budget_minutes']:g} min, {scores['warmup_steps']}, "
                f"{scores['load_average']:.1f}"
                + (f", lr {scores['lr']:g}" if "lr" in scores else "")
                + (f"; {scores['diverged'].split(':')[0]}" if "diverged" in scores else "")
                if "epochs" in scores
                else f"no training | {scores['date']}"
            )
            cells = " | ".join(_cell(scores, paper.get(method, {}), key) for key in SCORES)
            lines.append(f"| {method} | {cells} | {training} |")
            if "refined" in scores:
                tuned = scores["refined"]
                cells = " | ".join(_cell(tuned, {}, key) for key in SCORES)
                lines.append(
                    f"| {method}, refined | {cells} | {tuned['minutes']:.1f}, "
                    f"{tuned['steps']} refine steps | |"
                )
        if "true_calcium" in r:
            lines.append(
                f"| true calcium (the noise's ceiling) | – | – | – | "
                f"{_number(r['true_calcium']['fluor_r2'])} | | |"
            )
        lines.append("")
        lines += _bound_shares(r)
        if "ladder" in r:
            lines += ["Ladder targets: " + _checks(r["ladder"], paper["ladder"]), ""]
            if "refined" in r["ladder"]:
                refined = _checks(r["ladder"]["refined"], paper["ladder"])
                lines += ["Refined ladder targets: " + refined, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
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
        " (pyro_circuits.refine, STEPS steps; 0: not)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        result = run(
            name, args.minutes, args.seed, args.warmup, args.methods, args.deep_stop, args.refine
        )
        kept = read_json(f"calcium_synthetic_{name}")
        # A partial run keeps the other methods' rows of the same data; rows of other data go.
        if set(args.methods) != set(METHODS) and kept.get("recipe") == result["recipe"]:
            result = kept | result
        write_json(f"calcium_synthetic_{name}", result)
        update_section("calcium", _markdown(read_all_json("calcium_synthetic_")))


if __name__ == "__main__":
    main()

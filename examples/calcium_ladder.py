"""Infer spikes and latent dynamics from calcium fluorescence with the ladder model.

Turns the Lorenz spiking dataset (30 cells, 10 ms frames) into fluorescence (AR(1) calcium,
τ = 0.4 s, σ = 0.2, with a few dropped frames), fits CalciumLFADS with the LadderEncoder guide and
the papers' staged schedule for a wall-time budget, and prints R² of the inferred latents, rates,
spikes and fluorescence on validation trials and an ArviZ summary of the initial conditions.
``--figure`` plots one validation trial: fluorescence, inferred spikes and latents against the
truth.

    python examples/calcium_ladder.py --minutes 20 --figure docs/figures/calcium_ladder.png
    python examples/calcium_ladder.py --quick   # a seconds-long smoke run
"""

from __future__ import annotations

import argparse

import arviz as az
import numpy as np
import torch

from pyro_circuits import metrics
from pyro_circuits.catalog import FLUORESCENCE
from pyro_circuits.datasets import lorenz
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import Staged, train

TAU, SIGMA = FLUORESCENCE["tau"], FLUORESCENCE["sigma"]  # the benchmarks' recipe


def plot(path, data, fluor, calcium, post_valid, fitted_latents, trial=0, cell=0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = data.valid
    time = np.arange(valid.counts.shape[1]) * data.dt
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    axes[0].plot(time, fluor[trial, :, cell], ".", color="0.6", ms=3, label="fluorescence")
    axes[0].plot(time, calcium[trial, :, cell], "k", label="true calcium")
    axes[0].plot(time, post_valid["calcium"][trial, :, cell], "C1", label="inferred mean")
    axes[0].set_ylabel(f"cell {cell}")
    axes[1].vlines(time, 0, valid.counts[trial, :, cell], color="k", label="true spikes")
    axes[1].plot(time, post_valid["spikes"][trial, :, cell], "C1", label="inferred spikes")
    axes[1].set_ylabel("spikes / frame")
    for dim in range(3):
        axes[2].plot(time, valid.latents[trial, :, dim], "k", lw=1)
        axes[2].plot(time, fitted_latents[trial, :, dim], "C1", lw=1)
    axes[2].set_ylabel("Lorenz x, y, z")
    axes[2].set_xlabel("time (s)")
    for ax in axes[:2]:
        ax.legend(loc="upper right", fontsize=8)
    axes[2].legend(["true", "inferred (affine map)"], loc="upper right", fontsize=8)
    fig.suptitle(f"validation trial {trial}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="save the trial plot to this path")
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs (smoke test)")
    args = parser.parse_args()

    if args.quick:
        data = lorenz(n_conditions=4, n_trials=5, n_bins=30, seed=args.seed)
        sizes, guide_sizes = dict(z_dim=4, ic_dim=8, gen_dim=16, fac_dim=3), dict(enc_dim=8)
        epochs, warmup = 2, 2
    else:
        data = lorenz(seed=args.seed)
        sizes = dict(z_dim=64, ic_dim=64, gen_dim=64, fac_dim=3, dropout=0.05)  # reference sizes
        guide_sizes, epochs, warmup = dict(enc_dim=32, con_dim=32), 100000, 400
    calcium, fluor = fluorescence_from_spikes(data.counts, dt=data.dt, tau=TAU, sigma=SIGMA)
    fluor[:, 40:43] = float("nan")  # dropped frames are masked out of the likelihood
    train_idx, valid_idx = data.train_idx, data.valid_idx
    torch.manual_seed(args.seed)
    calcium_model = dict(tau=TAU, sigma=SIGMA, learn=())  # the known noise level, held fixed
    model = CalciumLFADS(data.counts.shape[-1], dt=data.dt, calcium=calcium_model, **sizes)
    # Steady state of the calcium: mean F ≈ (mean spikes per frame) τ/dt, so no true spikes used.
    model.init_readout(torch.nan_to_num(fluor[train_idx]).clamp(min=0) * data.dt / TAU)
    guide = LadderEncoder(model, deep=dict(enc_dim=sizes["ic_dim"]), **guide_sizes)
    # No validation loss: it is almost all fluorescence, blind to the deep level, so the learning
    # rate schedule and the best-epoch restore watch the training loss (docs/calcium.md).
    fit = train(
        model, guide, fluor[train_idx], max_epochs=epochs,
        max_time=60 * args.minutes, batch_size=64, kl_warmup=warmup, l2_scale=250.0,
        staged=Staged(hold=warmup, ramp=warmup), seed=args.seed,
    )  # fmt: skip
    print(f"trained {len(fit.history)} epochs in {fit.wall_time / 60:.1f} min")

    post_train = fit.posterior_mean(fluor[train_idx], seed=args.seed)
    post_valid = fit.posterior_mean(fluor[valid_idx], seed=args.seed)
    valid, frames = data.valid, ~fluor[valid_idx].isnan().any(-1).any(0)  # frames kept
    scores = {
        "latents": metrics.latent_r2(
            post_train["factors"], data.train.latents, post_valid["factors"], valid.latents
        ),
        "rates": metrics.r2_score(valid.rates, post_valid["rates"]),
        "spikes": metrics.r2_score(valid.counts, post_valid["spikes"]),
        "fluorescence": metrics.r2_score(
            fluor[valid_idx][:, frames], post_valid["calcium"][:, frames]
        ),
    }
    print("validation R²: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))

    idata = fit.to_inference_data(fluor[valid_idx][:20], num_samples=20, seed=args.seed)
    print(az.summary(idata, var_names=["ic"], coords={"ic_dim": [0, 1, 2]}, kind="stats").head())

    if args.figure:
        fitted = metrics.affine_map(
            post_train["factors"], data.train.latents, post_valid["factors"]
        )
        plot(args.figure, data, fluor[valid_idx], calcium[valid_idx], post_valid, fitted)


if __name__ == "__main__":
    main()

"""Fit LFADS to spikes from a Lorenz attractor and compare the inferred latents with the truth.

Generates the Lorenz dataset (65 conditions × 20 trials, 30 neurons, 10 ms bins), trains the
LFADS model and encoder guide with SVI for a wall-time budget, maps the posterior-mean factors to
the true Lorenz state with an affine map fitted on training trials, plots validation trials
(``--figure``), and prints R² values and an ArviZ summary of the initial conditions.

    python examples/lfads_lorenz.py --minutes 20 --figure docs/figures/lfads_lorenz.png
    python examples/lfads_lorenz.py --quick   # a seconds-long smoke run
"""

from __future__ import annotations

import argparse

import arviz as az
import numpy as np
import torch

from pyro_circuits import metrics
from pyro_circuits.datasets import lorenz
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="save the latent plot to this path")
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs (smoke test)")
    args = parser.parse_args()

    if args.quick:
        data = lorenz(n_conditions=4, n_trials=5, n_bins=30, seed=args.seed)
        sizes, epochs = dict(ic_dim=8, gen_dim=16, fac_dim=3), 2
    else:
        data = lorenz(seed=args.seed)
        sizes, epochs = dict(ic_dim=64, gen_dim=64, fac_dim=8, dropout=0.05), 100000
    train_data, valid = data.train, data.valid
    torch.manual_seed(args.seed)
    model = LFADS(data.counts.shape[-1], dt=data.dt, **sizes).init_readout(train_data.counts)
    guide = LFADSEncoder(model, enc_dim=sizes["ic_dim"])
    fit = train(
        model, guide, train_data.counts, valid_counts=valid.counts, max_epochs=epochs,
        max_time=60 * args.minutes, batch_size=64, kl_warmup=1500, l2_scale=500.0,
        l2_warmup=1500, cd_rate=0.3, patience=60, seed=args.seed,
    )  # fmt: skip
    print(f"trained {len(fit.history)} epochs in {fit.wall_time / 60:.1f} min")

    post_train = fit.posterior_mean(train_data.counts, seed=args.seed)
    post_valid = fit.posterior_mean(valid.counts, seed=args.seed)
    rates_r2 = metrics.r2_score(valid.rates, post_valid["rates"])
    latents_r2 = metrics.latent_r2(
        post_train["factors"], train_data.latents, post_valid["factors"], valid.latents
    )
    print(f"validation rates R² {rates_r2:.3f}, latents R² {latents_r2:.3f}")

    idata = fit.to_inference_data(valid.counts[:20], num_samples=20, seed=args.seed)
    print(az.summary(idata, var_names=["ic"], coords={"ic_dim": [0, 1, 2]}, kind="stats").head())
    print(az.loo(idata))

    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fitted = metrics.affine_map(
            post_train["factors"], train_data.latents, post_valid["factors"]
        )
        time = np.arange(valid.counts.shape[1]) * data.dt
        fig, axes = plt.subplots(3, 3, figsize=(10, 6), sharex=True)
        for col, trial in enumerate((0, 1, 2)):
            for row, label in enumerate("xyz"):
                ax = axes[row, col]
                ax.plot(time, valid.latents[trial, :, row], "k", label="true")
                ax.plot(time, fitted[trial, :, row], "C1", label="LFADS (affine map)")
                ax.set_ylabel(label if col == 0 else "")
            axes[0, col].set_title(f"validation trial {trial}")
            axes[-1, col].set_xlabel("time (s)")
        axes[0, 0].legend(loc="upper right", fontsize=8)
        fig.suptitle(f"Lorenz latents: R² {latents_r2:.3f} (rates R² {rates_r2:.3f})")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)
        print(f"saved {args.figure}")


if __name__ == "__main__":
    main()

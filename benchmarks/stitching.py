"""Dynamic neural stitching on synthetic data with known truth (issue #49).

One Lorenz system recorded in five sessions, each through its own, partly overlapping set of
neurons (``datasets.lorenz_sessions``). Two ways to model it with the same budget (the same
epochs over every session's training trials, the same sizes and training settings):

* ``stitched``: one :class:`~pyro_circuits.models.StitchedLFADS` fitted jointly to all sessions,
  its per-session read-ins and read-outs initialised by principal components regression;
* ``single``: one :class:`~pyro_circuits.models.LFADS` per session, each fitted to that session
  alone.

Scores on each session's validation trials: the latent R² (``metrics.latent_r2``: an affine map
from the posterior-mean factors to the true Lorenz latents, fitted on the session's training
trials); the consistency of the condition-averaged factors across sessions (one affine map
fitted on every session's training condition averages, then its R² on each session's validation
condition averages); and a factor → behaviour decoder (``baselines.ridge_decoder``, ridge
regression) trained on the other sessions' factors and scored on each held-out session, with the
Lorenz latents as the behaviour. Target: stitched latent R² ≥ single on every session. The
figure ``docs/figures/stitching_factors.png`` shows the condition averages through the one map.

    .venv/bin/python -m benchmarks.stitching --max-epochs 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.records import command, write_record
from pyro_circuits.baselines.decoding import ridge_decoder
from pyro_circuits.datasets import lorenz_sessions
from pyro_circuits.guides import LFADSEncoder, StitchedEncoder
from pyro_circuits.metrics import affine_map, latent_r2, r2_score
from pyro_circuits.models import LFADS, StitchedLFADS
from pyro_circuits.svi import train

BENCHMARK = "stitching"
DATA = dict(n_sessions=5, n_conditions=20, n_trials=10, n_neurons=24, n_units=60, n_bins=50,
            base_rate=10.0)  # fmt: skip
MODEL = dict(ic_dim=16, gen_dim=48, fac_dim=8, co_dim=0, dropout=0.05)
GUIDE = dict(enc_dim=32, dropout=0.05)
TRAIN = dict(batch_size=40, lr=1e-2, cd_rate=0.3)
KL_WARMUP_EPOCHS = 10
PCR = dict(smooth=2.0, alpha=1.0)
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "stitching_factors.png"
MODEL_NAMES = (("stitched", "stitched LFADS"), ("single", "one LFADS per session"))


def _fit(model, guide, data, *, epochs, max_time, seed, progress):
    """``train`` with the benchmark's settings, the KL warm-up counted in epochs of this data."""
    (counts, inputs), (valid, valid_inputs) = data
    steps = -(-len(counts) // TRAIN["batch_size"])
    return train(model, guide, counts, inputs, valid_counts=valid, valid_inputs=valid_inputs,
                 max_epochs=epochs, max_time=max_time, kl_warmup=KL_WARMUP_EPOCHS * steps,
                 seed=seed, progress=progress, **TRAIN)  # fmt: skip


def fit_stitched(sessions, *, epochs, max_time, seed, progress=True):
    """The stitched model on every session; returns (fit, per-session factors of the
    training and validation trials)."""
    torch.manual_seed(seed)
    model = StitchedLFADS(sessions.n_neurons, dt=sessions.dt, **MODEL).init_pcr(sessions, **PCR)
    guide = StitchedEncoder(model, **GUIDE)
    parts = (sessions.pack("train"), sessions.pack("valid"))
    fit = _fit(model, guide, parts, epochs=epochs, max_time=max_time, seed=seed, progress=progress)
    factors = {
        part: sessions.unpack(fit.posterior_mean(*packed, seed=seed)["factors"], part)
        for part, packed in zip(("train", "valid"), parts, strict=True)
    }
    return fit, factors


def fit_single(session, *, epochs, max_time, seed, progress=True):
    """LFADS on one session alone; returns (fit, factors of its training and validation
    trials)."""
    torch.manual_seed(seed)
    train_counts, valid_counts = session.train.counts, session.valid.counts
    model = LFADS(train_counts.shape[-1], dt=session.dt, **MODEL).init_readout(train_counts)
    guide = LFADSEncoder(model, **GUIDE)
    parts = ((train_counts, None), (valid_counts, None))
    fit = _fit(model, guide, parts, epochs=epochs, max_time=max_time, seed=seed, progress=progress)
    factors = {
        part: fit.posterior_mean(counts, seed=seed)["factors"]
        for part, counts in (("train", train_counts), ("valid", valid_counts))
    }
    return fit, factors


def _condition_means(values: torch.Tensor, conditions: torch.Tensor) -> np.ndarray:
    """[conditions, time, k]: the trial average of each condition, in label order."""
    return np.stack([values[conditions == c].mean(0).numpy() for c in conditions.unique()])


def scores(sessions, factors: dict) -> tuple[dict, dict]:
    """Per-session latent R², the one-map consistency R² of the condition-averaged factors, and
    the cross-session behaviour decoder's R²; and for the figure, each session's condition-averaged
    validation factors through the one map (``mapped``) beside the true latents (``truth``)."""
    train = [s.train for s in sessions]
    valid = [s.valid for s in sessions]
    latent = [
        latent_r2(factors["train"][i], train[i].latents, factors["valid"][i], valid[i].latents)
        for i in range(len(sessions))
    ]
    data = {"train": train, "valid": valid}
    mean_f = {
        part: [_condition_means(f, d.conditions) for f, d in zip(factors[part], sets, strict=True)]
        for part, sets in data.items()
    }
    mean_z = {part: [_condition_means(d.latents, d.conditions) for d in sets]
              for part, sets in data.items()}  # fmt: skip
    pooled = np.concatenate(mean_f["train"]), np.concatenate(mean_z["train"])
    mapped = [affine_map(*pooled, f) for f in mean_f["valid"]]
    shared = [r2_score(z, m) for z, m in zip(mean_z["valid"], mapped, strict=True)]
    decoded = []
    for i in range(len(sessions)):
        others = [j for j in range(len(sessions)) if j != i]
        decoder = ridge_decoder(torch.cat([factors["train"][j] for j in others]),
                                torch.cat([train[j].latents for j in others]))  # fmt: skip
        decoded.append(decoder.score(factors["valid"][i], valid[i].latents))
    metrics = {"latent_r2": latent, "shared_map_r2": shared, "decoder_r2_other_sessions": decoded}
    return metrics, {"mapped": mapped, "truth": mean_z["valid"][0]}


def plot(trajectories: dict, out: Path, n_conditions: int = 3) -> None:
    """The first ``n_conditions`` conditions' Lorenz trajectories (latents 1 and 3): the truth
    (black) and each session's condition-averaged validation factors through the one map
    fitted on all sessions (colours), for the stitched model and the per-session models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharex=True, sharey=True)
    for ax, (key, title) in zip(axes, MODEL_NAMES, strict=True):
        truth = trajectories[key]["truth"]
        for c in range(n_conditions):
            ax.plot(truth[c, :, 0], truth[c, :, 2], "k", lw=2.5, label="truth" if c == 0 else None)
            for s, mapped in enumerate(trajectories[key]["mapped"]):
                label = f"session {s}" if c == 0 else None
                ax.plot(mapped[c, :, 0], mapped[c, :, 2], color=f"C{s}", lw=1, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("Lorenz latent 1", fontsize=8)
    axes[0].set_ylabel("Lorenz latent 3", fontsize=8)
    axes[1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def run(*, epochs: int, max_time: float, seed: int) -> dict:
    sessions = lorenz_sessions(**DATA, seed=seed)
    start = time.perf_counter()
    fit, factors = fit_stitched(sessions, epochs=epochs, max_time=max_time, seed=seed)
    stitched, trajectories = scores(sessions, factors)
    stitched |= {"train_seconds": fit.wall_time,
                "total_seconds": time.perf_counter() - start,
                "epochs": len(fit.history)}  # fmt: skip
    start = time.perf_counter()
    fits, single_factors = [], {"train": [], "valid": []}
    for session in sessions:
        single_fit, f = fit_single(session, epochs=epochs, max_time=max_time / len(sessions),
                                   seed=seed)  # fmt: skip
        fits.append(single_fit)
        for part in f:
            single_factors[part].append(f[part])
    single, single_trajectories = scores(sessions, single_factors)
    single |= {"train_seconds": sum(f.wall_time for f in fits),
              "total_seconds": time.perf_counter() - start,
              "epochs": [len(f.history) for f in fits]}  # fmt: skip
    overlap = [[len(np.intersect1d(a, b)) for b in sessions.units] for a in sessions.units]
    plot({"stitched": trajectories, "single": single_trajectories}, FIGURE)
    return {"stitched": stitched, "single": single, "shared_neurons": overlap}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--max-time", type=float, default=900.0,
                        help="seconds for the stitched fit, as many for the singles")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--notes", default=None, help="recorded with the figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metrics = run(epochs=args.max_epochs, max_time=args.max_time, seed=args.seed)
    stitched, single = metrics["stitched"]["latent_r2"], metrics["single"]["latent_r2"]
    metrics["target_met"] = all(a >= b for a, b in zip(stitched, single, strict=True))
    options = ["--max-epochs", args.max_epochs, "--max-time", args.max_time, "--seed", args.seed]
    write_record(
        BENCHMARK,
        "lorenz_5_sessions",
        command("benchmarks.stitching", *options, "--threads", args.threads),
        configuration={
            "data": DATA,
            "model": MODEL,
            "guide": GUIDE,
            "train": {
                **TRAIN,
                "kl_warmup_epochs": KL_WARMUP_EPOCHS,
                "max_epochs": args.max_epochs,
                "max_time": args.max_time,
            },
            "pcr": PCR,
            "seed": args.seed,
            "threads": args.threads,
        },  # fmt: skip
        metrics=metrics,
        notes=args.notes,
    )
    for name in ("stitched", "single"):
        print(name, metrics[name])


if __name__ == "__main__":
    main()

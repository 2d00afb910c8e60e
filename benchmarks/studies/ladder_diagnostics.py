"""Why the ladder's levels learn or not: σ learned vs fixed, and whose gradient the generator gets.

On 400 training / 100 validation trials of the Lorenz fluorescence (the calcium_synthetic
recipe; sizes of its ``lorenz`` config), the ladder model trains for ``--minutes`` with σ
learned (``learn=("sigma",)``) or fixed at 0.2 (``learn=()``); validation R² of spikes,
fluorescence and rates are reported with the final σ. After the fixed-σ run, the gradient
norms of the fluorescence log-likelihood and of the Poisson tie (``spikes_given_rates``) on the
generator's recurrent weights and the factor weights are taken on one batch of 64 trials. The
model passes the spike level's gradient into the deep model (``train_deep_through_spikes``), as
the recorded figures were measured before that became optional (commit 72a30c7, when the
dynamics encoder also read the raw fluorescence).

Regenerate (each variant is one record, ``benchmarks/records/ladder_diagnostics/<variant>.json``)::

    .venv/bin/python -m benchmarks.studies.ladder_diagnostics sigma_learned --minutes 4
    .venv/bin/python -m benchmarks.studies.ladder_diagnostics sigma_fixed --minutes 4
"""

from __future__ import annotations

import argparse

import torch
from pyro import poutine

from benchmarks.records import command, write_record
from pyro_circuits import metrics
from pyro_circuits.datasets import lorenz
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import Staged, train

STUDY = "ladder_diagnostics"
VARIANTS = {"sigma_learned": ("sigma",), "sigma_fixed": ()}


def gradient_norms(model, guide, fluorescence, n_trials: int) -> dict:
    """‖∂/∂w‖ of the fluorescence term and of the Poisson tie, for the generator's weights."""
    guide_trace = poutine.trace(guide).get_trace(fluorescence, n_trials=n_trials)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        fluorescence, n_trials=n_trials
    )
    trace.compute_log_prob()
    weights = {
        "generator.weight_hh": model.generator.weight_hh_l0,
        "factor_weight": model.factor_weight,
    }
    norms = {}
    for term in ("fluorescence", "spikes_given_rates"):
        grads = torch.autograd.grad(
            trace.nodes[term]["log_prob_sum"], list(weights.values()), retain_graph=True
        )
        norms |= {
            f"{term} → {name}": g.norm().item() for name, g in zip(weights, grads, strict=True)
        }
    return norms


def run(variant: str, minutes: float, seed: int) -> dict:
    data = lorenz(n_neurons=30, seed=0)
    _, fluor = fluorescence_from_spikes(data.counts, dt=data.dt, seed=seed, tau=0.4, sigma=0.2)
    fit_idx, valid_idx = data.train_idx[:400], data.valid_idx[:100]
    torch.manual_seed(seed)
    calcium = dict(tau=0.4, sigma=0.2, learn=VARIANTS[variant])
    model = CalciumLFADS(
        30,
        dt=data.dt,
        calcium=calcium,
        z_dim=64,
        train_deep_through_spikes=True,
        ic_dim=64,
        gen_dim=64,
        fac_dim=3,
        dropout=0.05,
    )
    model.init_readout(fluor[fit_idx] * data.dt / 0.4)
    guide = LadderEncoder(model, deep=dict(enc_dim=64, dropout=0.05), enc_dim=32, con_dim=32)
    fit = train(
        model,
        guide,
        fluor[fit_idx],
        valid_counts=fluor[valid_idx],
        batch_size=64,
        max_epochs=5000,
        max_time=60 * minutes,
        kl_warmup=300,
        l2_scale=250.0,
        staged=Staged(hold=300, ramp=300),
        patience=30,
        seed=seed,
        progress=False,
    )
    post = fit.posterior_mean(fluor[valid_idx], num_samples=10, seed=seed)
    result = {
        "steps": fit.history[-1]["step"],
        "spikes_r2": metrics.r2_score(data.counts[valid_idx], post["spikes"]),
        "fluor_r2": metrics.r2_score(fluor[valid_idx], post["calcium"]),
        "rates_r2": metrics.r2_score(data.rates[valid_idx], post["rates"]),
        "sigma": model.observation.sigma.mean().item(),
    }
    if variant == "sigma_fixed":
        result["gradients"] = gradient_norms(model, guide, fluor[fit_idx[:64]], len(fit_idx))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=list(VARIANTS))
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = [args.part, "--minutes", args.minutes] + (["--seed", args.seed] if args.seed else [])
    path = write_record(
        STUDY,
        args.part,
        command(f"benchmarks.studies.{STUDY}", *options),
        {"variant": args.part, "minutes": args.minutes, "seed": args.seed},
        run(args.part, args.minutes, args.seed),
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

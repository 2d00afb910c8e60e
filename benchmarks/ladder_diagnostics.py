"""Why the ladder's levels learn or not: σ learned vs fixed, and whose gradient the generator gets.

On 400 training / 100 validation trials of the Lorenz fluorescence (the calcium_synthetic
recipe; sizes of its ``lorenz`` config), the ladder model trains for ``--minutes`` with σ
learned (``learn=("sigma",)``) or fixed at 0.2 (``learn=()``); validation R² of spikes,
fluorescence and rates are reported with the final σ. After the fixed-σ run, the gradient
norms of the fluorescence log-likelihood and of the Poisson tie (``spikes_given_rates``) on the
generator's recurrent weights and the factor weights are taken on one batch of 64 trials. The
model passes the spike level's gradient into the deep model (``train_deep_through_spikes``), as
the figures in docs/benchmarks.md were measured before that became optional (commit 72a30c7,
when the dynamics encoder also read the raw fluorescence).

Regenerate (the two variants may run as separate processes; ``report`` merges them)::

    .venv/bin/python -m benchmarks.ladder_diagnostics sigma_learned --minutes 4
    .venv/bin/python -m benchmarks.ladder_diagnostics sigma_fixed --minutes 4
    .venv/bin/python -m benchmarks.ladder_diagnostics report
"""

from __future__ import annotations

import argparse
import json

import torch
from pyro import poutine

from benchmarks._report import OUTPUT, machine, update_section, write_json
from pyro_circuits import metrics
from pyro_circuits.datasets import lorenz
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.train import Staged, train

VARIANTS = {"sigma_learned": ("sigma",), "sigma_fixed": ()}
COMMAND = ".venv/bin/python -m benchmarks.ladder_diagnostics"


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
        "variant": variant,
        "minutes": minutes,
        "steps": fit.history[-1]["step"],
        "spikes_r2": metrics.r2_score(data.counts[valid_idx], post["spikes"]),
        "fluor_r2": metrics.r2_score(fluor[valid_idx], post["calcium"]),
        "rates_r2": metrics.r2_score(data.rates[valid_idx], post["rates"]),
        "sigma": model.observation.sigma.mean().item(),
        "machine": machine(),
    }
    if variant == "sigma_fixed":
        result["gradients"] = gradient_norms(model, guide, fluor[fit_idx[:64]], len(fit_idx))
    return result


def report() -> None:
    runs = [json.loads((OUTPUT / f"ladder_diagnostics_{v}.json").read_text()) for v in VARIANTS]
    lines = [
        "## Calcium ladder diagnostics: σ learned vs fixed; gradients reaching the generator",
        "",
        f"Regenerate: `{COMMAND} sigma_learned --minutes M`, `... sigma_fixed --minutes M`, "
        f"`... report` (`benchmarks/ladder_diagnostics.py`). {runs[0]['machine']}. Lorenz "
        "fluorescence, 400 training / 100 validation trials, staged hold and ramp 300 steps. "
        "Measured at commit 72a30c7: the spike level passed gradient into the deep model (now "
        "`train_deep_through_spikes=True`) and the dynamics encoder read the raw fluorescence "
        "(now the innovation).",
        "",
        "| σ | minutes | steps | spikes R² | fluorescence R² | rates R² | final σ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['variant'].removeprefix('sigma_')} | {r['minutes']:g} | {r['steps']} | "
            f"{r['spikes_r2']:.3f} | {r['fluor_r2']:.3f} | {r['rates_r2']:.3f} | {r['sigma']:.2f} |"
        )
    gradients = runs[1]["gradients"]
    lines += [
        "",
        "Gradient norms after the fixed-σ run (one batch of 64 trials, log-likelihood terms):",
        "",
        "| term → weights | ‖gradient‖ |",
        "|---|---|",
        *(f"| {name} | {value:.3g} |" for name, value in gradients.items()),
    ]
    update_section("ladder_diagnostics", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=[*VARIANTS, "report"])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.part == "report":
        report()
        return
    torch.set_num_threads(1)
    write_json(f"ladder_diagnostics_{args.part}", run(args.part, args.minutes, args.seed))


if __name__ == "__main__":
    main()

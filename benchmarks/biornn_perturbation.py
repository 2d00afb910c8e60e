"""bioRNN perturbation test: students fitted to a reference circuit, scored under light.

For each hypothesis ("nofb", "withfb") the explicitly specified teacher
(:func:`pyro_circuits.models.reference_circuit`) is sampled for 2,000 trials (seed ``--data-seed``),
split 50/50 into train and test. Each student (bioRNN, σRNN, and optionally the ablations) is fitted
by trial matching to the training trials (``fit_circuit``), then teacher and student are run under
the reference's perturbation cells: light on area 1 (the second area) ±20 ms around the stimulus,
inactivation (its I cells) at powers {0, 0.1, 0.2, 0.5, 1} and activation (its E cells) at
{0, 0.01, 0.02, 0.04, 0.08}, read out in area 0. Each cell's error is the hard trial-matching MSE
of area-0 features between the lit student and the lit teacher (z-scored with the lit teacher), and
the noise floor is the same error between the teacher and itself with other noise. Also: the error
in ΔP(both areas active) under inactivation at power 1, and the micro-perturbation (stimulate the
20 neurons of most positive, random and most negative gradient of the area-1 readout).

One record per (hypothesis, model, seed): ``benchmarks/records/biornn_perturbation/``.

    .venv/bin/python -m benchmarks.biornn_perturbation --hypotheses nofb --models bioRNN sigmaRNN \
        --seeds 0 1 --steps 1000
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.records import command, write_record
from pyro_circuits.handlers import optogenetic, stimulus_gradient
from pyro_circuits.models import BioRNN, reference_circuit
from pyro_circuits.svi import fit_circuit
from pyro_circuits.svi.circuit_fit import reference_dataset
from pyro_circuits.svi.trial_matching import TrialFeatures, filter_activity, trial_matching_loss

INACTIVATION = (0.0, 0.1, 0.2, 0.5, 1.0)
ACTIVATION = (0.0, 0.01, 0.02, 0.04, 0.08)
LIT, READ = 1, 0
SPARSITY = {"nofb": 0.016, "withfb": 0.006}

#: Student variants as flags of one program (the reference's config diffs).
VARIANTS = {
    "bioRNN": {},
    "sigmaRNN": {"spiking": False, "dale": False, "local_inhibition": False, "sparsity": 0.0},
    "noDale": {"dale": False},
    "nonlocal_inhibition": {"local_inhibition": False},
    "no_sparsity": {"sparsity": 0.0},
    "no_spike": {"spiking": False},
    "no_TM": {"trial_matching": False},
}


def student(name: str, hypothesis: str, size: dict, seed: int) -> tuple[BioRNN, bool]:
    flags = {"sparsity": SPARSITY[hypothesis], "l1_decay": 0.001, **VARIANTS[name]}
    tm = flags.pop("trial_matching", True)
    return BioRNN(2, size["n_exc"], size["n_inh"], **size["time"], **flags, seed=seed), tm


_CACHE: dict = {}


def run_lit(model, kind, power, n, seed, cache=False):
    key = (id(model), kind, power, n, seed)
    if cache and key in _CACHE:
        return _CACHE[key]
    out = _run_lit(model, kind, power, n, seed)
    if cache:
        _CACHE[key] = out
    return out


def _run_lit(model, kind, power, n, seed):
    if power == 0:
        return model.simulate(n, seed=seed)
    with model.light(LIT, kind, power):
        return model.simulate(n, seed=seed)


def tm_error(sim, reference, groups, dt):
    features = TrialFeatures(reference, groups, dt)
    return float(trial_matching_loss(features(sim), features(reference), method="hard"))


def both_active(spikes, model, thresholds):
    f = filter_activity(spikes, model.dt)
    active = [
        f[:, :, model.area_mask(a)].mean(-1).amax(1) > thresholds[a] for a in range(model.n_areas)
    ]
    return (active[0] & active[1]).float().mean().item()


def micro_perturbation(model, n, seed, window_steps, k=20, power=0.1):
    """Gradient-targeted stimulation of ``k`` neurons (most positive, random, most negative
    mean gradient of the area-1 readout over ``window_steps``), readout change under light."""
    steps, neurons = model.n_steps, model.n_neurons
    read = model.area_mask(1)
    start = model.stim_step

    def readout_of(spikes):
        f = filter_activity(spikes, model.dt)[:, start // 2 :, read].mean(-1)
        return f.sum(1).mean() * 1000.0 / model.dt  # Hz·bins, averaged over trials

    def program():
        import pyro

        pyro.deterministic("readout", readout_of(model(n)))

    everyone = torch.ones(neurons, dtype=torch.bool)
    grad = stimulus_gradient(
        program, "readout", everyone, current=torch.zeros(steps, neurons), site="drive", seed=seed
    )
    mean_grad = grad[window_steps].mean(0)
    order = mean_grad.argsort()
    chosen = {
        "positive": order[-k:],
        "random": torch.randperm(neurons, generator=torch.Generator().manual_seed(seed))[:k],
        "negative": order[:k],
    }
    base = readout_of(model.simulate(n, seed=seed)).item()
    out = {}
    for label, idx in chosen.items():
        current = torch.zeros(steps, neurons)
        current[window_steps.unsqueeze(1), idx.unsqueeze(0)] = power
        with optogenetic(idx.tolist(), current=current, site="drive"):
            lit = readout_of(model.simulate(n, seed=seed)).item()
        out[label] = lit - base
        out[f"predicted_{label}"] = float(mean_grad[idx].sum() * power * len(window_steps))
    return out


def evaluate(model, teacher, data_seed, seed, n_eval, groups_read):
    dt = teacher.dt
    cells = {"inactivation": {}, "activation": {}}
    floor = {"inactivation": {}, "activation": {}}
    for kind, label, powers in (
        ("I", "inactivation", INACTIVATION),
        ("E", "activation", ACTIVATION),
    ):
        for p in powers:
            ref = run_lit(teacher, kind, p, n_eval, 1000 + data_seed, cache=True)
            other = run_lit(teacher, kind, p, n_eval, 2000 + data_seed, cache=True)
            sim = run_lit(model, kind, p, n_eval, 3000 + seed)
            cells[label][str(p)] = tm_error(sim, ref, groups_read, dt)
            key = ("floor", id(teacher), kind, p)
            if key not in _CACHE:
                _CACHE[key] = tm_error(other, ref, groups_read, dt)
            floor[label][str(p)] = _CACHE[key]
    return cells, floor


def delta_p(model, teacher, data_seed, seed, n_eval):
    base = teacher.simulate(n_eval, seed=1000 + data_seed)
    f = filter_activity(base, teacher.dt)
    thresholds = [f[:, :, teacher.area_mask(a)].mean(-1).amax(1).median().item() for a in range(2)]

    def dp(m, s):
        off = both_active(m.simulate(n_eval, seed=s), m, thresholds)
        return both_active(run_lit(m, "I", 1.0, n_eval, s), m, thresholds) - off

    teacher_dp = dp(teacher, 1000 + data_seed)
    return {
        "teacher": teacher_dp,
        "teacher_other_noise_error": abs(dp(teacher, 2000 + data_seed) - teacher_dp),
        "model": dp(model, 3000 + seed),
        "error": abs(dp(model, 3000 + seed) - teacher_dp),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypotheses", nargs="+", default=["nofb", "withfb"])
    parser.add_argument("--models", nargs="+", default=["bioRNN", "sigmaRNN"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-exc", type=int, default=40)
    parser.add_argument("--n-inh", type=int, default=10)
    parser.add_argument("--n-steps", type=int, default=100)
    parser.add_argument("--dt", type=float, default=2.0)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--eval-trials", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--label", default="", help="appended to the model's name in the records (a variant run)"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in VARIANTS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    stim_step = int(round(48 / args.dt))
    size = {
        "n_exc": args.n_exc,
        "n_inh": args.n_inh,
        "time": {"n_steps": args.n_steps, "dt": args.dt, "stim_step": stim_step},
    }
    for hypothesis in args.hypotheses:
        teacher = reference_circuit(hypothesis, n_exc=args.n_exc, n_inh=args.n_inh, **size["time"])
        t0 = time.perf_counter()
        data = reference_dataset(teacher, seed=args.data_seed)
        sample_time = time.perf_counter() - t0
        groups = [teacher.area_mask(a) for a in range(2)]
        groups_read = [teacher.area_mask(READ)]
        for seed in args.seeds:
            for name in args.models:
                model, tm = student(name, hypothesis, size, seed)
                t0 = time.perf_counter()
                fit = fit_circuit(
                    model,
                    data["train"],
                    data["test"],
                    groups,
                    dt=args.dt,
                    steps=args.steps,
                    batch_size=args.batch,
                    lr=args.lr,
                    trial_matching=tm,
                    seed=seed,
                )
                train_time = time.perf_counter() - t0
                t0 = time.perf_counter()
                model.eval()
                cells, floor = evaluate(
                    model, teacher, args.data_seed, seed, args.eval_trials, groups_read
                )
                dp = delta_p(model, teacher, args.data_seed, seed, args.eval_trials)
                window = torch.arange(stim_step, stim_step + int(round(40 / args.dt)))
                micro = (
                    micro_perturbation(model, 200, seed, window)
                    if name in ("bioRNN", "sigmaRNN")
                    else None
                )
                eval_time = time.perf_counter() - t0
                metrics = {
                    "unperturbed_error": cells["inactivation"]["0.0"],
                    "cells": cells,
                    "floor": floor,
                    "delta_p": dp,
                    "micro_perturbation": micro,
                    "train_seconds": train_time,
                    "eval_seconds": eval_time,
                    "sample_seconds": sample_time,
                    "steps": fit.steps,
                    "best_epoch": max(
                        (h["epoch"] for h in fit.history if h.get("best")), default=None
                    ),
                    "final_test_tm": fit.history[-1]["valid_loss"] if fit.history else None,
                    "best_test_tm": min(h["valid_loss"] for h in fit.history)
                    if fit.history
                    else None,
                }
                print(
                    hypothesis,
                    name,
                    seed,
                    {k: v for k, v in metrics.items() if k not in ("cells", "floor")},
                    flush=True,
                )
                print("  cells", cells, "\n  floor", floor, flush=True)
                if not args.no_record:
                    write_record(
                        "biornn_perturbation",
                        f"{hypothesis}/{name}{args.label}/seed{seed}",
                        command(
                            "benchmarks.biornn_perturbation",
                            "--hypotheses",
                            hypothesis,
                            "--models",
                            name,
                            "--seeds",
                            seed,
                            "--steps",
                            args.steps,
                            *(["--lr", args.lr] if args.lr != 1e-3 else []),
                            *(["--label", args.label] if args.label else []),
                        ),
                        {
                            "hypothesis": hypothesis,
                            "model": f"{name}{args.label}",
                            "seed": seed,
                            "data_seed": args.data_seed,
                            "n_areas": 2,
                            "n_exc": args.n_exc,
                            "n_inh": args.n_inh,
                            "n_steps": args.n_steps,
                            "dt_ms": args.dt,
                            "train_trials": len(data["train"]),
                            "test_trials": len(data["test"]),
                            "eval_trials": args.eval_trials,
                            "steps": args.steps,
                            "batch": args.batch,
                            "lr": args.lr,
                            "teacher": "explicitly specified (reference_circuit), not fitted",
                        },
                        metrics,
                    )


if __name__ == "__main__":
    main()

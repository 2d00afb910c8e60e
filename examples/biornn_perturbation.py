"""bioRNN vs σRNN: fit both to a reference circuit by trial matching, then shine light.

A two-area reference circuit (the "teacher", hypothesis ``nofb`` or ``withfb``) is sampled for
trials; a bioRNN (spikes, Dale's law, local inhibition, sparse cross-area weights) and a σRNN
(sigmoid rate units, none of these constraints) are fitted to them with the trial-matching loss;
then all three are run with the same noise, without light and with light on area 1 (inactivation:
its inhibitory cells; activation: its excitatory cells), and the area-0 response is compared.

    .venv/bin/python examples/biornn_perturbation.py --steps 300 --figure biornn.png
    .venv/bin/python examples/biornn_perturbation.py --quick      # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyro_circuits.models import BioRNN, reference_circuit  # noqa: E402
from pyro_circuits.svi import TrialFeatures, fit_circuit, trial_matching_loss  # noqa: E402
from pyro_circuits.svi.circuit_fit import reference_dataset  # noqa: E402
from pyro_circuits.svi.trial_matching import filter_activity  # noqa: E402

CELLS = [("I", p) for p in (0.1, 0.2, 0.5, 1.0)] + [("E", p) for p in (0.01, 0.02, 0.04, 0.08)]


def lit(model, kind, power, n, seed):
    if power == 0:
        return model.simulate(n, seed=seed)
    with model.light(1, kind, power):
        return model.simulate(n, seed=seed)


def population_rate(model, spikes, area):
    f = filter_activity(spikes, model.dt)[:, :, model.area_mask(area)].mean((0, 2))
    return f * 1000.0 / model.dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypothesis", choices=["nofb", "withfb"], default="withfb")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--eval-trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="biornn_perturbation.png")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = {"n_exc": 40, "n_inh": 10, "n_steps": 100, "dt": 2.0, "stim_step": 24}
    if args.quick:
        size = {"n_exc": 8, "n_inh": 2, "n_steps": 40, "dt": 2.0, "stim_step": 10}
        args.steps, args.trials, args.eval_trials = 4, 64, 64
    teacher = reference_circuit(args.hypothesis, **size)
    data = reference_dataset(teacher, n_trials=args.trials, seed=args.seed)
    groups = [teacher.area_mask(a) for a in range(2)]
    students = {
        "bioRNN": BioRNN(2, **size, sparsity=0.006, l1_decay=0.001, seed=args.seed),
        "σRNN": BioRNN(
            2, **size, spiking=False, dale=False, local_inhibition=False, seed=args.seed
        ),  # fmt: skip
    }
    for name, model in students.items():
        start = time.perf_counter()
        fit_circuit(model, data["train"], data["test"], groups, dt=size["dt"], steps=args.steps,
                    batch_size=min(200, len(data["train"])), seed=args.seed)  # fmt: skip
        print(f"{name}: {args.steps} steps in {time.perf_counter() - start:.0f} s")

    n = args.eval_trials
    models = {"teacher": teacher, **students}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, kind, power) in zip(
        axes[:2],
        [
            ("inactivation of area 1 (power 1)", "I", 1.0),
            ("activation of area 1 (power 0.08)", "E", 0.08),
        ],
        strict=True,  # fmt: skip
    ):
        for (name, model), color in zip(models.items(), ["k", "C0", "C3"], strict=True):
            off = population_rate(model, model.simulate(n, seed=7), 0)
            on = population_rate(model, lit(model, kind, power, n, 7), 0)
            t = (
                torch.arange(len(off)) * (model.n_steps * model.dt / len(off))
                - model.stim_step * model.dt
            )
            ax.plot(t, off, color=color, ls="--", lw=1)
            ax.plot(t, on, color=color, lw=1.5, label=name)
        ax.axvspan(-20, 20, color="gold", alpha=0.2)
        ax.set(title=title, xlabel="ms from stimulus", ylabel="area-0 rate (Hz)")
        ax.legend(fontsize=8, title="solid: light, dashed: off", title_fontsize=7)

    read = [teacher.area_mask(0)]
    labels, errors = [f"{'in' if k == 'I' else 'act'} {p}" for k, p in CELLS], {}
    for name, model in [("teacher (floor)", teacher), *students.items()]:
        row = []
        for kind, power in CELLS:
            ref = lit(teacher, kind, power, n, 1)
            sim = lit(model, kind, power, n, 2)
            features = TrialFeatures(ref, read, size["dt"])
            row.append(float(trial_matching_loss(features(sim), features(ref))))
        errors[name] = row
        print(f"{name:>16}: mean perturbation error {sum(row) / len(row):.3f}")
    width = 0.27
    for i, (name, row) in enumerate(errors.items()):
        axes[2].bar([j + (i - 1) * width for j in range(len(row))], row, width, label=name)
    axes[2].set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
    axes[2].set(title="trial-matched error vs teacher (area 0)", ylabel="MSE")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=120)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()

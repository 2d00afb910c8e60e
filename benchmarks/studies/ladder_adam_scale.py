"""How large the ladder's gradients are, level by level, against Adam's ε.

Adam moves each parameter element by lr · m̂ / (√v̂ + ε), v̂ being the bias-corrected running
mean of its squared gradient: where √v̂ is far below ε the step shrinks by √v̂ / (√v̂ + ε). The
hierarchical-LFADS reference trains with ε = 0.1; on our Lorenz ladder ε = 1e-3 half-trained the
deep level and ε = 0.1 left it untrained (docs/calcium.md). This trains the calcium benchmark's
ladder (``benchmarks.calcium_data``: its config and optimiser, for ``--epochs`` epochs, no wall-time budget) and reads √v̂ of
every parameter element from Adam's state at the end, split by level: the deep model
(``CalciumLFADS.deep_parameters``), the dynamics encoder (the guide's deep parameters) and the
observation level (spike map, spike encoder; the calcium is fixed). For each ε it reports the
median share of the ε-free step each level keeps.

Regenerate (one record per data kind, ``benchmarks/records/ladder_adam_scale/<kind>.json``)::

    .venv/bin/python -m benchmarks.studies.ladder_adam_scale --dataset lorenz --epochs 60 --warmup 300
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks import calcium_data
from benchmarks.records import write_record
from pyro_circuits.svi import trained_parameters

STUDY = "ladder_adam_scale"
EPSILONS = (1e-8, 1e-3, 0.1)  # torch's default, and the two the Lorenz ladder was run with
QUANTILES = (0.1, 0.5, 0.9)
LEVELS = ("deep model", "dynamics encoder", "observation")


def gradient_rms(optimizer_state: dict, params: list) -> list[torch.Tensor | None]:
    """√v̂ (Adam's bias-corrected root-mean-square gradient) of each of ``params``, indexed as
    the checkpoint's optimiser state indexes them; None for a parameter Adam never stepped."""
    (group,) = optimizer_state["param_groups"]
    beta2, state = group["betas"][1], optimizer_state["state"]
    return [
        (state[i]["exp_avg_sq"] / (1 - beta2 ** float(state[i]["step"]))).sqrt()
        if i in state
        else None
        for i in range(len(params))
    ]


def level_scales(model, guide, optimizer_state: dict) -> dict[str, dict]:
    """Quantiles of √v̂ per level, and the median share √v̂ / (√v̂ + ε) of the ε-free step."""
    params = trained_parameters(model, guide)
    deep = {id(p) for p in model.deep_parameters()}
    encoder = {id(p) for p in guide.deep_parameters()} - deep

    def level_of(p) -> str:
        if id(p) in deep:
            return "deep model"
        return "dynamics encoder" if id(p) in encoder else "observation"

    rms: dict[str, list[torch.Tensor]] = {level: [] for level in LEVELS}
    for p, r in zip(params, gradient_rms(optimizer_state, params), strict=True):
        if r is not None:
            rms[level_of(p)].append(r.flatten())
    out = {}
    for level, parts in rms.items():
        values = torch.cat(parts).double()
        out[level] = {
            "elements": values.numel(),
            "quantiles": torch.quantile(values, torch.tensor(QUANTILES).double()).tolist(),
            "step_share": {str(eps): (values / (values + eps)).median().item() for eps in EPSILONS},
        }
    return out


def run(name: str, epochs: int, warmup: int, seed: int) -> dict:
    prepared = calcium_data.prepare(name, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ladder.ckpt"
        fit = calcium_data.fit_ladder(
            name, prepared, None, seed, warmup, max_epochs=epochs, checkpoint=path
        )
        optimizer_state = torch.load(path, weights_only=False)["optimizer"]
    (group,) = optimizer_state["param_groups"]
    return {
        "epochs": len(fit.history),
        "steps": fit.history[-1]["step"],
        "minutes": fit.wall_time / 60,
        "adam": {"betas": list(group["betas"]), "eps": group["eps"], "final_lr": group["lr"]},
        "levels": level_scales(fit.model, fit.guide, optimizer_state),
    }


def main() -> None:
    parser = calcium_data.ladder_study_parser(__doc__.splitlines()[0], warmup=300)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = write_record(
        STUDY,
        args.dataset,
        calcium_data.study_command(STUDY, args, "--epochs", args.epochs),
        {
            "dataset": args.dataset,
            "epochs": args.epochs,
            "warmup_steps": args.warmup,
            "seed": args.seed,
            "epsilons": list(EPSILONS),
        },
        run(args.dataset, args.epochs, args.warmup, args.seed),
    )
    print(f"wrote {path}; docs/benchmarks.md: run `python -m benchmarks report`")


if __name__ == "__main__":
    main()

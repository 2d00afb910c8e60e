"""Does the STG simulator force EPI's narrow distribution, or does the optimisation?

Reads the mode and the Hessian's eigenvectors of the STG EPI benchmark's record
(``benchmarks/records/circuits_epi/stg.json``) and measures, with the package's ``STG``:

* the hub frequency along each eigenvector (mean and the simulator-noise standard deviation at
  fixed conductances);
* the widest Gaussian over (g_el, g_synA) with those principal axes, centred on the mode, that
  stays within the paper's property (mean 0.55 Hz, second moment about 0.55 of at most 0.025²;
  the property asks for equality, which a slightly wider Gaussian reaches):
  a grid of standard deviations along v1 and v2, each simulated with fresh draws (clamped to the
  prior's box), and the Hessian eigenvalues −1/σ² and the entropy of the widest one within it;
* with ``--epi SD``: EPI with the benchmark's settings (``--iterations`` per epoch, ``--epochs``)
  from the benchmark's rejection start but with standard deviation ``SD`` instead of 1, and the
  Hessian of its selected distribution at the mode (record ``epi_start_sd_<SD>``).

Regenerate (a few minutes on one thread; one record,
``benchmarks/records/stg_width/all.json``)::

    .venv/bin/python -m benchmarks.studies.stg_width

and the EPI run (tens of minutes)::

    .venv/bin/python -m benchmarks.studies.stg_width --epi 0.35 --epochs 4 --iterations 600
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from benchmarks.records import RECORDS, command, write_record
from pyro_circuits.models.stg import STG, hub_frequency

STUDY = "stg_width"
TARGET_MEAN, TARGET_SD = 0.55, 0.025
LOW, HIGH = torch.tensor([4.0, 0.01]), torch.tensor([8.0, 4.0])


def hub(model: STG, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The hub frequency (Hz) of each row of ``theta`` = (g_el, g_synA), fresh noise each."""
    xi = torch.randn(len(theta), model.steps, 5, generator=generator)
    with torch.no_grad():
        v = model.simulate(theta[:, 0], theta[:, 1], xi)
    return hub_frequency(v[..., 2], model.dt, model.beta)


def landscape(model, mode, axes, offsets, repeats, generator) -> list[dict]:
    """Mean and noise s.d. of the hub frequency at ``mode + t·v`` for each eigenvector v."""
    rows = []
    for name, axis in zip(("v1", "v2"), axes, strict=True):
        theta = (mode + offsets[:, None] * axis).repeat_interleave(repeats, 0)
        f = hub(model, theta, generator).view(len(offsets), repeats)
        rows += [
            {"axis": name, "t": round(t.item(), 3), "mean": m.item(), "noise_sd": s.item()}
            for t, m, s in zip(offsets, f.mean(1), f.std(1), strict=True)
        ]
    return rows


def gaussian_moments(model, mode, axes, sds, draws, generator) -> dict:
    """Mean and second moment about the target of the hub frequency under the Gaussian with
    standard deviations ``sds`` along ``axes``, centred on ``mode``."""
    z = torch.randn(draws, 2, generator=generator) * torch.tensor(sds)
    theta = torch.maximum(torch.minimum(mode + z @ axes, HIGH), LOW)
    f = hub(model, theta, generator)
    return {"mean": f.mean().item(), "second_moment": ((f - TARGET_MEAN) ** 2).mean().item()}


def epi_run(start_sd: float, epochs: int, iterations: int) -> tuple[dict, dict]:
    """EPI on the STG from the rejection start with standard deviation ``start_sd``."""
    from benchmarks import circuits_epi

    torch.manual_seed(0)
    setup = circuits_epi.settings("stg", quick=False)
    setup["config"] |= {"epochs": epochs, "iterations": iterations}
    model, prop = STG(), STG.intermediate_hub_frequency()
    kept = circuits_epi.prior_rejection(model, prop, **setup["rejection"])[0]
    start = circuits_epi.rejection_start(kept)
    start = type(start)(start.loc, torch.full_like(start.scale, start_sd))
    result, out = circuits_epi.fit(model, prop, setup, init=start)
    mode = result.mode(steps=500, lr=0.01)
    sensitivity = result.sensitivity({k: v.reshape(1) for k, v in mode.items()})
    out |= {
        "mode": {k: v.item() for k, v in mode.items()},
        "hessian_eigenvalues": sensitivity.eigenvalues.tolist(),
        "eigenvectors": sensitivity.eigenvectors.T.tolist(),
    }
    return {"settings": setup, "start_sd": start_sd, "start_mean": start.loc.tolist()}, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epi", type=float, default=None, metavar="SD")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--tag", default="", help="suffix of the EPI run's record variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.epi is not None:
        configuration, metrics = epi_run(args.epi, args.epochs, args.iterations)
        flags = ["--epi", args.epi, "--epochs", args.epochs, "--iterations", args.iterations]
        flags += ["--tag", args.tag] if args.tag else []
        variant = f"epi_start_sd_{args.epi}" + (f"_{args.tag}" if args.tag else "")
        path = write_record(STUDY, variant, command(f"benchmarks.studies.{STUDY}", *flags),
                            configuration, metrics)  # fmt: skip
        print(f"wrote {path}")
        return
    generator = torch.Generator().manual_seed(args.seed)
    record = json.loads((RECORDS / "circuits_epi" / "stg.json").read_text())["metrics"]
    mode = torch.tensor([record["mode"]["g_el"], record["mode"]["g_synA"]])
    axes = torch.tensor(record["eigenvectors"])  # rows: v1 (sensitive), v2 (robust)
    model = STG()
    rows = landscape(model, mode, axes, torch.linspace(-1.0, 1.0, 21), 32, generator)
    grid = []
    for sd1 in (0.03, 0.1, 0.2, 0.3, 0.4, 0.5):
        for sd2 in (0.2, 0.4, 0.56, 0.8):
            moments = gaussian_moments(model, mode, axes, (sd1, sd2), args.draws, generator)
            meets = moments["second_moment"] <= TARGET_SD**2 and (
                abs(moments["mean"] - TARGET_MEAN) <= TARGET_SD / 5
            )
            entropy = math.log(2 * math.pi * math.e) + math.log(sd1 * sd2)
            grid.append({"sd_v1": sd1, "sd_v2": sd2, **moments, "meets": meets,
                         "entropy": entropy, "hessian": [-1 / sd1**2, -1 / sd2**2]})  # fmt: skip
    widest = max(
        (row for row in grid if row["meets"]), key=lambda row: row["entropy"], default=None
    )
    metrics = {
        "epi": {
            "hessian": record["hessian_eigenvalues"],
            "entropy": record["history"]["entropy"][-1],
            "c": record["history"]["c"][-1],
        },  # fmt: skip
        "paper_hessian": [-10.7, -3.22],
        "landscape": rows,
        "gaussians": grid,
        "widest": widest,
    }
    options = [] if args.draws == 2000 else ["--draws", args.draws]
    options += [] if args.seed == 0 else ["--seed", args.seed]
    path = write_record(
        STUDY,
        "all",
        command(f"benchmarks.studies.{STUDY}", *options),
        {
            "draws": args.draws,
            "seed": args.seed,
            "from": "benchmarks/records/circuits_epi/stg.json",
        },
        metrics,
    )
    print(f"wrote {path}")
    print(json.dumps(widest, indent=1))


if __name__ == "__main__":
    main()

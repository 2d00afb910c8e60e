"""EPI on the 2-D linear system: which dynamics matrices oscillate at 1 Hz?

Fits the maximum-entropy distribution of A = [[a11, a12], [a21, a22]] whose principal
eigenvalue has Re λ₁ = 0 ± 0.25 and Im λ₁ = 2π ± π/5, then looks at it: the constraint table,
the two modes (a12 > 0 > a21 and a12 < 0 < a21), the sensitivity at the mode, and ArviZ.

    python examples/epi_lds2d.py            # the demo's settings (about 2 minutes on 2 cores)
    python examples/epi_lds2d.py --quick    # a smoke run with tiny settings
"""

import argparse
from dataclasses import replace

import arviz as az

from pyro_circuits import epi
from pyro_circuits.catalog import MODELS
from pyro_circuits.models import LDS2D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = parser.parse_args()
    config = MODELS["lds2d"].config
    if args.quick:
        config = replace(
            config, batch_size=100, epochs=1, iterations=20, init_iterations=20, test_batches=20
        )

    result = epi(LDS2D(), LDS2D.oscillation(), flow=MODELS["lds2d"].flow, config=config, seed=0)
    print(
        f"converged: {result.converged} at epoch {result.epoch}, entropy {result.selected_entropy:.2f} nats"
    )
    print(result.check().to_string(index=False))

    draws = result.sample(10_000, seed=0)
    upper = ((draws["a12"] > 0) & (draws["a21"] < 0)).float().mean().item()
    lower = ((draws["a12"] < 0) & (draws["a21"] > 0)).float().mean().item()
    print(f"mass with a12 > 0 > a21: {upper:.2f}; with a12 < 0 < a21: {lower:.2f}")

    mode = result.mode(fixed={"a12": 2.0 * 3.14159}, steps=50 if args.quick else 500)
    sensitivity = result.sensitivity(mode)
    print("mode with a12 = 2π:", {k: round(v.item(), 2) for k, v in mode.items()})
    print(
        "most sensitive direction:", {k: round(v, 2) for k, v in sensitivity.most_sensitive.items()}
    )
    print("Hessian eigenvalues:", [round(v, 2) for v in sensitivity.eigenvalues.tolist()])

    print(az.summary(result.to_inference_data(n=400 if args.quick else 2000), kind="stats"))


if __name__ == "__main__":
    main()

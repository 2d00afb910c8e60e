"""Predict an optogenetic perturbation on a real recording from the light command alone.

The shipped session (Allen Brain Observatory Visual Coding – Neuropixels, session 829720705, a
Pvalb-IRES-Cre mouse; DANDI 000021, CC-BY-4.0; cite Siegle, Jia et al., Nature 592, 86–92, 2021,
and the Allen Institute for Brain Science): fit on the sham trials and the light levels 1.3 and
1.7, predict the level-2.0 trials, and compare LFADS (light as a measured input), a per-unit
Poisson GLM with a light kernel, and the sham PSTH. Then write LFADS's rates of the training
trials into an NWB file and read them back.

    python examples/real_data_opto.py            # the whole session, a few minutes
    python examples/real_data_opto.py --quick    # 40 units, a few epochs: a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from pyro_circuits.baselines.opto import (
    light_glm,
    perturbation_scores,
    prior_predictive_rates,
    sham_psth,
)
from pyro_circuits.datasets import allen_opto_split, allen_pv_opto
from pyro_circuits.datasets.nwb import example_file, read_fit, read_nwb, write_nwb
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 units and 3 epochs")
    parser.add_argument("--split", default="heldout_level",
                        choices=["heldout_level", "heldout_waveform"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    data = allen_pv_opto()
    units = slice(0, 40) if args.quick else slice(None)
    counts, light, dt = data.counts[..., units], data.inputs, data.dt
    train_idx, test_idx = allen_opto_split(args.split)
    is_sham = data.conditions == 0
    sham_counts = counts[is_sham]
    sham = sham_psth(sham_counts, dt)
    print(f"{counts.shape[0]} trials, {counts.shape[2]} units; predicting {len(test_idx)} trials")

    glm = light_glm(counts[train_idx], light[train_idx], is_sham[train_idx], dt, progress=True)
    model = LFADS(counts.shape[-1], ic_dim=16, gen_dim=64, fac_dim=12, ext_dim=1, dt=dt)
    model.init_readout(counts[train_idx])
    fit = train(model, LFADSEncoder(model, enc_dim=48), counts[train_idx], light[train_idx],
                max_epochs=3 if args.quick else 150, batch_size=32, lr=5e-3, kl_warmup=300,
                cd_rate=0.3, seed=args.seed, progress=not args.quick)  # fmt: skip

    test_counts, test_light = counts[test_idx], light[test_idx]
    no_light = torch.zeros(1, *light.shape[1:])
    predictions = {
        "sham PSTH": (sham.expand_as(test_counts), sham),
        "GLM": (glm.predict(test_light), glm.predict(no_light)[0]),
        "LFADS": (
            prior_predictive_rates(fit.model, test_light, counts.shape[-1], seed=args.seed),
            prior_predictive_rates(fit.model, no_light, counts.shape[-1], seed=args.seed)[0],
        ),
    }
    for name, (rates, predicted_sham) in predictions.items():
        s = perturbation_scores(rates, test_counts, data.conditions[test_idx], sham, sham_counts,
                                predicted_sham, dt, window=slice(50, 150))  # fmt: skip
        print(f"{name:>9}: {s['bits_per_spike']:+.3f} bits/spike vs sham, "
              f"evoked R² {s['evoked_r2']:.3f} over {s['n_significant']} units")  # fmt: skip

    # NWB out and back (a small generated file stands in for a lab's own recording).
    with tempfile.TemporaryDirectory() as tmp:
        source = example_file(Path(tmp) / "session.nwb")
        session, info = read_nwb(source, bin_size=0.1, window=(0.0, 0.5), inputs=["light"],
                                 with_info=True)  # fmt: skip
        rates = session.counts / session.dt  # stand-in for a fit's inferred rates
        target = write_nwb(source, Path(tmp) / "session_fit.nwb", {"rates": rates},
                           edges=info["edges"])  # fmt: skip
        back = read_fit(target)["rates"]
        print(f"NWB round trip: rates {tuple(back.shape)} written and read back equal: "
              f"{bool((torch.from_numpy(back) == rates).all())}")  # fmt: skip


if __name__ == "__main__":
    main()

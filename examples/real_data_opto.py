"""Predict an optogenetic perturbation on a real recording from the light command alone.

The shipped session (Allen Brain Observatory Visual Coding – Neuropixels, session 829720705, a
Pvalb-IRES-Cre mouse; DANDI 000021, CC-BY-4.0; cite Siegle, Jia et al., Nature 592, 86–92, 2021,
and the Allen Institute for Brain Science): fit on the sham trials and the light levels 1.3 and
1.7, predict the level-2.0 trials, and compare LFADS (light as a measured input), a per-unit
Poisson GLM with a light kernel, the sham PSTH, and a spiking bioRNN (the recorded units its E
cells, hidden I cells, the light an input current through learned gains, fitted by trial
matching). Then write LFADS's rates of the training trials into an NWB file and read them back,
and stitch three synthetic sessions of different neurons with one LFADS.

    python examples/real_data_opto.py            # the whole session, a few minutes
    python examples/real_data_opto.py --quick    # 40 units, a few epochs: a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from pyro_circuits.baselines.decoding import ridge_decoder
from pyro_circuits.baselines.opto import (
    light_glm,
    perturbation_scores,
    prior_predictive_rates,
    sham_psth,
    simulated_rates,
)
from pyro_circuits.datasets import allen_opto_split, allen_pv_opto, lorenz_sessions
from pyro_circuits.datasets.nwb import example_file, read_fit, read_nwb, write_nwb
from pyro_circuits.guides import LFADSEncoder, StitchedEncoder
from pyro_circuits.models import LFADS, BioRNN, StitchedLFADS
from pyro_circuits.svi import fit_circuit, train


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

    # The bioRNN: recorded units = its E cells (1:1), 10 % hidden I cells, light through gains.
    n_units = counts.shape[-1]
    circuit = BioRNN(1, n_units, n_inh=max(1, n_units // 10), n_steps=counts.shape[1], dt=1e3 * dt,
                     stim_step=0, stim_duration=0.0, n_inputs=1, seed=args.seed)  # fmt: skip
    circuit.init_rates(counts[train_idx])
    spikes = counts.clamp(max=1.0)
    fit_circuit(circuit, spikes[train_idx], spikes[train_idx], [torch.ones(n_units, dtype=bool)],
                dt=circuit.dt, steps=3 if args.quick else 300, batch_size=32, lr=3e-3,
                train_inputs=light[train_idx], test_inputs=light[train_idx],
                recorded=torch.arange(n_units), seed=args.seed, progress=not args.quick)  # fmt: skip

    test_counts, test_light = counts[test_idx], light[test_idx]
    no_light = torch.zeros(1, *light.shape[1:])
    simulations = 20 if args.quick else 300
    predictions = {
        "sham PSTH": (sham.expand_as(test_counts), sham),
        "GLM": (glm.predict(test_light), glm.predict(no_light)[0]),
        "LFADS": (
            prior_predictive_rates(fit.model, test_light, counts.shape[-1], seed=args.seed),
            prior_predictive_rates(fit.model, no_light, counts.shape[-1], seed=args.seed)[0],
        ),
        "bioRNN": (
            simulated_rates(circuit, test_light, n_units, dt, simulations=simulations),
            simulated_rates(circuit, no_light, n_units, dt, simulations=simulations)[0],
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
    stitch(args)


def stitch(args) -> None:
    """One LFADS across three sessions that recorded different neurons of one Lorenz system."""
    sessions = lorenz_sessions(n_sessions=3, n_conditions=4, n_trials=5, n_neurons=12, n_bins=30,
                               seed=args.seed)  # fmt: skip
    model = StitchedLFADS(sessions.n_neurons, dt=sessions.dt, ic_dim=8, gen_dim=16, fac_dim=4)
    model.init_pcr(sessions)
    counts, inputs = sessions.pack("train")
    fit = train(model, StitchedEncoder(model, enc_dim=16), counts, inputs,
                max_epochs=3 if args.quick else 100, batch_size=20, seed=args.seed,
                progress=not args.quick)  # fmt: skip
    factors = sessions.unpack(fit.posterior_mean(counts, inputs, num_samples=5)["factors"], "train")
    decoder = ridge_decoder(factors[0], sessions[0].train.latents)
    print(f"stitched: a decoder fitted on session 0's factors explains session 1's latents with "
          f"R² {decoder.score(factors[1], sessions[1].train.latents):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""What the calcium benchmark and the ladder studies share: the data, its split, the ladder.

A module, not a script: ``benchmarks.calcium_synthetic`` and the studies of
``benchmarks/studies/`` import it, never each other. The settings are the package's
(:data:`pyro_circuits.catalog.CALCIUM_CONFIGS`).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.records import command
from pyro_circuits.catalog import CALCIUM_CONFIGS
from pyro_circuits.datasets.spike_data import SpikeData
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS
from pyro_circuits.svi import Staged, SVIFit, train

#: The ladder's deep level: the sites its validation loss watches with ``deep_stop``.
DEEP_LEVEL = ("ic", "co", "spikes_given_rates")

__all__ = [
    "DEEP_LEVEL",
    "Prepared",
    "build_ladder",
    "fit",
    "fit_ladder",
    "ladder_study_parser",
    "prepare",
    "steps",
]


@dataclasses.dataclass
class Prepared:
    """A data kind's spikes, their fluorescence and the split of its training trials."""

    name: str
    data: SpikeData
    true_calcium: torch.Tensor
    fluor: torch.Tensor
    #: The training trials to fit and those held back for early stopping (90 % / 10 %).
    split: tuple[torch.Tensor, torch.Tensor]

    def spikes_from_mean_fluorescence(self) -> torch.Tensor:
        """Spike counts guessed from the fitting trials' fluorescence, to start a readout:
        the AR(1) calcium's steady state, mean F ≈ α·(mean spikes per frame)·τ/dt."""
        recipe = CALCIUM_CONFIGS[self.name].fluorescence
        return self.fluor[self.split[0]] * self.data.dt / (recipe["tau"] * recipe["alpha"])


def prepare(name: str, seed: int) -> Prepared:
    """``CALCIUM_CONFIGS[name]``'s spikes, turned into fluorescence with the noise of ``seed``,
    and its training trials split 90 / 10 in the order ``seed`` draws."""
    config = CALCIUM_CONFIGS[name]
    data = config.data.make()
    true_calcium, fluor = fluorescence_from_spikes(
        data.counts, dt=data.dt, seed=seed, **config.fluorescence
    )
    train_idx = data.train_idx
    order = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))]
    n_fit = int(0.9 * len(order))
    return Prepared(name, data, true_calcium, fluor, (order[:n_fit], order[n_fit:]))


def steps(name: str, warmup: int) -> dict:
    """The minibatch size, learning rate and KL warm-up every model of ``name`` trains with."""
    config = CALCIUM_CONFIGS[name]
    return dict(batch_size=config.batch_size, lr=config.lr, kl_warmup=warmup)


def fit(
    model,
    guide,
    observations,
    fit_idx,
    stop_idx,
    minutes,
    seed,
    patience,
    max_epochs=5000,
    **options,
) -> SVIFit:
    """Train on ``observations[fit_idx]``, early-stopping on ``stop_idx`` unless it is None;
    ``minutes`` None: no wall-time budget."""
    return train(
        model,
        guide,
        observations[fit_idx],
        valid_counts=None if stop_idx is None else observations[stop_idx],
        max_epochs=max_epochs,
        max_time=None if minutes is None else 60 * minutes,
        patience=patience,
        seed=seed,
        progress=False,
        **options,
    )


def build_ladder(name: str, prepared: Prepared) -> tuple[CalciumLFADS, LadderEncoder]:
    """The untrained ladder model and guide of ``name`` (σ fixed at the recipe's), the readout
    started from ``prepared``'s fluorescence; :func:`fit_ladder` trains them."""
    config, data = CALCIUM_CONFIGS[name], prepared.data
    dropout = dict(dropout=config.ladder_dropout)
    model = CalciumLFADS(
        data.counts.shape[-1],
        dt=data.dt,
        calcium=dict(config.fluorescence, learn=()),
        **config.ladder,
        **config.deep | dropout,
    )
    model.init_readout(prepared.spikes_from_mean_fluorescence())
    guide = LadderEncoder(model, deep=config.deep_guide | dropout, **config.ladder_guide)
    return model, guide


def fit_ladder(
    name: str,
    prepared: Prepared,
    minutes: float | None,
    seed: int,
    warmup: int,
    deep_stop: bool = False,
    **options,
) -> SVIFit:
    """Train the ladder of ``name`` on ``prepared``'s fluorescence; ``options`` go to
    :func:`pyro_circuits.svi.train` (``max_epochs``, ``checkpoint``, ``average_decay``).

    It trains on all training trials and its schedule and restored epoch watch the training
    loss, unless ``deep_stop``: then 10 % of the trials are held back and their deep level's
    share of the ELBO is watched (its validation loss is almost all fluorescence otherwise)."""
    config, data = CALCIUM_CONFIGS[name], prepared.data
    torch.manual_seed(seed)
    model, guide = build_ladder(name, prepared)
    return fit(
        model,
        guide,
        prepared.fluor,
        *(prepared.split if deep_stop else (data.train_idx, None)),
        minutes,
        seed,
        staged=Staged(hold=warmup, ramp=warmup),
        patience=None,
        l2_scale=config.l2_scale,
        cd_rate=config.cd_rate,
        **config.ladder_adam,
        valid_sites=DEEP_LEVEL if deep_stop else None,
        **steps(name, warmup),
        **options,
    )


def ladder_study_parser(description: str, warmup: int) -> argparse.ArgumentParser:
    """The options of a study of one data kind's ladder: ``--dataset``, ``--warmup``,
    ``--seed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="lorenz", choices=list(CALCIUM_CONFIGS))
    parser.add_argument(
        "--warmup", type=int, default=warmup, help="KL warm-up, hold and ramp steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def study_command(study: str, args: argparse.Namespace, *options) -> str:
    """The command line that regenerates a ladder study's record: its data set, ``options``,
    the warm-up and, when not 0, the seed."""
    seed = ["--seed", args.seed] if args.seed else []
    arguments = ["--dataset", args.dataset, *options, "--warmup", args.warmup, *seed]
    return command(f"benchmarks.studies.{study}", *arguments)

"""The built-in models and their recommended settings, read by the CLI, the examples and the
benchmarks.

:data:`MODELS` maps a name to a :class:`BuiltinModel`: how to build the circuit, its paper
property and the EPI settings it is run with. :func:`resolve` also accepts
``"package.module:callable"``, a user's own model (see :func:`load_plugin`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from pyro_circuits.epi import EPIConfig, FlowConfig
from pyro_circuits.models import LDS2D, STG, V1SSSN, Rank2RNN, SuperiorColliculus
from pyro_circuits.property import EmergentProperty

__all__ = ["MODELS", "BuiltinModel", "load_plugin", "resolve"]


@dataclass(frozen=True)
class BuiltinModel:
    """A circuit model with its property and the settings it is run with.

    Attributes:
        build: the model from a size argument (``--n`` of the CLI; fixed-size models ignore it).
        property: the emergent property it is fitted to.
        config, flow: the EPI settings.
        summary: one line for listings.
    """

    build: Callable[[int], Callable]
    property: Callable[[], EmergentProperty]
    config: EPIConfig = EPIConfig()
    flow: FlowConfig = FlowConfig()
    summary: str = ""


MODELS: dict[str, BuiltinModel] = {
    "lds2d": BuiltinModel(
        build=lambda n: LDS2D(),
        property=LDS2D.oscillation,
        config=EPIConfig(batch_size=500, epochs=10, iterations=1000, c0=1e-3, beta=8.0),
        flow=FlowConfig(units=50),
        summary="2-D linear system, property: 1 Hz oscillation (Bittner et al. 2021, Fig. 1)",
    ),
    "rank2_rnn": BuiltinModel(
        build=lambda n: Rank2RNN(n),
        property=Rank2RNN.stable_amplification,
        config=EPIConfig(
            batch_size=200,
            epochs=10,
            iterations=500,
            c0=1e3,
            test_batch_size=200,
            standardize=False,
        ),
        flow=FlowConfig(units=100),
        summary="rank-2 RNN of --n neurons, property: stable amplification (Fig. 2)",
    ),
    "stg": BuiltinModel(
        build=lambda n: STG(),
        property=STG.intermediate_hub_frequency,
        config=EPIConfig(batch_size=100, epochs=4, iterations=300, beta=2.0, test_batch_size=100),
        flow=FlowConfig(units=25),
        summary="stomatogastric subcircuit, property: hub frequency 0.55 Hz (Fig. 3)",
    ),
    "superior_colliculus": BuiltinModel(
        build=lambda n: SuperiorColliculus(),
        property=SuperiorColliculus.rapid_task_switching,
        config=EPIConfig(
            batch_size=100,
            epochs=8,
            iterations=400,
            c0=1e2,
            beta=2.0,
            test_batch_size=25,
            standardize=False,
            chunk=1000,  # a draw holds the noise of its 200 trials at every step
        ),
        flow=FlowConfig(units=50),
        summary="superior colliculus Pro/Anti task, property: 75 % accuracy in both (Fig. 5)",
    ),
    "v1_sssn": BuiltinModel(
        build=lambda n: V1SSSN(trials=25),
        property=V1SSSN.e_variability,
        config=EPIConfig(
            batch_size=100,
            epochs=4,
            iterations=250,
            c0=0.1,
            beta=2.0,
            test_batches=100,
            test_batch_size=100,
            init_iterations=300,
            standardize=False,
            chunk=2000,
        ),
        flow=FlowConfig(units=50),
        summary="V1 SSSN (E, P, S, V), property: E variability s_E = 5 ± 1 Hz (Fig. 3)",
    ),
}


def load_plugin(spec: str) -> BuiltinModel:
    """A user's model from ``"package.module:callable"``.

    The callable, called with no argument, returns either a :class:`BuiltinModel` or a pair
    ``(model, property)`` (a Pyro program and its :class:`EmergentProperty`), which then runs
    with the default EPI settings. The module is imported as Python imports any module, so it
    must be on ``sys.path`` (the current folder is, for the CLI).

    Example:
        >>> entry = load_plugin("pyro_circuits.catalog:_example_plugin")
        >>> entry.property().names
        ['real_lambda', 'imag_lambda']
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"a user model is named 'package.module:callable', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r} of {spec!r}: {error}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attribute!r}")
    made = factory()
    if isinstance(made, BuiltinModel):
        return made
    if (
        isinstance(made, tuple)
        and len(made) == 2
        and callable(made[0])
        and isinstance(made[1], EmergentProperty)
    ):
        model, prop = made
        return BuiltinModel(build=lambda n: model, property=lambda: prop, summary=spec)
    raise TypeError(
        f"{spec} must return a BuiltinModel or a (model, EmergentProperty) pair, "
        f"got {type(made).__name__}"
    )


def resolve(name: str) -> BuiltinModel:
    """The built-in model ``name``, or a user's model given as ``"package.module:callable"``."""
    if ":" in name:
        return load_plugin(name)
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}: built-in models are {sorted(MODELS)}, or name your own "
            "as 'package.module:callable'"
        )
    return MODELS[name]


def _example_plugin() -> tuple[Callable, EmergentProperty]:
    """A plug-in as a user writes one: the 2-D linear system and its oscillation property."""
    return LDS2D(), LDS2D.oscillation()


# --------------------------------------------------------------------------------------------
# Recommended SVI settings of the sequential-VAE models, per kind of synthetic data: LFADS on
# spike counts (LFADS_CONFIGS) and the calcium models on fluorescence (CALCIUM_CONFIGS). The
# benchmarks (benchmarks/lfads_synthetic.py, benchmarks/calcium_synthetic.py) and the examples
# read them here. Why each value is what it is, with the measurements behind it:
# docs/notes/lfads_configs.md and docs/notes/calcium_configs.md.

__all__ += [
    "CALCIUM_CONFIGS",
    "FLUORESCENCE",
    "LFADS_CONFIGS",
    "CalciumConfig",
    "DataRecipe",
    "SVIConfig",
]

#: The ladder papers' fluorescence recipe: AR(1) calcium with decay τ (s), jump α per spike and
#: Gaussian noise σ (options of ``models.calcium.fluorescence_from_spikes``; frames of 10 ms).
FLUORESCENCE: dict[str, float] = {"tau": 0.4, "alpha": 1.0, "sigma": 0.2}


@dataclass(frozen=True)
class DataRecipe:
    """A synthetic data set: a generator of :mod:`pyro_circuits.datasets`, named, and its options.

    Example:
        >>> recipe = DataRecipe("lorenz", {"n_neurons": 30, "seed": 0})
        >>> str(recipe)
        'lorenz(n_neurons=30, seed=0)'
        >>> str(recipe.replace(n_bins=200))
        'lorenz(n_neurons=30, seed=0, n_bins=200)'
    """

    generator: str
    options: dict[str, object]

    def make(self):
        """The data set (a :class:`pyro_circuits.datasets.SpikeData`)."""
        from pyro_circuits import datasets

        return getattr(datasets, self.generator)(**self.options)

    def replace(self, **options) -> DataRecipe:
        """The same generator with ``options`` changed or added."""
        return DataRecipe(self.generator, self.options | options)

    def __str__(self) -> str:
        arguments = ", ".join(f"{key}={value}" for key, value in self.options.items())
        return f"{self.generator}({arguments})"


@dataclass(frozen=True)
class SVIConfig:
    """LFADS fitted by SVI to one kind of spike data.

    Attributes:
        data: the data set.
        model: options of :class:`pyro_circuits.models.LFADS` (besides the neuron count and dt).
        guide: options of :class:`pyro_circuits.guides.LFADSEncoder`.
        train: options of ``pyro_circuits.svi.train``.
    """

    data: DataRecipe
    model: dict[str, object]
    guide: dict[str, object]
    train: dict[str, object]

    def replace(self, **changes) -> SVIConfig:
        """A copy with the fields in ``changes`` replaced."""
        return type(self)(**(self.__dict__ | changes))

    def as_dict(self) -> dict[str, object]:
        """Plain data, as a benchmark record stores it."""
        return {
            "data": str(self.data),
            "model": dict(self.model),
            "guide": dict(self.guide),
            "train": dict(self.train),
        }


@dataclass(frozen=True)
class CalciumConfig:
    """The calcium models on one kind of fluorescence data.

    The ladder is ``CalciumLFADS(**ladder, **deep)`` with ``ladder_dropout`` on its deep model,
    guided by ``LadderEncoder(deep=deep_guide, **ladder_guide)``; the models fitted with the LFADS
    encoder (LFADS on spikes, Gaussian-LFADS, OASIS + LFADS) are ``deep`` guided by
    ``LFADSEncoder(**deep_guide)``.

    Attributes:
        data: the spike data set, turned into fluorescence with ``fluorescence``.
        fluorescence: options of ``models.calcium.fluorescence_from_spikes``.
        deep: the deep (LFADS) model's options, every model's.
        deep_guide: the LFADS encoder's options (the ladder's dynamics encoder's too).
        ladder: the ladder's spike level (``CalciumLFADS`` options).
        ladder_guide: ``LadderEncoder`` options.
        l2_scale: the L2 penalty of the generator, every model's.
        ladder_dropout: the dropout of the ladder's deep model and deep encoder.
        cd_rate: the ladder's coordinated dropout on its dynamics level.
        ladder_adam: the ladder's Adam options (``adam_betas``, ``adam_eps`` of
            ``svi.train``); empty: torch's defaults.
        batch_size: the minibatch size, every model's.
        lr: Adam's learning rate, every model's.
        patience: early-stopping patience (epochs) of the models fitted with the LFADS encoder.
    """

    data: DataRecipe
    fluorescence: dict[str, float]
    deep: dict[str, object]
    deep_guide: dict[str, object]
    ladder: dict[str, object]
    ladder_guide: dict[str, object]
    l2_scale: float
    ladder_dropout: float
    cd_rate: float
    ladder_adam: dict[str, object]
    batch_size: int
    lr: float
    patience: int

    def replace(self, **changes) -> CalciumConfig:
        """A copy with the fields in ``changes`` replaced.

        Example:
            >>> CALCIUM_CONFIGS["lorenz"].replace(lr=3e-3).lr
            0.003
        """
        return type(self)(**(self.__dict__ | changes))

    def as_dict(self) -> dict[str, object]:
        """Plain data, as a benchmark record stores it."""
        out = {key: value for key, value in self.__dict__.items() if key != "data"}
        return {"data": str(self.data), **out}


LFADS_CONFIGS: dict[str, SVIConfig] = {
    "lorenz": SVIConfig(
        data=DataRecipe("lorenz", {"n_heldout": 6, "seed": 0}),
        model=dict(ic_dim=64, gen_dim=128, fac_dim=8, co_dim=0, dropout=0.05),
        guide=dict(enc_dim=64, dropout=0.05),
        train=dict(
            batch_size=64,
            lr=1e-2,
            kl_warmup=1500,
            l2_scale=500.0,
            l2_warmup=1500,
            cd_rate=0.3,
            patience=200,
        ),
    ),
    "chaotic_rnn": SVIConfig(
        data=DataRecipe(
            "chaotic_rnn", {"g": 2.5, "input_magnitude": 20.0, "n_heldout": 10, "seed": 5}
        ),
        # 40 factors, not the reference's 20 (the readout ceiling of 20); Student-t innovations
        # (co_prior_df) in the input prior, which places each inferred pulse on time.
        model=dict(ic_dim=64, gen_dim=100, fac_dim=40, co_dim=1, co_prior_df=2.0, dropout=0.05),
        guide=dict(enc_dim=64, ci_dim=32, con_dim=32, dropout=0.05),
        train=dict(
            batch_size=128,
            lr=1e-2,
            kl_warmup=600,
            l2_scale=500.0,
            l2_warmup=600,
            cd_rate=0.0,  # no coordinated dropout on these data
            patience=40,
            lr_patience=2,  # the learning rate anneals to 1e-3 within the benchmark's budget
        ),
    ),
}

_CALCIUM_CHAOTIC = CalciumConfig(
    # The ladder papers' recipe: τ 0.25 s and rates ½·10 Hz·(tanh(x) + 1), slower and sparser
    # than the LFADS benchmark's, no per-trial min-max normalisation.
    data=DataRecipe(
        "chaotic_rnn",
        {
            "n_conditions": 100,
            "n_neurons": 50,
            "g": 2.5,
            "tau": 0.25,
            "max_rate": 10.0,
            "normalise_per_trial": False,
            "input_magnitude": 20.0,
            "seed": 5,
        },
    ),
    fluorescence=FLUORESCENCE,
    # 40 factors, not svlae.yaml's 20; 4 inferred inputs, not 1.
    deep=dict(ic_dim=64, gen_dim=200, fac_dim=40, co_dim=4, dropout=0.05),
    deep_guide=dict(enc_dim=128, ci_dim=128, con_dim=128, dropout=0.05),
    ladder=dict(z_dim=100),
    ladder_guide=dict(enc_dim=64, con_dim=64),
    l2_scale=500.0,
    ladder_dropout=0.05,
    cd_rate=0.0,
    ladder_adam={},
    batch_size=64,
    lr=3e-3,  # not svlae.yaml's 1e-2; one rate for every model keeps the table like for like
    patience=30,
)

CALCIUM_CONFIGS: dict[str, CalciumConfig] = {
    "lorenz": CalciumConfig(
        data=DataRecipe("lorenz", {"n_neurons": 30, "seed": 0}),
        fluorescence=FLUORESCENCE,
        # The deep model of the LFADS Lorenz settings, not svlae.yaml's generator 64 / factors 3.
        deep=dict(ic_dim=64, gen_dim=128, fac_dim=8, co_dim=0, dropout=0.05),
        deep_guide=dict(enc_dim=64, dropout=0.05),
        ladder=dict(z_dim=64),
        ladder_guide=dict(enc_dim=32, con_dim=32),  # the innovation-reading dynamics encoder
        l2_scale=500.0,  # the LFADS benchmark's, not svlae.yaml's 250; with a 1500-step warm-up
        ladder_dropout=0.2,  # the ladder's deep level overfits with the models' 0.05
        cd_rate=0.0,
        ladder_adam={},  # torch's defaults; svlae.yaml's ε = 0.1 leaves the deep level untrained
        batch_size=64,
        lr=1e-2,  # svlae.yaml's
        patience=200,  # as the LFADS Lorenz settings
    ),
    "chaotic_rnn": _CALCIUM_CHAOTIC,
    # The same network on the deprecated reference generator's defaults: 400 conditions × 10
    # trials of 200 frames, with the deep settings its table was measured with.
    "chaotic_rnn_long": _CALCIUM_CHAOTIC.replace(
        data=_CALCIUM_CHAOTIC.data.replace(n_conditions=400, n_bins=200),
        deep=_CALCIUM_CHAOTIC.deep | dict(co_dim=1),
        l2_scale=2000.0,
        lr=1e-2,
        # svlae.yaml's β₂: with torch's 0.999 this ladder diverged at the Poisson tie.
        ladder_adam=dict(adam_betas=(0.9, 0.99)),
    ),
}

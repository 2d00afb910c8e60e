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
from pyro_circuits.models import LDS2D, STG, Rank2RNN, SuperiorColliculus
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
        ),
        flow=FlowConfig(units=50),
        summary="superior colliculus Pro/Anti task, property: 75 % accuracy in both (Fig. 5)",
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

"""The EPI distribution as a Pyro guide: the flow's draws emitted at the model's parameter sites."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch

from pyro_circuits.checks import torch_device
from pyro_circuits.epi.flow import FlowConfig, SupportedFlow
from pyro_circuits.sites import CircuitProgram, LocalPyroModule
from pyro_circuits.space import ParameterSpace

__all__ = ["EPIGuide"]


class EPIGuide(LocalPyroModule):
    """q(θ) over a circuit model's parameter sites: a normalising flow mapped onto their supports.

    Each call draws the flat parameter vector from the flow (reparameterised, so gradients reach
    the flow) and emits one ``pyro.sample(site, Delta(value, ...))`` per parameter site in its
    declared event shape. The joint log q(θ) (in constrained coordinates) is carried by the first
    site's ``Delta`` ``log_density``, so a guide trace's summed ``log_prob`` is log q(θ), as a
    ``Trace_ELBO`` needs. Under enclosing plates (``pyro.plate("particles", n)``,
    ``Predictive(..., parallel=True)``) it draws one vector per plate element.

    Conditioning a site (``poutine.condition(guide, data={site: value})``) fixes its value for the
    model; the guide's density at a conditioned site is then that of a ``Delta``.

    Arguments:
        model: the circuit model (Pyro program), or a :class:`~pyro_circuits.sites.CircuitProgram`
            already built from it (then ``params``, ``model_args`` and ``model_kwargs`` must be
            left out).
        params: parameter sites; default every global latent non-noise sample site.
        model_args, model_kwargs: fixed arguments of the model.
        flow: flow architecture; default :class:`FlowConfig`.
        generator: torch generator of the flow's random permutations.
        seed: seeds the flow's initial weights and permutations without touching the global
            random state (the same start as ``epi(..., seed=seed)``); not with ``generator``.

    Example:
        >>> from pyro import poutine
        >>> from pyro_circuits.models import LDS2D
        >>> guide = EPIGuide(LDS2D(), flow=FlowConfig(units=8), seed=0)
        >>> trace = poutine.trace(guide).get_trace()
        >>> [name for name, site in trace.nodes.items() if site["type"] == "sample"]
        ['a11', 'a12', 'a21', 'a22']
        >>> with pyro.plate("particles", 5):
        ...     guide()["a11"].shape
        torch.Size([5])
    """

    def __init__(
        self,
        model: Callable | CircuitProgram,
        params: Sequence[str] | None = None,
        *,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        flow: FlowConfig | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(model, CircuitProgram):
            if params is not None or model_args or model_kwargs:
                raise ValueError("params, model_args and model_kwargs come with the CircuitProgram")
            program = model
        else:
            program = CircuitProgram(model, params, tuple(model_args), dict(model_kwargs or {}))
        if seed is not None and generator is not None:
            raise ValueError("give the flow a generator or a seed, not both")
        self.program = program
        self.space = ParameterSpace(program.priors)
        flow = flow or FlowConfig()
        if seed is None:
            self.q = SupportedFlow(self.space, flow, generator)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.q = SupportedFlow(self.space, flow, torch.Generator().manual_seed(seed))

    @property
    def model(self) -> Callable:
        """The model whose parameter sites the guide samples."""
        return self.program.model

    @property
    def params(self) -> list[str]:
        """The parameter sites, in the flow's coordinate order."""
        return list(self.space.names)

    def to_device(self, device, program: CircuitProgram | None = None) -> EPIGuide:
        """This guide, moved in place to ``device`` (a name or ``torch.device``) and returned.

        The flow's parameters and buffers move, and the guide is bound to the model resolved
        there: ``program`` when given (the same model and parameter sites, its priors on
        ``device``), else the guide's model resolved again under ``with torch.device(device)``
        with its tensor arguments moved (a model that is a ``torch.nn.Module`` is copied and the
        copy moved), so that the supports' maps and the model's priors live on ``device`` too.

        Example:
            >>> from pyro_circuits.models import LDS2D
            >>> guide = EPIGuide(LDS2D(), flow=FlowConfig(units=8), seed=0).to_device("cpu")
            >>> guide.rsample_and_log_prob(2)[0].device
            device(type='cpu')
        """
        device = torch_device("device", device)
        if program is None:
            program = self.program.on(device)
        elif list(program.params) != self.params:
            raise ValueError(
                f"program has the parameter sites {program.params}; the guide has {self.params}"
            )
        self.to(device)
        self.program, self.space = program, ParameterSpace(program.priors)
        self.q.space = self.space
        return self

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Draw θ ~ q at every parameter site; returns ``{site: value}`` (model arguments unused)."""
        batch_shape = _plate_batch_shape()
        theta, log_q = self.q.rsample_and_log_prob(batch_shape.numel())
        log_q = log_q.reshape(batch_shape)
        drawn = {}
        for i, (name, value) in enumerate(self.space.split(theta).items()):
            shape = self.space.shapes[name]
            value = value.reshape(batch_shape + shape)
            density = log_q if i == 0 else torch.zeros_like(log_q)
            delta = dist.Delta(value, log_density=density, event_dim=len(shape))
            drawn[name] = pyro.sample(name, delta)
        return drawn

    def rsample_and_log_prob(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` flat reparameterised draws θ (n, D) and log q(θ) (n,), straight from the flow."""
        return self.q.rsample_and_log_prob(n)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """log q(θ) of flat draws θ (n, D) in the flow's coordinate order."""
        return self.q.log_prob(theta)


def _plate_batch_shape() -> torch.Size:
    """The batch shape the enclosing vectorised plates ask for: sizes at their dims, 1 elsewhere."""
    frames = [f for f in pyro.poutine.runtime.get_plates() if f.vectorized and f.dim is not None]
    if not frames:
        return torch.Size()
    shape = [1] * max(-f.dim for f in frames)
    for frame in frames:
        shape[frame.dim] = frame.size
    return torch.Size(shape)

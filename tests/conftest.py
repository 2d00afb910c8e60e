import pytest
import torch

# Tiny tensors: one thread avoids oversubscribing the 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Each test starts from the same global RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def model_batch_sizes(monkeypatch):
    """The batch sizes the model runs with, in order, as :class:`CircuitProgram` traces it."""
    from pyro_circuits.sites import CircuitProgram

    sizes, trace = [], CircuitProgram.trace

    def recorded(program, values):
        sizes.append(program._batch_size(values))
        return trace(program, values)

    monkeypatch.setattr(CircuitProgram, "trace", recorded)
    return sizes

import pytest
import torch

# Tiny tensors: one thread avoids oversubscribing the 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Each test starts from the same global RNG state."""
    torch.manual_seed(0)

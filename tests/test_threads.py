"""torch_threads: sets torch's intra-op threads for a block and restores them."""

import pytest
import torch

from pyro_circuits.threads import thread_count, torch_threads


@pytest.fixture
def three_threads():
    """torch at 3 threads (a count no default gives), restored after the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("count", [1, 2])
def test_sets_the_count_for_the_block_and_restores_it(three_threads, count):
    with torch_threads(count):
        inside = torch.get_num_threads()
    assert (inside, torch.get_num_threads()) == (count, 3)


def test_restores_the_count_when_the_block_raises(three_threads):
    with pytest.raises(KeyError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise KeyError("inside")
    assert torch.get_num_threads() == 3


def test_none_leaves_torch_alone(three_threads):
    with torch_threads(None):
        assert torch.get_num_threads() == 3
        torch.set_num_threads(2)  # a change inside a None block is not undone
    assert torch.get_num_threads() == 2


def test_nested_blocks_restore_in_turn(three_threads):
    with torch_threads(1):
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize(
    "bad, error",
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_bad_counts_are_rejected_before_anything_changes(three_threads, bad, error):
    with pytest.raises(error, match="threads"):
        torch_threads(bad)  # the call checks, before any block is entered
    assert torch.get_num_threads() == 3
    with pytest.raises(error, match="--threads"):
        thread_count("--threads", bad)

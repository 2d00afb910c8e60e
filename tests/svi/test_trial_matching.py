"""Tests for trial matching: the assignment, the losses, the balance and the training entry."""

import itertools

import pytest
import torch

from pyro_circuits.models import BioRNN, reference_circuit
from pyro_circuits.svi import (
    GradientBalance,
    TrialFeatures,
    fit_circuit,
    hard_trial_matching_loss,
    psth_loss,
    sinkhorn_trial_matching_loss,
    trial_matching_loss,
)
from pyro_circuits.svi.circuit_fit import reference_dataset
from pyro_circuits.svi.trial_matching import assignment
from pyro_circuits.threads import torch_threads


@pytest.mark.parametrize("seed", range(5))
def test_assignment_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    model, data = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    cost = torch.cdist(model, data).pow(2) / 3
    rows, cols = assignment(cost)
    best = min(
        sum(cost[i, p[i]].item() for i in range(5)) for p in itertools.permutations(range(5))
    )
    assert cost[rows, cols].sum().item() == pytest.approx(best, rel=1e-6)
    # the loss is the mean squared difference of that optimal matching
    loss = hard_trial_matching_loss(model, data)
    assert loss.item() == pytest.approx(best / 5, rel=1e-5)


def test_loss_zero_for_identical_and_invariant_to_trial_order():
    x = torch.randn(12, 6)
    y = torch.randn(12, 6)
    perm = torch.randperm(12)
    assert hard_trial_matching_loss(x, x[perm]).item() == 0.0
    a, b = hard_trial_matching_loss(x, y), hard_trial_matching_loss(x[perm], y[torch.randperm(12)])
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert abs(sinkhorn_trial_matching_loss(x, x[perm]).item()) < 1e-4
    assert sinkhorn_trial_matching_loss(x, y + 3.0).item() > 0.5


def test_loss_is_differentiable_through_the_model_side():
    x = torch.randn(6, 4, requires_grad=True)
    y = torch.randn(6, 4)
    for method in ("hard", "sinkhorn"):
        (grad,) = torch.autograd.grad(trial_matching_loss(x, y, method=method), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_subsampling_to_the_smaller_set():
    x, y = torch.randn(10, 3), torch.randn(4, 3)
    g = torch.Generator().manual_seed(0)
    assert torch.isfinite(hard_trial_matching_loss(x, y, generator=g))


def test_features_and_psth_bad_inputs():
    data = torch.rand(5, 20, 4)
    with pytest.raises(ValueError, match="groups\\[0\\] must be a boolean mask"):
        TrialFeatures(data, [torch.tensor([True, False])], dt=2.0)
    with pytest.raises(ValueError, match="selects no neuron"):
        TrialFeatures(data, [torch.zeros(4, dtype=torch.bool)], dt=2.0)
    with pytest.raises(ValueError, match="neurons"):
        TrialFeatures(data, [torch.ones(4, dtype=torch.bool)], dt=2.0)(torch.rand(5, 20, 3))
    with pytest.raises(ValueError, match="differ"):
        psth_loss(torch.rand(3, 20, 4), torch.rand(3, 20, 5), dt=2.0)
    with pytest.raises(ValueError, match="method"):
        trial_matching_loss(torch.rand(3, 2), torch.rand(3, 2), method="soft")
    with pytest.raises(ValueError, match="features"):
        hard_trial_matching_loss(torch.rand(3, 2), torch.rand(3, 4))
    assert psth_loss(data, data, dt=2.0).item() == 0.0


def test_gradient_balance_two_to_one():
    balance = GradientBalance((2.0, 1.0))
    x = torch.ones(4, requires_grad=True)
    a, b = balance(x)
    (
        1000.0 * (a * torch.tensor([1.0, 0, 0, 0])).sum() + (b * torch.tensor([0, 1.0, 0, 0])).sum()
    ).backward()
    torch.testing.assert_close(x.grad, torch.tensor([2 / 3, 1 / 3, 0.0, 0.0]))
    with pytest.raises(ValueError, match="weights"):
        GradientBalance((-1.0, 1.0))


SMALL = {"n_exc": 4, "n_inh": 2, "n_steps": 20, "stim_step": 5}


def test_reference_dataset_regenerates_from_seed(tmp_path):
    teacher = reference_circuit("nofb", **SMALL)
    a = reference_dataset(teacher, n_trials=10, seed=3, path=tmp_path / "d.pt")
    b = torch.load(tmp_path / "d.pt")
    assert a["train"].shape == (5, 20, 12) and torch.equal(a["test"], b["test"])
    assert not torch.equal(a["train"], reference_dataset(teacher, n_trials=10, seed=4)["train"])


def test_fit_circuit_reduces_the_loss_checkpoints_and_validates(tmp_path):
    teacher = reference_circuit("withfb", **SMALL)
    data = reference_dataset(teacher, n_trials=32, seed=0)
    model = BioRNN(2, seed=1, **SMALL)
    groups = [model.area_mask(a) for a in range(2)]
    path = tmp_path / "fit.ckpt"
    fit = fit_circuit(model, data["train"], data["test"], groups, dt=2.0, steps=8, batch_size=8,
                      lr=0.02, checkpoint=str(path), progress=False)  # fmt: skip
    assert path.exists() and fit.steps == 8 and len(fit.history) == 4
    assert all(h["valid_loss"] is not None for h in fit.history)
    again = fit_circuit(model, data["train"], data["test"], groups, dt=2.0, steps=16,
                        batch_size=8, lr=0.02, checkpoint=str(path), progress=False)  # fmt: skip
    assert again.steps == 16 and len(again.history) == 8  # resumed, not restarted
    with pytest.raises(ValueError, match="train must be"):
        fit_circuit(model, torch.rand(3, 4), data["test"], groups, dt=2.0)
    with pytest.raises(ValueError, match="method"):
        fit_circuit(model, data["train"], data["test"], groups, dt=2.0, method="x")
    with pytest.raises(TypeError, match="project"):
        fit_circuit(torch.nn.Linear(2, 2), data["train"], data["test"], groups, dt=2.0)


def test_fit_circuit_runs_with_the_given_threads_and_restores_torch_s():
    data = (torch.rand(8, 20, 10, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    model = BioRNN(n_exc=4, n_inh=1, n_steps=20, stim_step=5, seed=0)
    seen, simulate = [], model.forward
    model.forward = lambda *args, **kwargs: (
        seen.append(torch.get_num_threads()) or simulate(*args, **kwargs)
    )
    with torch_threads(3):  # a count no default gives
        fit_circuit(model, data, data, [model.area_mask(0)], dt=2.0, steps=2, batch_size=4,
                    threads=1, progress=False)  # fmt: skip
        assert seen and set(seen) == {1} and torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads"):
            fit_circuit(model, data, data, [model.area_mask(0)], dt=2.0, threads=-1)


def test_matching_stays_within_conditions():
    """Trials are matched only to trials with the same inputs: swapping the two conditions'
    activity costs a loss that matching across conditions would not see."""
    from pyro_circuits.datasets import conditions_of
    from pyro_circuits.svi.circuit_fit import matched_loss

    g = torch.Generator().manual_seed(0)
    dark, lit = torch.rand(4, 20, 3, generator=g) * 0.1, torch.rand(4, 20, 3, generator=g) + 1.0
    data = torch.cat([dark, lit])
    light = torch.zeros(8, 20, 1)
    light[4:] = 1.0
    features = TrialFeatures(data, [torch.ones(3, dtype=torch.bool)], dt=2.0)
    swapped = torch.cat([lit, dark])
    assert float(matched_loss(data, data, conditions_of(light, 8), features, "hard", g)) == 0.0
    assert float(trial_matching_loss(features(swapped), features(data))) == 0.0
    assert float(matched_loss(swapped, data, conditions_of(light, 8), features, "hard", g)) > 1.0

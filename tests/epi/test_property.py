import pytest
import torch

from pyro_circuits.epi import EmergentProperty


def test_sufficient_statistics_and_target():
    prop = EmergentProperty(mean={"a": 1.0, "b": [0.0, 2.0]}, variance={"a": 4.0, "b": [1.0, 1.0]})
    stats = {"a": torch.tensor([3.0]), "b": torch.tensor([[1.0, 2.0]])}
    assert torch.equal(
        prop.sufficient_statistics(stats), torch.tensor([[3.0, 1.0, 2.0, 4.0, 1.0, 0.0]])
    )
    assert torch.equal(prop.target, torch.tensor([1.0, 0.0, 2.0, 4.0, 1.0, 1.0]))
    assert prop.constraint_names == [
        "E[a]",
        "E[b[0]]",
        "E[b[1]]",
        "Var[a]",
        "Var[b[0]]",
        "Var[b[1]]",
    ]


def test_unknown_site_is_named():
    prop = EmergentProperty(mean={"freq": 1.0}, variance={"freq": 1.0})
    with pytest.raises(ValueError, match="freq"):
        prop.validate({"rate": torch.Size([])})


@pytest.mark.parametrize("variance", [0.0, -1.0])
def test_non_positive_variance(variance):
    with pytest.raises(ValueError, match="variance must be positive"):
        EmergentProperty(mean={"a": 0.0}, variance={"a": variance})


def test_shape_mismatch_between_mean_and_variance():
    with pytest.raises(ValueError, match="shape"):
        EmergentProperty(mean={"a": [0.0, 1.0]}, variance={"a": 1.0})


def test_shape_mismatch_with_model():
    prop = EmergentProperty(mean={"a": [0.0, 1.0]}, variance={"a": [1.0, 1.0]})
    with pytest.raises(ValueError, match="shape"):
        prop.validate({"a": torch.Size([])})


def test_keys_must_agree():
    with pytest.raises(ValueError, match="same statistics"):
        EmergentProperty(mean={"a": 0.0}, variance={"b": 1.0})


def test_dicts_required():
    with pytest.raises(TypeError):
        EmergentProperty(mean=[0.0], variance=[1.0])


def test_repr_reads_targets_to_four_figures():
    prop = EmergentProperty(
        mean={"freq": 2 * torch.pi, "b": [0.0, 1.5]}, variance={"freq": 0.25, "b": [4.0, 0.1]}
    )
    assert repr(prop) == "EmergentProperty(freq: 6.283 ± 0.5; b: [0, 1.5] ± [2, 0.3162])"

"""Tests for the bioRNN family: constraints survive training, light, noise replay, surrogate."""

import pytest
import torch

from pyro_circuits.handlers import optogenetic, stimulus_gradient
from pyro_circuits.models import BioRNN, reference_circuit
from pyro_circuits.models.biornn import THRESHOLD, EscapeSpike, escape_probability
from pyro_circuits.svi import fit_circuit

SMALL = {"n_exc": 4, "n_inh": 2, "n_steps": 20, "stim_step": 5}


def trained(steps=6, **flags):
    """A tiny model trained a few steps on a tiny teacher (big lr, so weights really move)."""
    teacher = reference_circuit("withfb", **SMALL)
    data = teacher.simulate(16, seed=0)
    model = BioRNN(2, seed=1, sparsity=0.01, l1_decay=0.001, **SMALL, **flags)
    groups = [model.area_mask(a) for a in range(2)]
    fit_circuit(model, data, data, groups, dt=2.0, steps=steps, batch_size=8, lr=0.05,
                progress=False)  # fmt: skip
    return model


def cross_inhibitory(model):
    inh = ~model.excitatory
    return model.w_rec[inh[:, None] & (model.area[:, None] != model.area[None, :])]


def test_dale_signs_survive_training():
    model = trained()
    before = BioRNN(2, seed=1, **SMALL)
    assert not torch.equal(model.w_rec, before.w_rec)  # training moved the weights
    assert (model.w_rec >= 0).all()
    w = model.effective_weights()
    assert (w[model.excitatory] >= 0).all() and (w[~model.excitatory] <= 0).all()


@pytest.mark.parametrize("dale", [True, False])
def test_no_cross_area_inhibition_ever(dale):
    model = trained(dale=dale)
    assert (cross_inhibitory(model) == 0).all()
    assert (model.w_rec.diagonal() == 0).all()


def test_blocked_pathway_stays_zero():
    model = trained(blocked=[(1, 0)], dale=False)
    pathway = (model.area[:, None] == 1) & (model.area[None, :] == 0)
    assert (model.w_rec[pathway] == 0).all()
    forward = (model.area[:, None] == 0) & (model.area[None, :] == 1)
    assert model.w_rec[forward].abs().sum() > 0  # the open pathway grew


def test_zero_light_is_bit_identical_and_noise_replays():
    model = reference_circuit("nofb", **SMALL)
    base = model.simulate(8, seed=3)
    assert torch.equal(base, model.simulate(8, seed=3))
    with model.light(1, "I", 0.0):
        assert torch.equal(model.simulate(8, seed=3), base)
    with optogenetic(model.area_mask(0, "E"), current=torch.zeros(20, 12), site="drive"):
        assert torch.equal(model.simulate(8, seed=3), base)
    with model.light(0, "E", 1.0, window=None):
        assert not torch.equal(model.simulate(8, seed=3), base)
    assert not torch.equal(model.simulate(8, seed=4), base)


def test_light_drives_only_target_cells_and_sigma_variant_runs():
    model = BioRNN(2, **SMALL, spiking=False, dale=False, local_inhibition=False, seed=0)
    with torch.no_grad():
        model.w_rec.zero_()  # no recurrence: light acts only where it is shone
    base = model.simulate(4, seed=0)
    with model.light(1, "I", 0.5, window=None):
        lit = model.simulate(4, seed=0)
    changed = (lit != base).any(0).any(0)
    assert torch.equal(changed, model.area_mask(1, "I"))
    assert (lit >= 0).all() and (lit <= model.dt / 2).all()


def test_escape_spike_surrogate_triangle():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.5, 1.5], requires_grad=True)
    EscapeSpike.apply(x, torch.rand(5), 2.0).sum().backward()
    torch.testing.assert_close(x.grad, 0.3 * torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0]))
    assert escape_probability(torch.tensor(0.0), 0.5) == 0.5


def test_surrogate_gradient_sign_matches_finite_differences_of_expected_rate():
    model = reference_circuit("withfb", n_exc=4, n_inh=2, n_steps=30, stim_step=5)
    n, h = 400, 0.02 * THRESHOLD

    def expected_count(v_rest):
        with torch.no_grad():
            model.v_rest.copy_(v_rest)
            return model.simulate(n, seed=0).sum((0, 1)) / n

    v0 = model.v_rest.detach().clone()
    spikes = model.simulate(n, seed=0, grad=True)
    (surrogate,) = torch.autograd.grad(spikes.sum() / n, model.v_rest)
    agree = []
    for j in range(model.n_neurons):
        up, down = v0.clone(), v0.clone()
        up[j] += h
        down[j] -= h
        fd = (expected_count(up).sum() - expected_count(down).sum()) / (2 * h)
        agree.append(bool(torch.sign(fd) == torch.sign(surrogate[j])))
    expected_count(v0)
    assert sum(agree) >= 0.75 * len(agree), agree


def test_stimulus_gradient_per_neuron_and_step():
    model = reference_circuit("nofb", **SMALL)

    def program():
        import pyro

        pyro.deterministic("readout", model(32)[:, :, model.area_mask(1)].sum())

    grad = stimulus_gradient(
        program, "readout", torch.ones(12, dtype=torch.bool), current=torch.zeros(20, 12),
        site="drive", seed=0,
    )  # fmt: skip
    assert grad.shape == (20, 12)
    assert grad[:, model.area_mask(1, "E")].sum() > 0  # driving the readout's own E cells helps


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m.light(2, "I", 0.1), ValueError, "area must be"),
        (lambda m: m.light(0, "X", 0.1), ValueError, "kind must be"),
        (lambda m: m.light(0, "I", -0.1), ValueError, "power must be >= 0"),
        (lambda m: m.light(0, "I", float("nan")), ValueError, "power must be >= 0"),
        (lambda m: m.area_mask(0, "EI"), ValueError, "kind must be"),
        (lambda m: m(0), ValueError, "n_trials"),
        (lambda m: m.simulate(2, seed=-1), ValueError, "seed"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call(BioRNN(2, **SMALL))


def test_bad_construction_and_wrong_mask_size():
    with pytest.raises(ValueError, match="blocked pathway"):
        BioRNN(2, blocked=[(0, 2)])
    with pytest.raises(TypeError, match="n_exc"):
        BioRNN(2, n_exc=2.5)
    with pytest.raises(ValueError, match="hypothesis"):
        reference_circuit("feedback")
    model = BioRNN(2, **SMALL)
    with pytest.raises(ValueError, match="selects"), optogenetic([True] * 5, current=0.1):
        model.simulate(2, seed=0)
    with pytest.raises(ValueError, match="unknown population"), optogenetic("A3/E", current=0.1):
        model.simulate(2, seed=0)


# --- measured inputs (a light command through learned per-neuron gains) ---------------------


def test_zero_measured_input_is_bit_identical_to_no_input_channel():
    plain = BioRNN(1, seed=3, **SMALL)
    with_input = BioRNN(1, seed=3, n_inputs=1, **SMALL)
    zeros = torch.zeros(5, SMALL["n_steps"], 1)
    assert torch.equal(plain.simulate(5, seed=2), with_input.simulate(5, seed=2, inputs=zeros))


def test_measured_input_drives_through_non_negative_gains():
    model = BioRNN(1, seed=0, n_inputs=1, stim_duration=0.0, **SMALL)
    with torch.no_grad():
        model.w_light.copy_(-torch.ones_like(model.w_light))
        model.w_light[0, :2] = 5.0
    model.project()
    assert (model.w_light >= 0).all() and (model.w_light[0, 2:] == 0).all()
    light = torch.zeros(200, SMALL["n_steps"], 1)
    light[:, 8:14] = 1.0
    lit = model.simulate(200, seed=1, inputs=light)
    dark = model.simulate(200, seed=1, inputs=torch.zeros_like(light))
    gain = lit[:, 8:14].mean((0, 1)) - dark[:, 8:14].mean((0, 1))
    assert (gain[:2] > 0.2).all()  # the two driven neurons fire more
    assert torch.equal(lit[:, :8], dark[:, :8])  # nothing changes before the light


def test_no_stimulus_pulse_when_its_duration_is_zero():
    assert BioRNN(1, seed=0, stim_duration=0.0, **SMALL).pulse.abs().sum() == 0


@pytest.mark.parametrize(
    "n_inputs, inputs, match",
    [
        (0, torch.zeros(3, 20, 1), "n_inputs=0"),
        (1, torch.zeros(3, 19, 1), "shape"),
        (1, None, "shape"),
        (2, torch.zeros(3, 20, 1), "shape"),
    ],
)
def test_bad_measured_inputs(n_inputs, inputs, match):
    model = BioRNN(1, seed=0, n_inputs=n_inputs, **SMALL)
    with pytest.raises(ValueError, match=match):
        model(3, inputs)


def test_fit_with_light_conditions_and_hidden_neurons_keeps_constraints():
    teacher = BioRNN(1, seed=5, n_inputs=1, stim_duration=0.0, **SMALL)
    with torch.no_grad():
        teacher.w_light.fill_(2.0)
    light = torch.zeros(16, SMALL["n_steps"], 1)
    light[8:, 8:12] = 1.0  # two conditions: dark and lit
    recorded = torch.arange(4)  # the 4 E cells are recorded, the 2 I cells hidden
    data = teacher.simulate(16, seed=0, inputs=light)[..., recorded]
    model = BioRNN(1, seed=1, n_inputs=1, stim_duration=0.0, **SMALL)
    before = model.w_light.detach().clone()
    fit = fit_circuit(model, data, data, [torch.ones(4, dtype=torch.bool)], dt=2.0, steps=6,
                      batch_size=8, lr=0.05, train_inputs=light, test_inputs=light,
                      recorded=recorded, progress=False)  # fmt: skip
    assert fit.steps == 6 and all(record["valid_loss"] >= 0 for record in fit.history)
    assert not torch.equal(model.w_light, before) and (model.w_light >= 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"train_inputs": torch.zeros(8, 20, 1)}, "both"),
        ({"train_inputs": torch.zeros(7, 20, 1), "test_inputs": torch.zeros(8, 20, 1)}, "trials"),
        ({"recorded": [0, 0, 1, 2, 3, 4]}, "distinct"),
        ({"recorded": [0, 1, 2, 3, 4, 99]}, "distinct"),
        ({"recorded": [0, 1, 2]}, "distinct"),
    ],
)
def test_fit_circuit_rejects_bad_inputs_and_mappings(kwargs, match):
    model = BioRNN(1, seed=0, n_inputs=1, **SMALL)
    data = torch.zeros(8, 20, 6)
    with pytest.raises(ValueError, match=match):
        fit_circuit(model, data, data, [torch.ones(6, dtype=torch.bool)], dt=2.0, steps=1,
                    progress=False, **kwargs)  # fmt: skip

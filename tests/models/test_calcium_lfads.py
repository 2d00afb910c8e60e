import math

import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.guides.ladder import LadderEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.models.calcium import fluorescence_from_spikes
from pyro_circuits.models.calcium_lfads import CalciumLFADS, GaussianCalciumLFADS
from pyro_circuits.svi import Staged, train

SIZES = dict(z_dim=2, ic_dim=3, gen_dim=6, fac_dim=2)
GUIDE = dict(enc_dim=5, con_dim=5, deep=dict(enc_dim=5, ci_dim=5, con_dim=5))


def fluorescence(trials=8, steps=20, neurons=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    spikes = torch.poisson(torch.full((trials, steps, neurons), 0.5), generator=generator)
    return spikes, fluorescence_from_spikes(spikes, seed=seed)[1]


def latent_sites(trace):
    return {
        name: [frame.name for frame in site["cond_indep_stack"]]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name != "trials"
    }


@pytest.mark.parametrize("co_dim", [0, 1])
def test_model_and_guide_traces_match(co_dim):
    model = CalciumLFADS(4, co_dim=co_dim, **SIZES)
    guide = LadderEncoder(model, **GUIDE)
    _, fluor = fluorescence()
    guide_trace = poutine.trace(guide).get_trace(fluor)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(fluor)
    expected = {"ic": ["trials"], "z": ["trials"]} | ({"co": ["trials"]} if co_dim else {})
    assert latent_sites(guide_trace) == latent_sites(model_trace) == expected
    for name in expected:
        assert guide_trace.nodes[name]["value"] is model_trace.nodes[name]["value"]
        site = model_trace.nodes[name]
        assert torch.isfinite(site["fn"].log_prob(site["value"])).all()
    assert model_trace.nodes["fluorescence"]["is_observed"]
    spikes = model_trace.nodes["spikes"]["value"]
    assert spikes.shape == fluor.shape and (spikes >= 0).all()


def test_elbo_decreases_on_a_tiny_dataset():
    spikes, fluor = fluorescence(trials=16)
    model = CalciumLFADS(4, co_dim=1, **SIZES).init_readout(spikes)
    fit = train(
        model,
        LadderEncoder(model, **GUIDE),
        fluor,
        batch_size=8,
        max_epochs=25,
        lr=0.02,
        progress=False,
    )
    losses = [record["loss"] for record in fit.history]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert sum(losses[-5:]) < sum(losses[:5]) / 2
    posterior = fit.posterior_mean(fluor, num_samples=3)
    assert posterior["spikes"].shape == posterior["calcium"].shape == fluor.shape
    assert (posterior["spikes"] >= 0).all()
    pushed = fit.posterior_mean(fluor, push_mean=True)
    torch.testing.assert_close(pushed, fit.posterior_mean(fluor, push_mean=True, seed=3))
    assert pushed["z"].shape == posterior["z"].shape and (pushed["spikes"] >= 0).all()


def test_missing_frames_keep_the_elbo_finite():
    _, fluor = fluorescence()
    fluor[:, 5:8] = float("nan")
    model = CalciumLFADS(4, co_dim=1, **SIZES)
    guide = LadderEncoder(model, **GUIDE)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, fluor)
    grads = torch.autograd.grad(loss, [*model.parameters(), *guide.parameters()])
    assert torch.isfinite(loss)
    assert all(torch.isfinite(grad).all() for grad in grads)


def test_bad_input_raises():
    model = CalciumLFADS(4, **SIZES)
    _, fluor = fluorescence()
    with pytest.raises(ValueError, match="coordinated dropout"):
        GaussianCalciumLFADS(4, ic_dim=3, gen_dim=6, fac_dim=2)(
            fluor, cd_mask=torch.zeros_like(fluor)
        )
    with pytest.raises(ValueError, match="neurons"):
        model(fluor[..., :3])
    with pytest.raises(ValueError, match="inf"):
        model(torch.full_like(fluor, torch.inf))
    with pytest.raises(ValueError, match="z_dim"):
        CalciumLFADS(4, z_dim=0)
    with pytest.raises(TypeError, match="CalciumLFADS"):
        LadderEncoder(LFADS(4, ic_dim=3, gen_dim=6, fac_dim=2))
    with pytest.raises(ValueError, match="step_dim"):
        LadderEncoder(model, step_dim=0)
    assert isinstance(LFADSEncoder(model), LFADSEncoder)  # the deep encoder accepts it


def test_coordinated_dropout_trains_the_deep_model_on_the_dropped_entries_only():
    _, fluor = fluorescence()
    model = CalciumLFADS(4, **SIZES)
    guide = LadderEncoder(model, **GUIDE)
    elbo = pyro.infer.Trace_ELBO()

    def readout_grad_and_loss(cd_mask):
        pyro.set_rng_seed(0)
        loss = elbo.differentiable_loss(model, guide, fluor, cd_mask=cd_mask)
        return torch.autograd.grad(loss, model.readout.weight)[0], loss

    grad_none, loss_none = readout_grad_and_loss(None)
    grad_dropped, loss_dropped = readout_grad_and_loss(torch.zeros_like(fluor))
    grad_kept, loss_kept = readout_grad_and_loss(torch.ones_like(fluor))
    # Only the Poisson tie reaches the readout: every entry dropped is the plain ELBO's gradient
    # (the encoder reads zeros, so the draws differ, but the gradient is non-zero), every entry
    # kept passes none; the loss stays the full ELBO either way.
    assert grad_none.abs().sum() > 0 and grad_dropped.abs().sum() > 0
    assert torch.equal(grad_kept, torch.zeros_like(grad_kept))
    assert torch.isfinite(loss_kept) and torch.isfinite(loss_dropped)
    pyro.set_rng_seed(0)
    spikes_grad = torch.autograd.grad(
        elbo.differentiable_loss(model, guide, fluor, cd_mask=torch.ones_like(fluor)),
        model.spike_map.weight,
    )[0]
    assert spikes_grad.abs().sum() > 0  # the kept entries' tie still trains the spike level


def test_staged_schedule_holds_the_deep_model_then_releases_it():
    torch.manual_seed(0)
    model = CalciumLFADS(4, **SIZES)
    guide = LadderEncoder(model, **GUIDE)
    _, fluor = fluorescence()
    deep = [p.detach().clone() for p in model.deep_parameters() + guide.deep_parameters()]
    spike_map = model.spike_map.weight.detach().clone()
    staged = Staged(hold=4, ramp=2)
    train(model, guide, fluor, staged=staged, max_epochs=2, batch_size=4, progress=False)
    after_hold = [p.detach().clone() for p in model.deep_parameters() + guide.deep_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(deep, after_hold, strict=True))  # 4 steps held
    assert not torch.equal(spike_map, model.spike_map.weight)
    assert {id(p) for p in model.deep_parameters()}.isdisjoint(
        id(p) for p in model.observation.parameters()
    )
    train(model, guide, fluor, staged=Staged(hold=0, ramp=2), max_epochs=1, progress=False)
    released = model.deep_parameters() + guide.deep_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(after_hold, released, strict=True))


def test_staged_schedule_needs_deep_parameters():
    model = LFADS(4, ic_dim=3, gen_dim=6, fac_dim=2)
    counts = torch.poisson(torch.ones(4, 10, 4))
    with pytest.raises(TypeError, match="deep_parameters"):
        train(model, LFADSEncoder(model, enc_dim=4), counts, staged=Staged(), progress=False)
    with pytest.raises(ValueError, match="hold"):
        Staged(hold=-1)


def test_gaussian_lfads_scores_fluorescence_by_its_moments():
    model = GaussianCalciumLFADS(4, co_dim=1, ic_dim=3, gen_dim=6, fac_dim=2)
    guide = LFADSEncoder(model, enc_dim=5, ci_dim=5, con_dim=5)
    spikes, fluor = fluorescence(trials=16)
    guide_trace = poutine.trace(guide).get_trace(fluor)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(fluor)
    assert latent_sites(trace) == latent_sites(guide_trace) == {"ic": ["trials"], "co": ["trials"]}
    rates = trace.nodes["rates"]["value"]
    mean, variance = model.observation.moments(rates * model.dt)
    expected = torch.distributions.Normal(mean, (model.observation.sigma**2 + variance).sqrt())
    torch.testing.assert_close(
        trace.nodes["fluorescence"]["fn"].log_prob(fluor), expected.log_prob(fluor).sum((-1, -2))
    )
    fluor[:, 5:8] = float("nan")
    fit = train(
        model.init_readout(spikes),
        guide,
        fluor,
        batch_size=8,
        max_epochs=20,
        lr=0.02,
        progress=False,
    )
    losses = [record["loss"] for record in fit.history]
    assert all(map(math.isfinite, losses)) and sum(losses[-5:]) < sum(losses[:5])


def _generator_gradients(model, guide, fluor):
    guide_trace = poutine.trace(guide).get_trace(fluor)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(fluor)
    trace.compute_log_prob()
    weights = [model.generator.weight_hh_l0, model.factor_weight]
    return {
        term: torch.autograd.grad(
            trace.nodes[term]["log_prob_sum"], weights, retain_graph=True, allow_unused=True
        )
        for term in ("fluorescence", "spikes_given_rates")
    }


@pytest.mark.parametrize("through_spikes", [False, True])
def test_only_the_poisson_tie_trains_the_deep_model_by_default(through_spikes):
    torch.manual_seed(0)
    model = CalciumLFADS(4, train_deep_through_spikes=through_spikes, **SIZES)
    _, fluor = fluorescence()
    grads = _generator_gradients(model, LadderEncoder(model, **GUIDE), fluor)
    tie = [g.abs().sum().item() for g in grads["spikes_given_rates"]]
    fluorescence_term = [0.0 if g is None else g.abs().sum().item() for g in grads["fluorescence"]]
    assert all(value > 0 for value in tie)
    assert all((value > 0) == through_spikes for value in fluorescence_term)


@pytest.mark.parametrize("ladder", [True, False], ids=["ladder", "gaussian_lfads"])
def test_the_dynamics_encoder_reads_the_innovation(ladder):
    if ladder:
        model = CalciumLFADS(4, **SIZES)
        guide = LadderEncoder(model, **GUIDE)
        encoder = guide.deep
    else:
        model = GaussianCalciumLFADS(4, ic_dim=3, gen_dim=6, fac_dim=2)
        guide = encoder = LFADSEncoder(model, enc_dim=5)
    _, fluor = fluorescence()
    fluor[:, 3] = float("nan")
    seen = []
    encoder.ic_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    guide(fluor)
    expected = model.observation.innovation(fluor)
    expected[:, 3:5] = 0.0  # the missing frame and the one after it, not the step from F = 0
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_a_stacked_dynamics_encoder_reads_the_spike_level_encoders_outputs():
    model = CalciumLFADS(4, co_dim=1, **SIZES)
    guide = LadderEncoder(model, stacked=True, **GUIDE)
    unstacked = LadderEncoder(model, **GUIDE)
    _, fluor = fluorescence()
    outputs, seen = [], []
    guide.encoder.register_forward_hook(lambda module, args, out: outputs.append(out[0]))
    guide.deep.ic_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    guide.deep.eval()  # no dropout between the two levels, so the inputs compare exactly
    guide_trace = poutine.trace(guide).get_trace(fluor)
    assert seen[0].shape == (8, 20, 2 * GUIDE["enc_dim"])
    torch.testing.assert_close(seen[0], outputs[0], rtol=0, atol=0)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(fluor)
    assert latent_sites(guide_trace) == latent_sites(model_trace)
    # q(ic) now depends on the spike-level encoder; unstacked, it does not.
    for stacked, trace in [(True, guide_trace), (False, poutine.trace(unstacked).get_trace(fluor))]:
        ic = trace.nodes["ic"]
        weight = (guide if stacked else unstacked).encoder.weight_ih_l0
        log_q = ic["fn"].log_prob(ic["value"]).sum()
        grad = torch.autograd.grad(log_q, weight, allow_unused=True)[0]
        assert (grad is not None and grad.abs().sum() > 0) == stacked
    with pytest.raises(ValueError, match="cd_mask"):
        guide(fluor, cd_mask=torch.ones_like(fluor))
    with pytest.raises(ValueError, match="input_dim"):
        guide.deep(fluor)  # built for the encoder's features, given none


def test_init_readout_starts_the_spike_map_at_the_mean_count():
    spikes, fluor = fluorescence()
    model = CalciumLFADS(4, **SIZES).init_readout(spikes)
    factors, z = torch.randn(3, 20, SIZES["fac_dim"]), torch.randn(3, 20, SIZES["z_dim"])
    expected = spikes.mean((0, 1)).expand(3, 20, 4)
    torch.testing.assert_close(model.spikes(factors, z), expected)
    trace = poutine.trace(model).get_trace(fluor)
    loss = -trace.log_prob_sum()
    loss.backward()
    assert model.spike_map.weight.grad.abs().sum() > 0  # zero weights still learn


@pytest.mark.parametrize("straight_through", [True, False])
def test_spike_map_below_zero_learns_only_straight_through(straight_through):
    model = CalciumLFADS(4, straight_through=straight_through, **SIZES)
    with torch.no_grad():
        model.spike_map.weight.zero_()
        model.spike_map.bias.fill_(-1.0)  # exp(-1) - 1 < 0: every cell in relu's dead zone
    factors, z = torch.randn(3, 20, SIZES["fac_dim"]), torch.randn(3, 20, SIZES["z_dim"])
    spikes = model.spikes(factors, z)
    assert torch.equal(spikes, torch.zeros_like(spikes))  # the forward value is the relu's
    spikes.sum().backward()
    expected = 3 * 20 * torch.exp(torch.tensor(-1.0)) if straight_through else 0.0
    torch.testing.assert_close(model.spike_map.bias.grad, torch.full((4,), float(expected)))


def test_spike_posterior_reads_each_frames_innovation_past_the_grus():
    model = CalciumLFADS(4, **SIZES)
    guide = LadderEncoder(model, **GUIDE)
    with torch.no_grad():  # GRUs with zero weights keep a zero state: only the direct path is left
        for p in [*guide.encoder.parameters(), *guide.controller.parameters()]:
            p.zero_()
    _, fluor = fluorescence(trials=1)
    bumped = fluor.clone()
    bumped[0, 7, 2] += 1.0  # one spike's worth of fluorescence at frame 7 of cell 2

    def loc(f):
        return poutine.trace(guide).get_trace(f).nodes["z"]["fn"].base_dist.loc

    changed = (loc(bumped) - loc(fluor)).abs().sum(-1)[0] > 0
    # The innovation F_t − d F_{t−1} changes at frames 7 and 8 only.
    assert changed.nonzero().flatten().tolist() == [7, 8]

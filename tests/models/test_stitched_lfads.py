"""Dynamic neural stitching: one LFADS across sessions of different neurons."""

import pyro
import pytest
import torch
from pyro import poutine

from pyro_circuits.datasets import Sessions, SpikeData
from pyro_circuits.guides import LFADSEncoder, StitchedEncoder
from pyro_circuits.models import LFADS, StitchedLFADS
from pyro_circuits.models.stitched_lfads import principal_components_regression, ridge
from pyro_circuits.svi import SVIFit, train

SIZES = dict(ic_dim=3, gen_dim=6, fac_dim=2)
NEURONS = [3, 5, 4]


def sessions(trials=(4, 3, 5), steps=8, seed=0) -> Sessions:
    g = torch.Generator().manual_seed(seed)
    data = [
        SpikeData(
            torch.poisson(torch.full((t, steps, n), 0.8), generator=g),
            dt=0.01,
            conditions=torch.arange(t) % 2,
        )  # fmt: skip
        for t, n in zip(trials, NEURONS, strict=True)
    ]
    return Sessions(data)


def model_and_guide(co_dim=0):
    model = StitchedLFADS(NEURONS, co_dim=co_dim, **SIZES)
    return model, StitchedEncoder(model, enc_dim=4, ci_dim=3, con_dim=4)


@pytest.mark.parametrize("co_dim", [0, 1])
def test_sites_shapes_and_padding(co_dim):
    model, guide = model_and_guide(co_dim)
    counts, inputs = sessions().pack()
    guide_trace = poutine.trace(guide).get_trace(counts, inputs, n_trials=24)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        counts, inputs, n_trials=24
    )
    latent = {"ic"} | ({"co"} if co_dim else set())
    for name in latent:
        assert model_trace.nodes[name]["value"] is guide_trace.nodes[name]["value"]
    assert model_trace.nodes["counts"]["scale"] == pytest.approx(2.0)  # 12 trials of 24
    rates = model_trace.nodes["rates"]["value"]
    assert rates.shape == (12, 8, 5) and model_trace.nodes["factors"]["value"].shape == (12, 8, 2)
    for s, rows in enumerate([slice(0, 4), slice(4, 7), slice(7, 12)]):
        assert (rates[rows, :, : NEURONS[s]] > 0).all()
        assert (rates[rows, :, NEURONS[s] :] == 0).all()
    # the padding is left out of the likelihood: its log-probability is that of the real entries
    site = model_trace.nodes["counts"]
    rate = rates[:4, :, :3] * model.dt
    expected = torch.distributions.Poisson(rate).log_prob(counts[:4, :, :3]).sum((1, 2))
    torch.testing.assert_close(site["fn"].log_prob(counts)[:4], expected)


def _grads(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _session_params(model, s):
    return [*model.read_in[s].parameters(), *model.readout[s].parameters()]


def test_a_sessions_trials_never_touch_another_sessions_read_in_or_read_out():
    model, guide = model_and_guide(co_dim=1)
    counts, inputs = sessions().pack()
    pyro.set_rng_seed(0)
    guide_trace = poutine.trace(guide).get_trace(counts, inputs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(counts, inputs)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    # per-trial ELBO terms of a mixed batch: session 0's trials are rows 0-3
    per_trial = model_trace.nodes["counts"]["log_prob"] + model_trace.nodes["ic"]["log_prob"]
    per_trial = (
        per_trial + model_trace.nodes["co"]["log_prob"] - guide_trace.nodes["ic"]["log_prob"]
    )
    per_trial = per_trial - guide_trace.nodes["co"]["log_prob"]
    loss_a = -per_trial[:4].sum()
    for other in (1, 2):
        assert all((g == 0).all() for g in _grads(loss_a, _session_params(model, other)))
    assert all(g.abs().sum() > 0 for g in _grads(loss_a, _session_params(model, 0)))


def test_a_training_step_on_one_session_leaves_the_others_maps_unchanged():
    model, guide = model_and_guide()
    data = sessions()
    counts, inputs = data.pack()
    # a first step on all sessions gives every parameter Adam momentum
    train(model, guide, counts, inputs, max_epochs=1, batch_size=12, progress=False)
    before = [p.detach().clone() for s in (1, 2) for p in _session_params(model, s)]
    shared = model.generator.weight_hh_l0.detach().clone()
    first = Sessions([data[0]])
    only_a, inputs_a = first.pack()
    only_a = torch.nn.functional.pad(only_a, (0, 2))
    train(model, guide, only_a, inputs_a, max_epochs=1, batch_size=4, progress=False)
    after = [p.detach() for s in (1, 2) for p in _session_params(model, s)]
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert not torch.equal(shared, model.generator.weight_hh_l0)


def test_principal_components_regression_recovers_the_map_between_sessions():
    """Noiseless sessions that are different linear images of one latent path: every read-in
    maps its session onto the same components, and read-in of one session then read-out of
    another reproduces the other exactly (the known map A_s⁺ A_r)."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(60, 3, generator=g, dtype=torch.float64)
    maps = [torch.randn(3, n, generator=g, dtype=torch.float64) for n in (5, 7, 4)]
    activity = [z @ a + torch.randn(n, generator=g, dtype=torch.float64)
                for a, n in zip(maps, (5, 7, 4), strict=True)]  # fmt: skip
    pcs, read_ins = principal_components_regression(activity, 3, alpha=1e-10)
    torch.testing.assert_close(pcs.std(0), torch.ones(3, dtype=torch.float64))
    for x, (w, b) in zip(activity, read_ins, strict=True):
        torch.testing.assert_close(x @ w + b, pcs, atol=1e-6, rtol=0)
    for source, (w, b) in zip(activity, read_ins, strict=True):
        for target in activity:
            w_out, b_out = ridge(pcs, target, alpha=1e-10)
            torch.testing.assert_close((source @ w + b) @ w_out + b_out, target, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="n_components"):
        principal_components_regression(activity, 20)


def test_init_pcr_aligns_the_read_ins_and_can_freeze_them():
    """Integer counts exactly linear in a shared latent: after init_pcr every session's read-in
    maps its condition averages onto the same trajectories; frozen read-ins stay fixed in
    training while the read-outs and the generator learn."""
    g = torch.Generator().manual_seed(2)
    latent = torch.randint(0, 4, (2, 8, 2), generator=g).double()  # [conditions, time, 2]
    data = []
    for n in NEURONS:
        loading = torch.randint(0, 3, (2, n), generator=g).double() + torch.eye(2, n).double()
        averages = latent @ loading  # integer counts, identical across a condition's trials
        data.append(SpikeData(averages.repeat(3, 1, 1), dt=0.01, conditions=[0, 1] * 3))
    stitched = Sessions(data)
    model = StitchedLFADS(NEURONS, **SIZES).double()
    model.init_pcr(stitched, smooth=0.0, alpha=1e-9, freeze_read_in=True)
    aligned = [model.read_in[s](d.counts[:2]) for s, d in enumerate(stitched)]
    for other in aligned[1:]:
        torch.testing.assert_close(other, aligned[0], atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in model.read_in.parameters())
    guide = StitchedEncoder(model, enc_dim=4).double()
    frozen = [p.detach().clone() for p in model.read_in.parameters()]
    readout = [p.detach().clone() for p in model.readout.parameters()]
    counts, inputs = stitched.pack()
    train(model, guide, counts, inputs, max_epochs=2, batch_size=6, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.read_in.parameters(), strict=True))
    assert any(
        not torch.equal(a, b) for a, b in zip(readout, model.readout.parameters(), strict=True)
    )


def test_trains_jointly_and_saves_and_loads(tmp_path):
    model, guide = model_and_guide()
    data = sessions()
    counts, inputs = data.pack()
    model.init_readout(counts, inputs)
    mean_rate = counts[4:7, :, :5].mean((0, 1)) / model.dt
    torch.testing.assert_close(model.readout[1].bias.exp(), mean_rate)
    fit = train(model, guide, counts, inputs, max_epochs=3, batch_size=5, cd_rate=0.3,
                progress=False)  # fmt: skip
    assert len(fit.history) == 3
    path = fit.save(tmp_path / "fit.pt")
    loaded = SVIFit.load(path)
    before = fit.posterior_mean(counts, inputs, num_samples=3, seed=1)
    after = loaded.posterior_mean(counts, inputs, num_samples=3, seed=1)
    torch.testing.assert_close(before["rates"], after["rates"])
    rates = data.unpack(after["rates"], neurons=True)
    assert [r.shape[-1] for r in rates] == NEURONS


def test_bad_inputs_are_clear_errors():
    model, guide = model_and_guide()
    counts, inputs = sessions().pack()
    with pytest.raises(ValueError, match="session index"):
        model(counts)
    with pytest.raises(ValueError, match="session index"):
        guide(counts)
    with pytest.raises(ValueError, match="session indices 0 to 2"):
        model(counts, inputs + 3)
    with pytest.raises(ValueError, match="constant in time"):
        bad = inputs.clone()
        bad[0, 3] = 1.0
        model(counts, bad)
    with pytest.raises(ValueError, match="padding"):
        padded = counts.clone()
        padded[0, 0, 4] = 1.0  # session 0 records 3 neurons
        guide(padded, inputs)
    with pytest.raises(ValueError, match="5 columns"):
        model(counts[..., :4], inputs)
    with pytest.raises(TypeError, match="list of each session"):
        StitchedLFADS(5, **SIZES)
    with pytest.raises(ValueError, match=r"n_neurons\[1\]"):
        StitchedLFADS([3, 0], **SIZES)
    with pytest.raises(TypeError, match="ext_dim"):
        StitchedLFADS([3, 4], ext_dim=1, **SIZES)
    with pytest.raises(TypeError, match="StitchedLFADS"):
        StitchedEncoder(LFADS(3, **SIZES))
    with pytest.raises(TypeError, match="input_dim"):
        StitchedEncoder(model, input_dim=3)
    with pytest.raises(ValueError, match="3 sessions"):
        model.init_pcr(list(sessions())[:2])
    with pytest.raises(ValueError, match="share no condition"):
        data = sessions()
        data[1].conditions = data[1].conditions + 5
        model.init_pcr(data)
    assert isinstance(guide.core, LFADSEncoder)

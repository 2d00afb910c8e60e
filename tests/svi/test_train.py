import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_circuits.datasets import lorenz
from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.handlers import scale_latents
from pyro_circuits.models import LFADS
from pyro_circuits.svi import Callback, SVIFit, partial_elbo_loss, train, trained_parameters
from pyro_circuits.threads import torch_threads


@pytest.fixture(scope="module")
def data():
    return lorenz(n_conditions=6, n_trials=6, n_neurons=8, n_bins=20, base_rate=20.0, seed=1)


def train_validated(model, guide, data, **options):
    """``train`` on the fixture's training trials, validated on its validation trials."""
    return train(
        model, guide, data.train.counts, valid_counts=data.valid.counts, progress=False, **options
    )


def build(co_dim=0, seed=0):
    torch.manual_seed(seed)
    model = LFADS(8, ic_dim=4, gen_dim=12, fac_dim=3, co_dim=co_dim)
    return model, LFADSEncoder(model, enc_dim=8, ci_dim=4, con_dim=4)


def test_elbo_decreases_on_a_tiny_dataset(data):
    model, guide = build()
    model.init_readout(data.train.counts)
    fit = train_validated(model, guide, data, max_epochs=25, batch_size=10, lr=2e-2, seed=0)
    valid = [h["valid_loss"] for h in fit.history]
    assert min(valid[-5:]) < valid[0] - 0.05 * abs(valid[0])
    running_minima = [v < min(valid[:i], default=float("inf")) for i, v in enumerate(valid)]
    assert [h["best"] for h in fit.history] == running_minima  # no warm-up: every epoch counts


def test_same_seed_same_fit(data):
    histories = []
    for _ in range(2):
        model, guide = build(co_dim=1)
        fit = train(
            model,
            guide,
            data.train.counts,
            max_epochs=2,
            batch_size=10,
            cd_rate=0.3,
            kl_warmup=5,
            l2_scale=1.0,
            progress=False,
            seed=3,
        )
        histories.append([h["loss"] for h in fit.history])
    assert histories[0] == histories[1]


def test_checkpoint_resume_continues_from_the_saved_step(data, tmp_path):
    kwargs = dict(batch_size=10, cd_rate=0.2, kl_warmup=4, progress=False, seed=2)
    model, guide = build(co_dim=1)
    straight = train(model, guide, data.train.counts, max_epochs=4, **kwargs)

    path = tmp_path / "fit.ckpt"
    model, guide = build(co_dim=1)
    first = train(model, guide, data.train.counts, max_epochs=2, checkpoint=path, **kwargs)
    assert first.history[-1]["step"] == 2 * 3  # 29 training trials / 10 per batch
    model, guide = build(co_dim=1, seed=99)  # fresh weights: everything comes from the checkpoint
    resumed = train(model, guide, data.train.counts, max_epochs=4, checkpoint=path, **kwargs)
    assert [h["step"] for h in resumed.history] == [3, 6, 9, 12]
    assert resumed.history[:2] == first.history
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_early_stopping_and_time_budget(data):
    model, guide = build()
    fit = train_validated(model, guide, data, max_epochs=50, batch_size=30, lr=1.0, patience=2)
    assert len(fit.history) < 50
    model, guide = build()
    fit = train(model, guide, data.train.counts, max_epochs=50, max_time=0.0, progress=False)
    assert len(fit.history) == 1


def test_average_decay_keeps_a_moving_average_without_changing_the_training(data, tmp_path):
    kwargs = dict(max_epochs=3, batch_size=10, kl_warmup=4, progress=False, seed=1)
    model, guide = build(co_dim=1)
    plain = train(model, guide, data.train.counts, **kwargs)
    with pytest.raises(ValueError, match="average_decay"):
        plain.averaged()

    model, guide = build(co_dim=1)
    seen = []  # the parameters after each step, read when the next step's guide starts
    snapshot = lambda: {  # noqa: E731
        f"{part}.{k}": v.clone()
        for part, m in (("m", model), ("g", guide))
        for k, v in m.state_dict().items()
    }
    hook = guide.register_forward_pre_hook(
        lambda m, a: seen.append(snapshot()) if m.training else None
    )
    path = tmp_path / "fit.ckpt"
    fit = train(model, guide, data.train.counts, average_decay=0.8, checkpoint=path, **kwargs)
    assert [h["loss"] for h in fit.history] == [h["loss"] for h in plain.history]

    last = torch.load(path, weights_only=False)  # the live parameters after the last step
    after_step = seen[1:] + [
        {f"m.{k}": v for k, v in last["model"].items()}
        | {f"g.{k}": v for k, v in last["guide"].items()}
    ]
    assert len(after_step) == 9  # 29 trials in batches of 10, three epochs
    expected = dict(after_step[3])  # averaging starts after step 4, the warm-up's end
    for params in after_step[4:]:  # integer buffers (index sets) are constants
        expected = {
            k: 0.8 * v + 0.2 * params[k] if v.is_floating_point() else v
            for k, v in expected.items()
        }
    averaged = fit.averaged()
    got = {f"m.{k}": v for k, v in averaged.model.state_dict().items()} | {
        f"g.{k}": v for k, v in averaged.guide.state_dict().items()
    }
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, msg=key)
    assert not torch.equal(got["m.readout.weight"], fit.model.state_dict()["readout.weight"])
    rates = averaged.posterior_mean(data.valid.counts, num_samples=2)["rates"]
    assert torch.isfinite(rates).all()
    hook.remove()  # a saved fit pickles its modules, hooks included: a lambda does not pickle
    fit.save(tmp_path / "fit.pt")
    loaded = SVIFit.load(tmp_path / "fit.pt").averaged()
    torch.testing.assert_close(loaded.model.state_dict(), averaged.model.state_dict())


def test_a_resumed_fit_keeps_its_moving_average(data, tmp_path):
    kwargs = dict(batch_size=10, kl_warmup=4, average_decay=0.7, progress=False, seed=2)
    model, guide = build()
    straight = train(model, guide, data.train.counts, max_epochs=4, **kwargs)
    path = tmp_path / "fit.ckpt"
    model, guide = build()
    train(model, guide, data.train.counts, max_epochs=2, checkpoint=path, **kwargs)
    model, guide = build(seed=99)
    resumed = train(model, guide, data.train.counts, max_epochs=4, checkpoint=path, **kwargs)
    for a, b in zip(resumed.averaged_state, straight.averaged_state, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def poison_after(model, steps):
    """Make ``model`` overflow from its ``steps + 1``-th training call on, as a diverging fit."""
    seen = []

    def hook(module, args):
        seen.extend([None] if module.training else [])
        if len(seen) > steps:
            with torch.no_grad():
                module.readout.bias.fill_(1e6)  # rates exp(1e6) = inf

    model.register_forward_pre_hook(hook)


def test_divergence_stops_training_and_keeps_the_best_epoch(data):
    model, guide = build()
    poison_after(model, 9)  # 30 trials in batches of 10: the first batch of epoch 3 diverges
    with pytest.warns(UserWarning, match=r"diverged at step 9 \(epoch 3\)") as warned:
        fit = train_validated(model, guide, data, max_epochs=10, batch_size=10)
    assert fit.diverged.startswith("diverged at step 9 (epoch 3)")
    assert [h["epoch"] for h in fit.history] == [0, 1, 2]
    best = max(h["epoch"] for h in fit.history if h["best"])
    (ours,) = [str(w.message) for w in warned if "diverged" in str(w.message)]
    assert ours.endswith(f"the parameters of epoch {best} are kept")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.readout.bias.abs().max() < 1e3  # the best epoch's parameters, not the poison


def test_divergence_before_any_epoch_is_kept_raises(data):
    model, guide = build()
    poison_after(model, 6)
    with pytest.raises(RuntimeError, match="step 6 .*before the 1000-step warm-up ended"):
        train_validated(model, guide, data, max_epochs=10, batch_size=10, kl_warmup=1000)


def test_partial_elbo_loss_splits_the_elbo_by_site(data):
    model, guide = build(co_dim=1)
    counts = data.train.counts[:7]
    args = (model, guide)
    kwargs = dict(n_trials=29)  # a subsampled batch: every site carries the plate's scale

    def seeded(loss_fn, *extra):
        pyro.set_rng_seed(5)
        return loss_fn(*args, *extra, counts, None, **kwargs)

    elbo = seeded(pyro.infer.Trace_ELBO().differentiable_loss)
    deep = seeded(partial_elbo_loss, ["ic", "co"])
    observed = seeded(partial_elbo_loss, ["counts"])
    torch.testing.assert_close(deep + observed, elbo)
    with pytest.raises(ValueError, match="'absent'.*not sample sites"):  # issue 46: not a 0 loss
        seeded(partial_elbo_loss, ["counts", "absent"])
    assert deep > 0 and observed > 0  # a KL (one draw of it, here positive) and a -log-likelihood


def test_valid_sites_monitor_part_of_the_validation_elbo(data):
    def validation_losses(sites):
        fit = train_validated(*build(), data, valid_sites=sites, max_epochs=2, batch_size=10)
        return [h["valid_loss"] for h in fit.history]

    full, observed = validation_losses(None), validation_losses(["counts"])
    assert all(0 < o < f for o, f in zip(observed, full, strict=True))  # the KL is left out


def test_progress_bar_counts_seconds_under_a_time_budget(data, capsys):
    model, guide = build()
    train(model, guide, data.train.counts, max_epochs=10_000, batch_size=30, max_time=2.0)
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "100%" in bar and "2/2 s" in bar  # not an ETA for 10,000 epochs


def test_scale_latents_leaves_observations_alone():
    def program():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    with scale_latents(0.25):
        trace = poutine.trace(program).get_trace()
    assert trace.nodes["z"]["scale"] == 0.25 and trace.nodes["x"]["scale"] == 1.0


def test_scale_latents_only_and_exclude_select_sites():
    def program():
        pyro.sample("ic", dist.Normal(0.0, 1.0))
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with scale_latents(0.5, exclude=["ic"]), scale_latents(0.1, only=["ic"]):
        trace = poutine.trace(program).get_trace()
    assert trace.nodes["ic"]["scale"] == 0.1 and trace.nodes["z"]["scale"] == 0.5


def test_posterior_summaries_and_inference_data(data, tmp_path):
    model, guide = build(co_dim=1)
    fit = train(model, guide, data.train.counts, max_epochs=1, batch_size=10, progress=False)
    x = data.valid.counts
    means = fit.posterior_mean(x, num_samples=4, batch_size=3)
    assert means["rates"].shape == x.shape and means["co"].shape == (len(x), 20, 1)
    draws = fit.sample(x, num_samples=3)
    assert draws["counts"].shape == (3, *x.shape) and draws["factors"].shape == (3, len(x), 20, 3)
    idata = fit.to_inference_data(x, num_samples=5)
    assert idata.posterior["rates"].dims == ("chain", "draw", "trial", "time", "neuron")
    assert idata.posterior_predictive["counts"].shape == (1, 5, *x.shape)
    assert idata.log_likelihood["counts"].shape == (1, 5, len(x))  # one value per trial
    assert az.loo(idata).elpd_loo < 0
    fit.save(tmp_path / "fit.pt")
    loaded = SVIFit.load(tmp_path / "fit.pt")
    torch.testing.assert_close(
        loaded.posterior_mean(x, num_samples=4)["rates"],
        fit.posterior_mean(x, num_samples=4)["rates"],
    )


def test_push_mean_reads_the_guide_s_means_without_noise(data):
    model, guide = build(co_dim=1)
    fit = train(model, guide, data.train.counts, max_epochs=1, batch_size=10, progress=False)
    x = data.valid.counts
    pushed = fit.posterior_mean(x, push_mean=True, seed=0)
    again = fit.posterior_mean(x, push_mean=True, seed=1, batch_size=3)
    for name in ("ic", "co", "rates"):
        torch.testing.assert_close(pushed[name], again[name])
    draws = fit.sample(x, num_samples=4000, seed=2)
    standard_error = draws["ic"].std(0) / 4000**0.5
    assert ((pushed["ic"] - draws["ic"].mean(0)).abs() < 4 * standard_error).all()
    # The rates are a nonlinear function of the draws: their average is not the pushed mean.
    assert not torch.allclose(pushed["rates"], draws["rates"].mean(0), atol=1e-3)


def test_adam_options_reach_the_optimizer(data, tmp_path):
    path = tmp_path / "fit.ckpt"
    model, guide = build()
    options = dict(adam_betas=(0.8, 0.99), adam_eps=0.1)
    train(model, guide, data.train.counts, max_epochs=1, checkpoint=path, progress=False, **options)
    group = torch.load(path, weights_only=False)["optimizer"]["param_groups"][0]
    assert (tuple(group["betas"]), group["eps"]) == ((0.8, 0.99), 0.1)


def test_trained_parameters_index_the_checkpoints_optimizer_state(data, tmp_path):
    path, lr = tmp_path / "fit.ckpt", 1e-2
    model, guide = build()
    before = [p.detach().clone() for p in trained_parameters(model, guide)]
    n_trials = len(data.train.counts)
    train(model, guide, data.train.counts, max_epochs=1, batch_size=n_trials, lr=lr,
          checkpoint=path, progress=False)  # fmt: skip
    state = torch.load(path, weights_only=False)["optimizer"]["state"]
    assert len(state) > len(before) / 2
    # One Adam step: each parameter moved by -lr·m̂/(√v̂ + ε), read from its own state; those
    # without a gradient (unused at co_dim 0) have no state and did not move.
    for i, (old, new) in enumerate(zip(before, trained_parameters(model, guide), strict=True)):
        if i not in state:
            torch.testing.assert_close(new.detach(), old)
            continue
        m_hat, v_hat = state[i]["exp_avg"] / 0.1, state[i]["exp_avg_sq"] / 1e-3
        torch.testing.assert_close(new.detach() - old, -lr * m_hat / (v_hat.sqrt() + 1e-8))


class Threads(Callback):
    """Records torch's intra-op thread count at every optimiser step."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, loop, loss):
        self.seen.append(torch.get_num_threads())


def test_threads_hold_for_the_training_and_are_restored(data):
    counts = data.train.counts
    with torch_threads(3):  # a count no default gives
        given, default = Threads(), Threads()
        train(*build(), counts, max_epochs=1, batch_size=10, threads=1, callbacks=[given],
              progress=False)  # fmt: skip
        assert torch.get_num_threads() == 3
        train(*build(), counts, max_epochs=1, batch_size=10, callbacks=[default], progress=False)
        assert (set(given.seen), set(default.seen)) == ({1}, {3})  # default: torch's setting
        with pytest.raises(ValueError, match="threads"):
            train(*build(), counts, threads=0, progress=False)
        assert torch.get_num_threads() == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(cd_rate=1.0), "cd_rate"),
        (dict(lr=-1.0), "lr"),
        (dict(valid_counts=torch.zeros(3, 4)), "valid_counts"),
        (dict(valid_sites=["ic"]), "valid_sites needs valid_counts"),
        (dict(adam_betas=(0.9, 1.0)), "Adam needs"),
        (dict(adam_eps=0.0), "Adam needs"),
        (dict(average_decay=1.0), "average_decay"),
    ],
)
def test_bad_arguments_are_rejected(data, kwargs, message):
    model, guide = build()
    with pytest.raises(ValueError, match=message):
        train(model, guide, data.train.counts, progress=False, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_summaries_on_cuda(data):
    model, guide = build(co_dim=1)
    fit = train(
        model, guide, data.train.counts, max_epochs=1, batch_size=10, progress=False, device="cuda"
    )
    assert next(model.parameters()).is_cuda
    assert fit.posterior_mean(data.valid.counts, num_samples=2)["rates"].is_cuda

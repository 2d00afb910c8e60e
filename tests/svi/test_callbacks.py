import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.nn import PyroModule, PyroParam

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import (
    Callback,
    EarlyStopping,
    KLWarmup,
    L2Penalty,
    Staged,
    TimeLimit,
    refine,
    train,
)
from pyro_circuits.svi.elbo import recurrent_l2
from pyro_circuits.svi.schedules import ramp


def fake_loop(**fields):
    """The parts of a Loop that a hook reads."""
    modules = dict(model=torch.nn.Linear(2, 2), guide=torch.nn.Linear(2, 1))
    return SimpleNamespace(
        **{"state": {}, "steps": 0, "burn_in": 0, "diverged": None, **modules, **fields}
    )


def lfads():
    model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
    return model, LFADSEncoder(model, enc_dim=4)


COUNTS = torch.poisson(torch.ones(8, 10, 3), generator=torch.Generator().manual_seed(0))


def test_early_stopping_keeps_the_best_epoch_past_the_warm_up_and_counts_stale_ones():
    loop = fake_loop(burn_in=2)
    hook = EarlyStopping(patience=2)
    hook.on_train_begin(loop)
    records = []
    for steps, monitored in [(1, 0.5), (2, 3.0), (3, 2.0), (4, 2.5), (5, 2.1)]:
        loop.steps = steps
        records.append({})
        stop = hook.on_epoch_end(loop, records[-1], monitored)
    assert [r["best"] for r in records] == [False, True, True, False, False]  # 0.5: warming up
    assert stop and loop.state["stale"] == 2 and loop.state["best"] == 2.0
    with torch.no_grad():
        loop.model.weight.fill_(7.0)
    hook.on_train_end(loop, None)
    assert not (loop.model.weight == 7.0).any()  # the best epoch's parameters are back


def test_early_stopping_raises_when_training_diverged_before_any_epoch_was_kept():
    loop = fake_loop(burn_in=10, diverged="diverged at step 3 (epoch 1): the loss is nan")
    hook = EarlyStopping()
    hook.on_train_begin(loop)
    with pytest.raises(RuntimeError, match="step 3 .*before the 10-step warm-up ended"):
        hook.on_train_end(loop, None)


def test_time_limit_stops_once_the_budget_is_spent():
    hook = TimeLimit(2.0)
    assert not hook.on_epoch_end(fake_loop(state={"elapsed": 1.9}), {}, 0.0)
    assert hook.on_epoch_end(fake_loop(state={"elapsed": 2.0}), {}, 0.0)


def program():
    pyro.sample("ic", dist.Normal(0.0, 1.0))
    pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))


def test_kl_warm_up_and_staged_scale_their_own_sites():
    staged = Staged(hold=2, ramp=3, sites=("ic",))
    loop = fake_loop(steps=3)
    with KLWarmup(4, exclude=staged.sites).scaling(loop), staged.scaling(loop):
        trace = poutine.trace(program).get_trace()
    assert trace.nodes["z"]["scale"] == ramp(3, 4) == 0.8
    assert trace.nodes["ic"]["scale"] == staged.deep_scale(3) == 0.5
    assert trace.nodes["x"]["scale"] == 1.0
    assert KLWarmup(4).warmup == 4 and staged.warmup == 5


def test_l2_penalty_follows_its_warm_up_or_the_given_schedule():
    gru = torch.nn.GRU(2, 3)
    loop = fake_loop(model=gru, guide=torch.nn.Linear(1, 1), steps=1)
    l2 = recurrent_l2([gru])
    torch.testing.assert_close(L2Penalty(2.0, warmup=3).penalty(loop), 2.0 * 0.5 * l2)
    staged = Staged(hold=1, ramp=1)
    penalty = L2Penalty(2.0, warmup=3, schedule=staged.deep_scale).penalty(loop)
    torch.testing.assert_close(penalty, 2.0 * 0.5 * l2)
    loop.steps = 2
    torch.testing.assert_close(L2Penalty(2.0, schedule=staged.deep_scale).penalty(loop), 2.0 * l2)


def test_staged_looks_up_and_holds_the_deep_parameters_in_stage_one():
    model, guide = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model.deep_parameters = lambda: [model.weight]
    guide.deep_parameters = lambda: [guide.bias]
    staged = Staged(hold=1, ramp=1)
    loop = fake_loop(model=model, guide=guide)
    staged.on_train_begin(loop)
    for p in (*model.parameters(), *guide.parameters()):
        p.grad = torch.ones_like(p)
    staged.on_backward(loop)
    assert model.weight.grad is None and guide.bias.grad is None
    assert model.bias.grad is not None and guide.weight.grad is not None
    loop.steps = 1
    model.weight.grad = torch.ones_like(model.weight)
    staged.on_backward(loop)
    assert model.weight.grad is not None
    with pytest.raises(TypeError, match="Linear.deep_parameters"):
        staged.on_train_begin(fake_loop())


def test_hooks_begin_in_order_end_in_reverse_and_can_stop_training():
    calls = []

    class Named(Callback):
        def __init__(self, name, stop_after=None):
            self.name, self.stop_after = name, stop_after

        def on_train_begin(self, loop):
            calls.append(("begin", self.name))

        def on_epoch_end(self, loop, record, monitored):
            return self.stop_after is not None and record["epoch"] + 1 >= self.stop_after

        def on_train_end(self, loop, fit):
            calls.append(("end", self.name, len(fit.history)))

    fit = train(*lfads(), COUNTS, max_epochs=10, batch_size=4, progress=False,
                callbacks=[Named("a"), Named("b", stop_after=3)])  # fmt: skip
    assert len(fit.history) == 3
    assert calls == [("begin", "a"), ("begin", "b"), ("end", "b", 3), ("end", "a", 3)]


class PlainModel(PyroModule):
    """A user's PyroModule, which does not scope module_local_params itself."""

    def __init__(self) -> None:
        super().__init__()
        self.log_rate = PyroParam(torch.zeros(3))

    def forward(self, counts, inputs=None, *, n_trials=None):
        subsample = torch.arange(len(counts))
        with pyro.plate("trials", n_trials or len(counts), subsample=subsample, dim=-1):
            gain = pyro.sample("gain", dist.Normal(0.0, 1.0))
            rates = (self.log_rate + gain[..., None, None]).exp()
            pyro.sample("counts", dist.Poisson(rates).to_event(2), obs=counts)


class PlainGuide(PyroModule):
    def __init__(self) -> None:
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.0))

    def forward(self, counts, inputs=None, *, n_trials=None):
        subsample = torch.arange(len(counts))
        with pyro.plate("trials", n_trials or len(counts), subsample=subsample, dim=-1):
            pyro.sample("gain", dist.Normal(self.loc, 1.0))


@pytest.mark.parametrize("setting", [False, True])
def test_train_and_refine_scope_module_local_params_and_restore_it(setting):
    seen = []

    class Setting(Callback):
        def on_step_end(self, loop, loss):
            seen.append(pyro.settings.get("module_local_params"))

    pyro.clear_param_store()
    with pyro.settings.context(module_local_params=setting):
        fit = train(PlainModel(), PlainGuide(), COUNTS, max_epochs=2, batch_size=4, lr=0.1,
                    callbacks=[Setting()], progress=False)  # fmt: skip
        assert pyro.settings.get("module_local_params") is setting
        refined = refine(fit, COUNTS, steps=3, progress=False)
        assert pyro.settings.get("module_local_params") is setting
    assert seen == [True] * 4
    assert len(pyro.get_param_store()) == 0  # the parameters stayed the modules' own
    assert fit.model.log_rate_unconstrained.abs().sum() > 0
    assert not torch.equal(refined.guide.loc, fit.guide.loc)


def test_a_failed_train_restores_module_local_params():
    before = pyro.settings.get("module_local_params")
    with pytest.raises(TypeError, match="deep_parameters"):
        train(*lfads(), COUNTS, staged=Staged(), progress=False)
    assert pyro.settings.get("module_local_params") is before
    assert math.isfinite(ramp(0, 0))

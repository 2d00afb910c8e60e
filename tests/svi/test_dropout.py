import pyro
import pytest
import torch

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.svi import CoordinatedDropout, train
from pyro_circuits.svi.callbacks import Callback


def test_the_mask_is_one_rand_like_draw_scaled_to_keep_the_mean():
    counts = torch.ones(50, 20, 10)
    pyro.set_rng_seed(4)
    mask = CoordinatedDropout(0.3).mask(counts)
    pyro.set_rng_seed(4)
    expected = (torch.rand_like(counts) >= 0.3) / 0.7
    assert torch.equal(mask, expected)
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert (mask == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_the_rate_must_drop_something_and_keep_something(rate):
    with pytest.raises(ValueError, match="rate"):
        CoordinatedDropout(rate)


class Recording(LFADS):
    """LFADS that records the keyword arguments of its training and validation calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def forward(self, counts, inputs=None, *, n_trials=None, mask=None):
        self.calls.append(("model", self.training, counts.shape, mask))
        return super().forward(counts, inputs, n_trials=n_trials, cd_mask=mask)


class RecordingEncoder(LFADSEncoder):
    def forward(self, counts, inputs=None, *, n_trials=None, mask=None):
        self.model.calls.append(("guide", self.training, counts.shape, mask))
        return super().forward(counts, inputs, n_trials=n_trials, cd_mask=mask)


def test_the_dropout_object_owns_its_keyword_and_train_passes_it_only_while_training():
    model = Recording(3, ic_dim=2, gen_dim=4, fac_dim=2)
    guide = RecordingEncoder(model, enc_dim=4)
    counts = torch.poisson(torch.ones(8, 10, 3))
    dropout = CoordinatedDropout(0.5, keyword="mask")
    train(model, guide, counts, valid_counts=counts[:3], batch_size=4, max_epochs=1,
          callbacks=[dropout], progress=False)  # fmt: skip
    training = [call for call in model.calls if call[1]]
    validation = [call for call in model.calls if not call[1]]
    assert [call[0] for call in training] == ["guide", "model"] * 2  # two steps
    for guide_call, model_call in zip(training[::2], training[1::2], strict=True):
        guide_mask, model_mask, shape = guide_call[3], model_call[3], guide_call[2]
        assert guide_mask is model_mask and guide_mask.shape == shape
        assert set(guide_mask.unique().tolist()) <= {0.0, 2.0}
    assert validation and all(call[3] is None for call in validation)


def test_train_passes_no_mask_without_a_dropout_rate():
    seen = []

    class Keywords(Callback):
        def on_train_begin(self, loop):
            seen.append([hook for hook in loop.hooks if isinstance(hook, CoordinatedDropout)])

    model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
    guide = LFADSEncoder(model, enc_dim=4)
    counts = torch.poisson(torch.ones(8, 10, 3))
    train(model, guide, counts, max_epochs=1, callbacks=[Keywords()], progress=False)
    train(model, guide, counts, max_epochs=1, cd_rate=0.2, callbacks=[Keywords()], progress=False)
    assert seen[0] == [] and [(h.rate, h.keyword) for h in seen[1]] == [(0.2, "cd_mask")]

"""The shipped Allen Brain Observatory optotagging session and the perturbation baselines."""

from importlib import resources

import numpy as np
import pytest
import torch

from pyro_circuits.baselines.opto import light_glm, perturbation_scores, sham_psth
from pyro_circuits.datasets import allen_opto_split, allen_pv_opto, allen_pv_opto_trials


@pytest.fixture(scope="module")
def data():
    return allen_pv_opto()


def test_the_session_and_its_attribution_ship_with_the_package():
    folder = resources.files("pyro_circuits.datasets") / "data/allen_pv_opto"
    readme = (folder / "README.md").read_text()
    assert "CC-BY-4.0" in readme and "Siegle" in readme
    assert (folder / "session_829720705.npz").is_file()


def test_counts_light_and_metadata(data):
    trials = allen_pv_opto_trials()
    assert data.counts.shape == (442, 150, 371) and data.dt == 0.01
    assert data.inputs.shape == (442, 150, 1)
    sham = data.conditions == 0
    assert int(sham.sum()) == 142 and (trials["kind"][sham.numpy()] == "sham").all()
    assert (data.inputs[sham] == 0).all() and (data.inputs[~sham].amax((1, 2)) > 0).all()
    assert (data.inputs[:, :50] == 0).all()  # light onset at bin 50
    assert torch.bincount(data.conditions).tolist() == [142] + [25] * 12
    # the light level of every light trial is its command's peak
    peak = data.inputs[~sham].amax((1, 2)).numpy()
    np.testing.assert_allclose(peak, trials["level"][~sham.numpy()], atol=1e-5)
    # about 5.9 Hz on average, as the README says
    assert 5.0 < data.counts.mean().item() / data.dt < 7.0


@pytest.mark.parametrize("split, stimuli, levels", [
    ("heldout_level", {"pulse", "fast_pulses", "raised_cosine"}, {2.0}),
    ("heldout_waveform", {"raised_cosine"}, {1.3, 1.7, 2.0}),
])  # fmt: skip
def test_splits_hold_out_whole_conditions(split, stimuli, levels):
    trials = allen_pv_opto_trials()
    train, test = allen_opto_split(split)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 442
    assert set(trials["stimulus_name"][test]) == stimuli
    assert set(trials["level"][test].tolist()) == levels
    assert (trials["kind"][test] == "opto").all()
    assert (trials["kind"][train] == "sham").sum() == 142
    assert not set(trials["label"][test]) & set(trials["label"][train])
    with pytest.raises(ValueError, match="split must be one of"):
        allen_opto_split("heldout_unit")


def test_glm_learns_a_light_effect_and_scores_it():
    """Synthetic: unit 0 fires 4× during the light, unit 1 ignores it; the GLM fitted on two
    levels predicts a third, beating the sham PSTH, and only unit 0 is significant."""
    g = torch.Generator().manual_seed(0)
    light = torch.zeros(90, 40)
    level = torch.tensor([0.0, 1.0, 2.0]).repeat_interleave(30)
    light[:, 10:30] = level[:, None]
    truth = torch.full((90, 40, 2), 5.0)
    truth[..., 0] *= torch.exp(0.7 * light)
    counts = torch.poisson(truth * 0.01, generator=g)
    train = level < 2
    glm = light_glm(counts[train], light[train], level[train] == 0, 0.01, n_basis=4, span=8)
    test = ~train
    sham_counts = counts[level == 0]
    sham = sham_psth(sham_counts, 0.01)
    no_light = glm.predict(torch.zeros(1, 40))[0]
    scores = perturbation_scores(glm.predict(light[test]), counts[test], torch.zeros(30),
                                 sham, sham_counts, no_light, 0.01)  # fmt: skip
    assert scores["significant"] == [0]
    assert scores["bits_per_spike"] > 0.05 and scores["evoked_r2"] > 0.3
    null = perturbation_scores(sham.expand(30, -1, -1), counts[test], torch.zeros(30), sham,
                               sham_counts, sham, 0.01)  # fmt: skip
    assert null["bits_per_spike"] == 0.0 and null["evoked_r2"] < 0.0


def test_bad_glm_arguments():
    counts = torch.zeros(4, 10, 2)
    with pytest.raises(ValueError, match="light must be"):
        light_glm(counts, torch.zeros(4, 9), torch.ones(4, dtype=torch.bool), 0.01)
    with pytest.raises(ValueError, match="sham must be"):
        light_glm(counts, torch.zeros(4, 10), torch.zeros(4, dtype=torch.bool), 0.01)

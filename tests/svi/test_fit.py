import pytest
import torch

from pyro_circuits.guides import LFADSEncoder
from pyro_circuits.models import LFADS
from pyro_circuits.results import TrialPosterior
from pyro_circuits.svi import SVIFit, train


def test_a_fit_is_a_trial_posterior_that_saves_and_loads_whole(tmp_path):
    counts = torch.poisson(torch.ones(8, 10, 3))
    model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, co_dim=1)
    fit = train(model, LFADSEncoder(model, enc_dim=4), counts, max_epochs=2, batch_size=4,
                average_decay=0.5, progress=False)  # fmt: skip
    assert isinstance(fit, TrialPosterior)
    path = fit.save(tmp_path / "fits" / "fit.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["fit.pt"]  # no partial file left
    loaded = SVIFit.load(path)
    assert loaded.guide.model is loaded.model  # the guide still shares the model
    assert loaded.history == fit.history and loaded.best_epoch == fit.best_epoch
    means = loaded.posterior_mean(counts, num_samples=3, seed=2)
    torch.testing.assert_close(means, fit.posterior_mean(counts, num_samples=3, seed=2))
    torch.testing.assert_close(loaded.averaged().model.state_dict(), fit.averaged_state[0])
    torch.save({"model": model.state_dict()}, tmp_path / "state.pt")
    with pytest.raises(TypeError, match="not a SVIFit"):
        SVIFit.load(tmp_path / "state.pt")

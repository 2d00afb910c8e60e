"""Importing the package has no process-wide effect, even under pytest; its public names are where
users look."""

import subprocess
import sys
from pathlib import Path

IMPORT_CHANGES_NOTHING = """
import pyro, torch
from pyro.nn import PyroModule, PyroParam

before = pyro.settings.get()
import pyro_circuits
assert pyro.settings.get() == before, (before, pyro.settings.get())

class Scale(PyroModule):  # a user's own module keeps using the global param store
    def __init__(self):
        super().__init__()
        self.s = PyroParam(torch.tensor(2.0))
    def forward(self):
        return self.s

Scale()()
assert "s" in pyro.get_param_store(), list(pyro.get_param_store())
"""


def test_importing_the_package_leaves_pyro_settings_and_the_param_store_alone():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHANGES_NOTHING], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_package_module_keeps_its_parameters_without_touching_the_setting():
    import pyro

    from pyro_circuits.models import LFADS

    pyro.clear_param_store()
    model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2)
    before = pyro.settings.get("module_local_params")
    pyro.set_rng_seed(0)
    model(pyro.distributions.Poisson(1.0).sample((2, 5, 3)))
    assert pyro.settings.get("module_local_params") == before
    assert len(pyro.get_param_store()) == 0


def test_seeded_modules_make_training_repeatable_in_one_process():
    """`train(seed=0)` twice gives the same losses once the modules are built from a seed."""
    import torch

    from pyro_circuits.guides import LFADSEncoder
    from pyro_circuits.models import LFADS
    from pyro_circuits.svi import train

    counts = torch.poisson(torch.ones(8, 10, 3))

    def losses():
        model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, seed=0)
        guide = LFADSEncoder(model, enc_dim=4, seed=1)
        fit = train(model, guide, counts, max_epochs=2, batch_size=4, seed=0, progress=False)
        return [record["loss"] for record in fit.history]

    state = torch.random.get_rng_state()
    first = losses()
    torch.manual_seed(123)  # whatever the global random state, the same fit
    assert losses() == first
    torch.random.set_rng_state(state)
    a, b = (LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2) for _ in range(2))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_a_targeted_doctest_run_imports_each_module_once():
    # Collected first, property.py must be the module the package imported, or the NPE doctest
    # sees two EmergentProperty classes (pytest's importlib import mode did that).
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "pyro_circuits/property.py", "pyro_circuits/sbi/npe.py"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]

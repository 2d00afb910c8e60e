"""Crashes (issue 46): a training process killed with SIGKILL in the middle of an epoch resumes
from its checkpoint to bit-identical parameters, and a process killed in the middle of a save
leaves the previous file intact (the stray temporary file is removed by the next save)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pyro_circuits.models import LDS2D
from pyro_circuits.results import Saved, stray_temporaries

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")

ROOT = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from pyro_circuits.guides import LFADSEncoder
    from pyro_circuits.models import LFADS
    from pyro_circuits.svi import Callback, train

    checkpoint, kill_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class KillAt(Callback):
        def on_step_end(self, loop, loss):
            if loop.steps == kill_at:  # in the middle of an epoch
                os.kill(os.getpid(), signal.SIGKILL)

        def settings(self):
            return None  # changes nothing of the training

    def fit(checkpoint, callbacks):
        torch.manual_seed(0)
        counts = torch.poisson(torch.ones(12, 10, 3), generator=torch.Generator().manual_seed(1))
        model = LFADS(3, ic_dim=2, gen_dim=4, fac_dim=2, co_dim=1)
        guide = LFADSEncoder(model, enc_dim=4, ci_dim=2, con_dim=2)
        fit = train(model, guide, counts, max_epochs=4, batch_size=4, cd_rate=0.2, kl_warmup=3,
                    checkpoint=checkpoint, callbacks=callbacks, progress=False, seed=5)
        return {"model": model.state_dict(), "guide": guide.state_dict(), "history": fit.history}

    if kill_at >= 0:  # killed mid-epoch: never returns
        fit(checkpoint, [KillAt()])
    else:  # resumed from the checkpoint, then an uninterrupted run in the same process
        torch.save({"resumed": fit(checkpoint, []), "straight": fit(None, [])}, out)
    """
)


def run(script: str, *args, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(path), *map(str, args)], env=env, capture_output=True, text=True
    )


@pytest.mark.slow  # three Python processes: about 11 s on the shared 2-core machine
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    checkpoint = tmp_path / "fit.ckpt"
    killed = run(TRAIN, checkpoint, 7, "-", tmp_path=tmp_path)  # epoch 2, step 2 of 3
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert torch.load(checkpoint, weights_only=False)["state"]["epoch"] == 2
    resumed = run(TRAIN, checkpoint, -1, tmp_path / "runs.pt", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    runs = torch.load(tmp_path / "runs.pt", weights_only=False)
    a, b = runs["straight"], runs["resumed"]
    for part in ("model", "guide"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert [h["step"] for h in b["history"]] == [3, 6, 9, 12]


SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from pyro_circuits.models import LDS2D
    from pyro_circuits.results import Saved

    class Box(Saved):
        def __init__(self, payload):
            self.model, self.payload = LDS2D(), payload

    class Bomb:
        def __reduce__(self):  # the pickler reaches it half-way through the file
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    Box([list(range(100_000)), Bomb()]).save(sys.argv[1])
    """
)


class Box(Saved):
    def __init__(self, payload):
        self.model, self.payload = LDS2D(), payload


def test_sigkill_during_a_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "result.pt"
    Box("the good result").save(path)
    before = path.read_bytes()
    killed = run(SAVE, path, tmp_path=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert path.read_bytes() == before
    assert stray_temporaries(path)  # the killed write's temporary file is still there
    assert Box.load(path).payload == "the good result"
    Box("the next result").save(path)
    assert not stray_temporaries(path)

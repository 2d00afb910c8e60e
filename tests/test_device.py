"""``device=`` on EPI, NPE and SMC-ABC: the checks, the CPU results unchanged by it, the model
run on the requested device, and results returned on the CPU (the CUDA runs where CUDA exists)."""

from collections import namedtuple

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_circuits import EmergentProperty, EPIConfig, FlowConfig, epi
from pyro_circuits.checks import on_device, to_device, torch_device
from pyro_circuits.cli import main
from pyro_circuits.compare import compare
from pyro_circuits.epi import EPIGuide
from pyro_circuits.results import InferenceResult
from pyro_circuits.sbi import NPE, SMCABC
from pyro_circuits.sbi.bridge import Simulator, sbi_prior, simulate
from pyro_circuits.sbi.npe import NoTracker, _posterior_on_cpu, estimator_builder
from pyro_circuits.sites import CircuitProgram
from pyro_circuits.space import ParameterSpace

TINY = EPIConfig(batch_size=32, epochs=1, iterations=3, test_batches=4, init_iterations=3)
FLOW = FlowConfig(units=8)
PROP = EmergentProperty(mean={"f": 0.5}, variance={"f": 0.2**2})
NPE_TINY = {"simulations": 100, "check_samples": 0, "train_kwargs": {"max_num_epochs": 2}}
SMC_TINY = {"simulations": 200, "particles": 20}
NO_CUDA = not torch.cuda.is_available()
Pair = namedtuple("Pair", "value name")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(NO_CUDA, reason="no CUDA here"))]


class Probe:
    """A two-parameter model (a vector site, so its prior's bounds are tensors) that records, on
    every call, the device of its parameter values and torch's default device."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        low, high = -torch.ones(2), torch.ones(2)
        w = pyro.sample("w", dist.Uniform(low, high).to_event(1))
        self.seen.add((w.device.type, torch.get_default_device().type))
        pyro.deterministic("f", w.sum(-1) + 0.1 * torch.randn(w.shape[:-1]))


#: Each method with its tiny budget, called as ``run(model, **keywords)``.
RUNS = {
    "epi": lambda model, **kw: epi(model, PROP, config=TINY, flow=FLOW, progress=False, **kw),
    "npe": lambda model, **kw: NPE(model, PROP, progress=False, **NPE_TINY, **kw),
    "smcabc": lambda model, **kw: SMCABC(model, PROP, progress=False, **SMC_TINY, **kw),
}


def test_torch_device_accepts_devices_and_names_the_argument():
    assert torch_device("device", "cpu") == torch.device("cpu")
    assert torch_device("device", torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must name a torch device"):
        torch_device("device", "gpu0")
    with pytest.raises(TypeError, match="device must be a device name"):
        torch_device("device", 0)
    with pytest.raises(ValueError, match="meta tensors hold no values"):
        torch_device("device", "meta")


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        torch_device("device", "cuda")


@pytest.mark.parametrize("method", sorted(RUNS))
@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu9", "device must name a torch device"), ("cuda", "CUDA is not available")],
)
def test_bad_device_fails_before_the_model_runs(method, device, message):
    """An unknown device, or CUDA where it is missing, stops the call before the model runs."""
    if device == "cuda" and not NO_CUDA:
        pytest.skip("CUDA is available here")
    probe = Probe()
    with pytest.raises(ValueError, match=message):
        RUNS[method](probe, device=device)
    assert probe.calls == 0


def test_compare_and_cli_check_the_device_first(tmp_path, capsys):
    probe = Probe()
    with pytest.raises(ValueError, match="device must name a torch device"):
        compare(probe, PROP, ["smcabc"], budget=200, device="tpu9", progress=False)
    assert probe.calls == 0
    out = tmp_path / "out"
    assert main(["epi", "lds2d", "--device", "tpu9", "--out", str(out), "--quiet"]) == 2
    assert "--device must name a torch device" in capsys.readouterr().err
    assert not out.exists()  # failed before the output folder was made


def _same(first: InferenceResult, second: InferenceResult) -> bool:
    a, b = first.sample(50, seed=3), second.sample(50, seed=3)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", sorted(RUNS))
def test_cpu_device_gives_bit_identical_results(method):
    """``device="cpu"`` and ``torch.device("cpu")`` change nothing: same draws for a seed."""
    run = RUNS[method]
    default = run(Probe())
    for device in ("cpu", torch.device("cpu")):
        result = run(Probe(), device=device)
        assert _same(default, result)
        if method == "epi":  # the same training, step by step
            columns = ["entropy", "R_norm2", "c"]
            assert default.history[columns].equals(result.history[columns])


@pytest.mark.parametrize("method", sorted(RUNS))
@pytest.mark.parametrize("device", DEVICES)
def test_the_model_runs_on_the_device_and_the_result_on_the_cpu(method, device, tmp_path):
    """The model's parameter values and torch's default device are ``device`` when it
    simulates; what the result gives back, and what it saves, is on the CPU."""
    probe = Probe()
    result = RUNS[method](probe, device=device)
    assert (device, device) in probe.seen
    draws = result.sample(20, seed=0)
    stats = result.predictive(20, seed=0)
    for value in [*draws.values(), *stats.values()]:
        assert value.device.type == "cpu" and bool(torch.isfinite(value).all())
    if method == "epi":  # the trained flow is back on the CPU
        assert {p.device.type for p in result.guide.parameters()} == {"cpu"}
    loaded = type(result).load(result.save(tmp_path / "result.pkl"))
    assert _same(result, loaded)
    assert "posterior" in result.to_inference_data(n=20, seed=0).groups()


def test_guide_to_device_resolves_the_model_again_and_keeps_the_flow():
    """``EPIGuide.to_device`` rebinds the guide to the model resolved on the device
    (``CircuitProgram.on``, the program itself on the CPU): the same draws and log q for a
    seed, and a program of other sites refused."""
    guide = EPIGuide(Probe(), flow=FLOW, seed=0)
    program = guide.program
    theta = guide.q.sample(5)
    expected = guide.log_prob(theta)
    moved = guide.to_device("cpu")
    assert moved is guide and guide.program is program
    assert guide.program.params == program.params and guide.q.space is guide.space
    assert torch.equal(guide.log_prob(theta), expected)
    with pytest.raises(ValueError, match="parameter sites"):
        guide.to_device("cpu", CircuitProgram(_probe_and_one_more))


def _probe_and_one_more() -> None:
    Probe()()
    pyro.sample("z", dist.Normal(0.0, 1.0))


def test_npe_posterior_rebuilt_on_the_cpu_matches_the_trained_one():
    """The CPU copy of a trained posterior (what a GPU run returns) has the trained density."""
    from sbi.inference import NPE_C

    program = CircuitProgram(Probe())
    prior = sbi_prior(ParameterSpace(program.priors))
    build = estimator_builder("zuko_maf", {"hidden_features": 8, "num_transforms": 1}, prior)
    torch.manual_seed(0)
    theta = prior.sample((100,))
    x = Simulator(program)(theta)
    inference = NPE_C(
        prior=prior, density_estimator=build, show_progress_bars=False, tracker=NoTracker()
    )
    trained = inference.append_simulations(theta, x).train(
        max_num_epochs=3, show_train_summary=False
    )
    original = inference.build_posterior(trained)
    # Other data for the fresh estimator: its z-scoring must come from the trained one too.
    copy = _posterior_on_cpu(inference, trained, build, prior, 2 * theta, x + 1)
    assert copy is not original and copy.posterior_estimator is not trained
    x0 = torch.tensor([[0.5]])
    points = prior.sample((20,))
    assert torch.allclose(copy.log_prob(points, x=x0), original.log_prob(points, x=x0))


def test_npe_support_map_follows_the_estimator_when_it_moves():
    """sbi moves NPE's default estimator to its device after building it on the CPU; the map
    onto the prior's support must move with it (sbi#1893, fixed in the installed sbi): here a
    move to float64 reaches the map's tensors as a move to a GPU would."""
    from sbi.utils.sbiutils import CallableTransform

    prior = sbi_prior(ParameterSpace(CircuitProgram(Probe()).priors))
    theta = prior.sample((50,))
    net = estimator_builder("zuko_maf", {"hidden_features": 8}, prior)(theta, theta.sum(-1, True))
    maps = [m._transform for m in net.modules() if isinstance(m, CallableTransform)]
    assert maps and {t.dtype for t in _tensors(maps)} == {torch.float32}
    net.to(torch.float64)
    assert {t.dtype for t in _tensors(maps)} == {torch.float64}


def _tensors(transforms, seen=None) -> list[torch.Tensor]:
    """The tensors held by a tree of torch transforms (parts, base and inverse transforms)."""
    seen = set() if seen is None else seen
    found = []
    for transform in transforms:
        if id(transform) in seen:
            continue
        seen.add(id(transform))
        for value in vars(transform).values():
            items = value if isinstance(value, list | tuple) else [value]
            found += [v for v in items if torch.is_tensor(v)]
            nested = [v for v in items if isinstance(v, torch.distributions.Transform)]
            found += _tensors(nested, seen)
    return found


def test_simulations_follow_the_simulator_device_and_come_back():
    program = CircuitProgram(Probe())
    assert program.on(torch.device("cpu")) is program
    simulator = Simulator(program, device="cpu")
    x = simulate(simulator, torch.zeros(6, 2), seed=0, chunk_size=4)
    assert x.shape == (6, 1) and x.device == torch.device("cpu")
    assert torch.equal(x, simulate(Simulator(program), torch.zeros(6, 2), seed=0, chunk_size=4))


def test_to_device_moves_tensors_and_copies_modules():
    module = torch.nn.Linear(2, 1)
    moved = to_device({"m": module, "t": (torch.ones(1), [2.0])}, torch.device("cpu"))
    assert moved["m"] is not module and torch.equal(moved["m"].weight, module.weight)
    assert isinstance(moved["t"], tuple) and moved["t"][1] == [2.0]
    pair = Pair(torch.ones(1), "label")
    assert to_device(pair, torch.device("cpu")) == pair
    with on_device(torch.device("cpu")):
        assert torch.zeros(1).device.type == "cpu"

"""The executor seam: the same simulations, NPE and SMC-ABC results, EPI seeds and comparison
whatever the executor (none, a process pool, Ray, Dask); dead workers and unpicklable models are
clear errors."""

import importlib.util
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_circuits.compare import compare
from pyro_circuits.epi import EPIConfig, epi
from pyro_circuits.models import LDS2D, Rank2RNN
from pyro_circuits.parallel import (
    RayExecutor,
    WorkerLost,
    check_executor,
    chunk_seed,
    parallel_map,
    require,
    seeded,
)
from pyro_circuits.sbi import NPE, SMCABC, Simulator
from pyro_circuits.sbi.bridge import simulate
from pyro_circuits.sites import CircuitProgram

PROP = LDS2D.oscillation()
# The simulation tests use a model with simulator noise: only there do seeds matter.
NOISY, NOISY_PROP = Rank2RNN(2, g=0.5), Rank2RNN.stable_amplification()
NPE_SETTINGS = {
    "simulations": 120,
    "rounds": 2,
    "simulation_batch_size": 25,
    "check_samples": 0,
    "train_kwargs": {"max_num_epochs": 2},
    "estimator_kwargs": {"hidden_features": 8, "num_transforms": 1},
    "progress": False,
}
SMC_SETTINGS = {"simulations": 400, "particles": 40, "simulation_batch_size": 30, "progress": False}
TINY_EPI = EPIConfig(batch_size=20, epochs=1, iterations=3, test_batches=4, init_iterations=3)
ENGINES = ["pool", "ray", "dask"]


def _fork():
    return multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(2, mp_context=_fork()) as executor:
        yield executor


@pytest.fixture(scope="module")
def ray_pool():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (extra pyro_circuits[ray])")
    with RayExecutor(num_cpus=2, include_dashboard=False, log_to_driver=False) as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_pool():
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("distributed is not installed (extra pyro_circuits[dask])")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client.get_executor()


@pytest.fixture(params=ENGINES)
def executor(request):
    return request.getfixturevalue(
        {"pool": "pool", "ray": "ray_pool", "dask": "dask_pool"}[request.param]
    )


@pytest.fixture(scope="module")
def simulator():
    return Simulator(CircuitProgram(NOISY))


@pytest.fixture(scope="module")
def inline_results():
    """The reference: every run in this process."""
    return {
        "npe": NPE(NOISY, NOISY_PROP, **NPE_SETTINGS),
        "smcabc": SMCABC(NOISY, NOISY_PROP, **SMC_SETTINGS),
    }


def test_chunks_are_simulated_under_their_own_seeds(simulator):
    theta = torch.rand(10, 8) * 2 - 1
    x = simulate(simulator, theta, seed=5, stream=(2,), chunk_size=4)
    # By definition: chunk i of stream (2,) under the seed drawn from (5, 2, i).
    parts = [
        seeded(simulator, chunk_seed(5, 2, i), chunk) for i, chunk in enumerate(theta.split(4))
    ]
    assert torch.equal(x, torch.cat(parts))
    # The noise differs between chunks and streams, and the caller's generator is untouched.
    state = torch.get_rng_state()
    same = theta[:1].expand(8, 8)
    x = simulate(simulator, same, seed=5, chunk_size=4)
    assert not torch.equal(x[:4], x[4:])
    assert not torch.equal(x, simulate(simulator, same, seed=5, stream=(1,), chunk_size=4))
    assert torch.equal(torch.get_rng_state(), state)


def test_chunk_seed_tells_a_trailing_zero_key_from_none():
    # NPE draws round r's θ under (seed, r) and simulates its first chunk under (seed, r, 0):
    # were those one seed, the simulator's noise would be drawn from θ's own random numbers.
    assert chunk_seed(0, 1) != chunk_seed(0, 1, 0) != chunk_seed(0, 1, 0, 0)
    assert chunk_seed(3) != chunk_seed(3, 0)
    uniform = seeded(torch.rand, chunk_seed(0, 1), 1000)
    normal = seeded(torch.randn, chunk_seed(0, 1, 0), 1000)
    assert abs(np.corrcoef(uniform, normal)[0, 1]) < 0.1


def test_simulations_are_identical_on_every_executor(executor, simulator):
    theta = torch.rand(70, 8) * 2 - 1
    expected = simulate(simulator, theta, seed=3, chunk_size=16)
    assert torch.equal(
        simulate(simulator, theta, seed=3, chunk_size=16, executor=executor), expected
    )


def test_npe_is_identical_on_every_executor(executor, inline_results):
    result = NPE(NOISY, NOISY_PROP, executor=executor, **NPE_SETTINGS)
    reference = inline_results["npe"]
    assert result.simulations == reference.simulations == 240
    for site, value in reference.sample(50, seed=1).items():
        assert torch.equal(result.sample(50, seed=1)[site], value), site


def test_smcabc_is_identical_on_every_executor(executor, inline_results):
    result = SMCABC(NOISY, NOISY_PROP, executor=executor, **SMC_SETTINGS)
    reference = inline_results["smcabc"]
    assert result.simulations == reference.simulations
    assert torch.equal(result.particles, reference.particles)
    assert torch.equal(result.log_weights, reference.log_weights)


def test_parallel_epi_seeds_match_the_sequential_runs(pool):
    sequential = epi(LDS2D(), PROP, config=TINY_EPI, seed=[0, 1], progress=False)
    parallel = epi(LDS2D(), PROP, config=TINY_EPI, seed=[0, 1], executor=pool, progress=False)
    assert parallel.seed == sequential.seed
    pd.testing.assert_frame_equal(parallel.restarts, sequential.restarts)
    for site, value in sequential.sample(20, seed=4).items():
        assert torch.equal(parallel.sample(20, seed=4)[site], value), site
    # A lone run with that seed is the selected one.
    alone = epi(LDS2D(), PROP, config=TINY_EPI, seed=parallel.seed, progress=False)
    assert torch.equal(alone.sample(20, seed=4)["a11"], parallel.sample(20, seed=4)["a11"])


def test_parallel_comparison_matches_the_sequential_one(pool):
    settings = {
        "methods": ["smcabc"],
        "budget": 300,
        "seeds": [0, 1],
        "draws": 80,
        "options": {"smcabc": {"particles": 30}},
        "progress": False,
    }
    table, idatas = compare(LDS2D(), PROP, **settings)
    parallel, parallel_idatas = compare(LDS2D(), PROP, executor=pool, **settings)
    timing = [c for c in table.columns if c.startswith("wall_time")]
    pd.testing.assert_frame_equal(parallel.drop(columns=timing), table.drop(columns=timing))
    assert list(parallel_idatas) == ["smcabc_seed0", "smcabc_seed1"]
    posterior = parallel_idatas["smcabc_seed1"].posterior
    assert posterior.equals(idatas["smcabc_seed1"].posterior)


class _ExitIn:
    """Kills its worker process on one item (a worker dying mid-run)."""

    def __init__(self, fatal):
        self.fatal = fatal

    def __call__(self, item):
        if item == self.fatal:
            os._exit(1)
        return item


def test_a_dead_worker_stops_the_run_naming_the_lost_piece():
    with ProcessPoolExecutor(2, mp_context=_fork()) as executor:
        with pytest.raises(WorkerLost, match=r"piece \d of 6 .* was lost") as lost:
            parallel_map(_ExitIn(3), range(6), executor=executor, desc="test")
    assert lost.value.index <= 3 and lost.value.total == 6
    assert "BrokenProcessPool" in str(lost.value)


class _ExitingSimulator(Simulator):
    """A simulator whose worker dies on a chunk of more than 10 draws."""

    def __call__(self, theta):
        if len(theta) > 10:
            os._exit(1)
        return super().__call__(theta)


def test_a_dead_simulation_worker_is_never_a_shorter_simulation_set():
    simulator = _ExitingSimulator(CircuitProgram(NOISY))
    theta = torch.zeros(35, 8)
    with ProcessPoolExecutor(2, mp_context=_fork()) as executor:
        with pytest.raises(WorkerLost, match="35 simulations"):
            simulate(simulator, theta, seed=0, chunk_size=12, executor=executor)


def _local_model():
    """A model the workers cannot import: defined inside a function."""

    class Local(LDS2D):
        pass

    return Local()


def test_unpicklable_models_are_clear_errors_before_any_work(pool):
    with pytest.raises(TypeError, match="must be importable .* or otherwise picklable"):
        NPE(_local_model(), PROP, executor=pool, progress=False)
    with pytest.raises(TypeError, match="the model cannot be sent"):
        SMCABC(_local_model(), PROP, executor=pool, progress=False)
    with pytest.raises(TypeError, match="the model cannot be sent"):
        epi(_local_model(), PROP, config=TINY_EPI, seed=[0, 1], executor=pool, progress=False)
    with pytest.raises(TypeError, match="the model, property and options cannot be sent"):
        compare(_local_model(), PROP, ["smcabc"], executor=pool, progress=False)
    model = LDS2D()
    model.lock = threading.Lock()  # no pickler sends a lock
    with pytest.raises(TypeError, match="cannot be sent"):
        NPE(model, PROP, executor=_NeverRuns(), progress=False)


class _NeverRuns(ProcessPoolExecutor):
    def submit(self, *args, **kwargs):
        raise AssertionError("work was submitted after a failed check")


def test_executor_arguments_are_checked():
    with pytest.raises(TypeError, match="executor must be None or a concurrent.futures.Executor"):
        NPE(LDS2D(), PROP, executor=2, progress=False)
    with ThreadPoolExecutor(2) as threads, pytest.raises(ValueError, match="process of its own"):
        check_executor(threads)
    with pytest.raises(ImportError, match=r"pyro_circuits\[nope\]"):
        require("no_such_module_here", "nope")
    # Checked before Ray is imported or started.
    with pytest.raises(ValueError, match="torch_threads"):
        RayExecutor(torch_threads=0)
    with pytest.raises(TypeError, match="max_retries"):
        RayExecutor(max_retries=1.5)

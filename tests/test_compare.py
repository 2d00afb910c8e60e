"""compare(): every method on one model through the result protocol; table, files, plots."""

import math

import arviz as az
import matplotlib.pyplot as plt
import pytest

from pyro_circuits.compare import METHODS, compare, markdown_table
from pyro_circuits.epi import EPIConfig, FlowConfig, epi
from pyro_circuits.models import LDS2D, Rank2RNN

TINY = {
    "epi": {
        "config": EPIConfig(batch_size=50, iterations=5, test_batches=10, init_iterations=5),
        "flow": FlowConfig(units=8),
    },
    "npe": {"train_kwargs": {"max_num_epochs": 3}, "check_samples": 50},
    "smcabc": {"particles": 25},
}


def tiny_comparison(model, prop, out):
    """Every method on ``model`` with tiny budgets, written to ``out``."""
    return compare(
        model,
        prop,
        budget=250,
        seeds=(0,),
        options=TINY,
        draws=100,
        moment_batches=10,
        out=out,
        progress=False,
    )


@pytest.fixture(scope="module")
def lds_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return (*tiny_comparison(LDS2D(), LDS2D.oscillation(), out), out)


def test_table_has_one_row_per_method_and_seed(lds_comparison):
    table, idatas, _ = lds_comparison
    assert list(table["method"]) == ["epi", "npe", "smcabc"]
    assert list(idatas) == ["epi_seed0", "npe_seed0", "smcabc_seed0"]
    for column in ("mean real_lambda", "std imag_lambda", "wall_time", "simulations", "entropy"):
        assert column in table
    assert (table["converged"] == (table["distance"] < 0.5)).all()
    assert table["simulations"].tolist()[1:] == [250, 250]
    assert math.isnan(table["entropy"].iloc[2]) and not math.isnan(table["entropy"].iloc[1])


def test_median_criterion_is_read_where_the_trace_records_it(lds_comparison):
    from pyro_circuits.compare import summary_row
    from pyro_circuits.sbi import NPE

    table, _, _ = lds_comparison
    assert table["median_distance"].notna().all()
    # EPI's and SMC-ABC's traces carry no per-checkpoint median
    assert table.loc[table["method"] != "npe", "simulations_to_median_converge"].isna().all()
    result = NPE(LDS2D(), LDS2D.oscillation(), simulations=100, rounds=2, check_samples=20,
                 train_kwargs={"max_num_epochs": 2}, progress=False)  # fmt: skip
    result.history["distance"] = [0.9, 0.8]
    result.history["median_distance"] = [0.7, 0.3]
    row = summary_row(result, draws=100, moment_batches=10)
    assert math.isnan(row["simulations_to_converge"])
    assert row["simulations_to_median_converge"] == 200
    assert row["wall_time_to_median_converge"] == result.history["wall_time"].iloc[1]


def test_every_result_passes_arviz(lds_comparison):
    _, idatas, _ = lds_comparison
    for idata in idatas.values():
        assert {"posterior", "posterior_predictive", "constant_data"} <= set(idata.groups())
        assert set(idata.posterior.data_vars) == {"a11", "a12", "a21", "a22"}
        summary = az.summary(idata, kind="stats")
        assert list(summary.index) == ["a11", "a12", "a21", "a22"]
        az.plot_pair(idata, var_names=["a11", "a12"])
    az.plot_forest(list(idatas.values()), model_names=list(idatas), var_names=["a11"])
    plt.close("all")


def test_rank2_rnn_runs_every_method_from_the_same_model(tmp_path):
    table, idatas = tiny_comparison(Rank2RNN(2), Rank2RNN.stable_amplification(), tmp_path)
    assert list(table["method"]) == list(METHODS)
    assert {"mean real_lambda", "mean sym_lambda"} <= set(table.columns)
    for idata in idatas.values():
        assert set(idata.posterior.data_vars) == {"U", "V"}
        assert len(az.summary(idata, kind="stats")) == 8  # U and V are 2 × 2 each
        az.plot_pair(idata, var_names=["U"])
    plt.close("all")
    assert {"pairs.png", "predictive.png", "comparison.csv"} <= {p.name for p in tmp_path.iterdir()}


def test_output_folder(lds_comparison):
    table, _, out = lds_comparison
    names = {p.name for p in out.iterdir()}
    assert {"comparison.csv", "comparison.md", "pairs.png", "predictive.png"} <= names
    assert {f"{m}_seed0.nc" for m in METHODS} <= names
    reloaded = az.from_netcdf(out / "npe_seed0.nc")
    assert reloaded.posterior.attrs["method"] == "npe"
    assert (out / "comparison.md").read_text().startswith("| method | seed | converged |")


def test_convergence_trace_of_epi_is_in_statistic_units():
    prop = Rank2RNN.stable_amplification()
    config = EPIConfig(batch_size=20, epochs=1, iterations=2, test_batches=10, init_iterations=2)
    result = epi(Rank2RNN(2), prop, config=config, flow=FlowConfig(units=8), progress=False)
    trace = result.convergence_trace()
    assert list(trace.columns) == ["simulations", "wall_time", "distance"]
    assert trace["simulations"].tolist() == [0, 40]
    last = result.history.iloc[-1]
    scale = 0.25 if result.settings["config"]["standardize"] else 1.0
    expected = math.hypot(last["R E[real_lambda]"] * scale, last["R E[sym_lambda]"] * scale)
    assert trace["distance"].iloc[-1] == pytest.approx(expected)


def test_markdown_table_marks_missing_values():
    import pandas as pd

    text = markdown_table(pd.DataFrame({"a": [1.234567, float("nan")], "b": ["x", None]}))
    assert text.splitlines()[2:] == ["| 1.235 | x |", "| — | — |"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="methods"):
        compare(LDS2D(), LDS2D.oscillation(), methods=["mcmc"])
    with pytest.raises(ValueError, match="budget"):
        compare(LDS2D(), LDS2D.oscillation(), budget=0)
    with pytest.raises(TypeError, match="prop"):
        compare(LDS2D(), {"real_lambda": 0.0})


def test_convergence_trace_of_smcabc_uses_the_population_threshold():
    from pyro_circuits.sbi import SMCABC

    result = SMCABC(LDS2D(), LDS2D.oscillation(), simulations=300, particles=25, progress=False)
    trace = result.convergence_trace()
    assert (trace["distance"] >= result.history["epsilon"]).all()
    assert (trace["distance"] >= result.history["distance"]).all()
    assert trace["simulations"].iloc[0] == 50

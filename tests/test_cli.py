"""The pyro-circuits command: the compare subcommand."""

from pyro_circuits.cli import main


def test_compare_subcommand_writes_the_table_and_plots(tmp_path, capsys):
    code = main(
        [
            "compare",
            "rank2_rnn",
            "--n",
            "2",
            "--methods",
            "smcabc",
            "--budget",
            "200",
            "--draws",
            "80",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| smcabc | 0 |" in printed
    names = {p.name for p in tmp_path.iterdir()}
    assert {"comparison.csv", "comparison.md", "pairs.png", "predictive.png"} <= names
    assert "smcabc_seed0.nc" in names


def test_models_subcommand_lists_the_table(capsys):
    assert main(["models"]) == 0
    assert "rank2_rnn" in capsys.readouterr().out

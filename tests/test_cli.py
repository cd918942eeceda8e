import os
import re
import subprocess
import sys

import pytest

from zoo import cli


def test_main_job_smoke(tmp_path, capsys):
    path = str(tmp_path / "mlp.keras")
    cli.main(["train", "--epochs", "2", "--ratios", "1.0,0.5", "--output", path])
    table = capsys.readouterr().out
    assert "ratio" in table and "latency" in table and "0.50" in table
    cli.main(["evaluate", path, "--ratios", "0.5"])
    assert "0.50" in capsys.readouterr().out


def test_python_dash_m_zoo_help():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "--help"], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0 and "train" in result.stdout


@pytest.mark.parametrize(
    "flag, message",
    [
        ("0.5,2", r"`--ratios` must be in \(0, 1\] \(NaN is not accepted\); got \[2.0\]"),
        ("0.5,x", "ratios must be comma-separated numbers; got '0.5,x'"),
        (",", r"`--ratios` is empty: give at least one ratio in \(0, 1\]"),
    ],
)
def test_bad_ratios_flag_says_what_is_accepted(capsys, flag, message):
    with pytest.raises(SystemExit):
        cli.main(["train", "--ratios", flag])
    assert re.search(message, capsys.readouterr().err)


def test_recalibrate_needs_a_preset():
    with pytest.raises(SystemExit, match="--preset NAME"):
        cli.main(["train", "--recalibrate"])


def test_from_weights_needs_a_preset_and_excludes_recalibrate():
    with pytest.raises(SystemExit, match="--preset NAME"):
        cli.main(["train", "--from-weights", "run.weights.h5"])
    with pytest.raises(SystemExit, match="not both"):
        cli.main(["train", "--preset", "mlp_mnist", "--recalibrate", "--from-weights", "w.h5"])


def test_the_table_gives_lcnet_its_mean_cost_over_the_test_images():
    import zoo

    images = zoo.datasets.load_arrays("digits", "test")[0][:16]
    model = zoo.build("lcnet_resnet20", input_shape=(8, 8, 1), num_classes=10)
    expected = zoo.cost(model, 0.5, data=images)["flops"]
    assert cli.mult_adds(model, 0.5, images) == expected
    mlp = zoo.build("mlp", input_shape=(8, 8, 1))
    assert cli.mult_adds(mlp, 0.5, images) == zoo.cost(mlp, 0.5)["flops"]


def test_train_under_a_mirrored_strategy(capsys):
    model = cli.main(["train", "--epochs", "1", "--ratios", "1.0,0.5", "--distribute", "mirrored"])
    assert "replica(s) (mirrored)" in capsys.readouterr().out
    assert model.distribute_strategy.num_replicas_in_sync >= 1

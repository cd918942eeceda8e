import os
import re
import subprocess
import sys

import pytest
from conftest import real_dataset

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


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--epochs", "-1"], r"--epochs: must be a whole number >= 1; got '-1'"),
        (["--batch-size", "0"], r"--batch-size: must be a whole number >= 1; got '0'"),
        (["--learning-rate", "nan"], r"--learning-rate: must be a finite number > 0; got 'nan'"),
        (["--width", "0"], r"--width: must be a finite number > 0"),
        (["--profile", "cubic"], r"--profile: invalid choice: 'cubic' \(choose from .*linear"),
        (
            ["--preset", "resnet99"],
            r"--preset: invalid choice: 'resnet99' \(choose from .*mlp_mnist",
        ),
        (["--output", "model.h5"], r"--output: must end with .keras"),
        (
            ["--output", "/no/such/folder/m.keras"],
            r"--output: the folder /no/such/folder does not exist",
        ),
    ],
)
def test_bad_train_arguments_are_refused_before_training(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", *arguments])
    assert exit.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_evaluate_refuses_a_missing_or_damaged_file(tmp_path, capsys):
    for content in (None, b"", b"PK\x03\x04 truncated"):
        path = tmp_path / "model.keras"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SystemExit):
            cli.main(["evaluate", str(path)])
        error = capsys.readouterr().err
        assert (
            "neither a file nor a preset" if content is None else "is not a .keras file"
        ) in error


def test_every_flag_has_help_and_shows_its_default():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "--help"], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0
    for flag, default in [("--epochs", "40"), ("--batch-size", "64"), ("--learning-rate", "0.002")]:
        assert re.search(rf"{flag} \S+\s+\S.*\(default: {default}\)", result.stdout), flag


def test_presets_and_models_print_tables(capsys):
    cli.main(["presets"])
    out = capsys.readouterr().out
    assert "accuracy at 1.0" in out and re.search(r"resnet20_cifar10 +resnet20 +cifar10 +\d", out)
    cli.main(["models"])
    out = capsys.readouterr().out
    assert re.search(r"resnet20 +\d", out) and "lcnet_resnet20" in out


def test_evaluate_a_preset_by_name_on_its_own_dataset(capsys):
    real_dataset("mnist", "test[:1]")
    model = cli.main(["evaluate", "mlp_mnist", "--ratios", "1.0"])
    assert model.image_shape == (28, 28, 1) and "1.00" in capsys.readouterr().out


def test_train_writes_tensorboard_logs_per_ratio(tmp_path):
    cli.main(["train", "--epochs", "1", "--ratios", "1.0,0.5", "--log-dir", str(tmp_path)])
    assert {"train", "r=0.5", "r=1.0"} <= set(os.listdir(tmp_path))


def test_a_save_that_fails_after_training_goes_to_a_fallback(tmp_path, capsys, monkeypatch):
    path = tmp_path / "gone" / "mlp.keras"
    path.parent.mkdir()
    original = cli.keras.Model.save

    def save_once_failing(model, filepath, *args, **kwargs):
        if str(filepath) == str(path):
            raise OSError("No space left on device")
        return original(model, filepath, *args, **kwargs)

    monkeypatch.setattr(cli.keras.Model, "save", save_once_failing)
    cli.main(["train", "--epochs", "1", "--ratios", "1.0", "--output", str(path)])
    out = capsys.readouterr().out
    fallback = re.search(r"saved the model to (\S+) instead", out).group(1)
    assert os.path.exists(fallback)


def test_profile_prints_the_table_and_the_ratio_for_a_deadline(tmp_path, capsys):
    import zoo

    path = str(tmp_path / "mlp.keras")
    zoo.build("mlp", input_shape=(8, 8, 1), operating_points=[0.5, 1.0]).save(path)
    table = cli.main(["profile", path, "--deadline-ms", "1000", "--repeats", "3"])
    out = capsys.readouterr().out
    assert "p95 ms" in out and "Widest ratio within 1000.0 ms (95th percentile): 1.0" in out
    assert {row["ratio"] for row in table.rows} == {0.5, 1.0}
    with pytest.raises(SystemExit, match="No ratio meets 1e-06 ms"):
        cli.main(["profile", path, "--deadline-ms", "0.000001", "--repeats", "3"])


def test_export_writes_a_litert_file_and_checks_every_signature(tmp_path, capsys):
    import zoo

    model_path = str(tmp_path / "mlp.keras")
    zoo.build("mlp", input_shape=(8, 8, 1), operating_points=[0.5, 1.0]).save(model_path)
    output = str(tmp_path / "mlp.tflite")
    names = cli.main(["export", model_path, output])
    out = capsys.readouterr().out
    assert names == {"ratio_100": 1.0, "ratio_050": 0.5} and os.path.exists(output)
    differences = [float(line.split()[-1]) for line in out.splitlines() if "ratio_" in line]
    assert len(differences) == 2 and max(differences) < 1e-4
    with pytest.raises(SystemExit):
        cli.main(["export", model_path, str(tmp_path / "mlp.bin")])
    assert "must end with .tflite" in capsys.readouterr().err

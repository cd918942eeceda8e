"""The benchmark scripts import cleanly (they are run by hand, not by CI), and
their recipes hold together."""

import importlib
import json
import os
import pathlib
import warnings

import numpy as np
import pytest
import tensorflow as tf

import zoo

SCRIPTS = sorted(p.stem for p in (pathlib.Path(__file__).parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports(script):
    module = importlib.import_module(f"benchmarks.{script}")
    assert module.__doc__, f"benchmarks/{script}.py needs a docstring saying what it measures"


@pytest.mark.parametrize("architecture", ["resnet20", "mobilenet", "vgg16"])
def test_cifar10_tesla_gives_every_task_its_share_of_the_budget(architecture):
    cifar10 = importlib.import_module("benchmarks.cifar10")
    recipe = cifar10.recipe_for(architecture, "tesla", quick=False)
    steps_per_epoch = -(-45_000 // recipe["batch_size"])
    assert recipe["round"] * cifar10.ROUNDS_PER_EPOCH == steps_per_epoch
    rounds = recipe["epochs"] * cifar10.ROUNDS_PER_EPOCH
    assert recipe["max_rounds_per_task"] * len(recipe["ratios"]) <= rounds
    assert recipe["max_rounds_per_task"] >= rounds // len(recipe["ratios"])


def test_lcnet_fine_tunes_in_the_uniform_presets_own_recipe():
    from zoo.presets import get_preset

    lcnet = importlib.import_module("benchmarks.lcnet")
    preset = get_preset(lcnet.UNIFORM)["recipe"]
    changed = {"learning_rate", "warmup_epochs", "epochs"}
    assert {k: v for k, v in lcnet.RECIPE.items() if k not in changed} == {
        k: v for k, v in preset.items() if k not in changed
    }
    assert lcnet.RECIPE["weight_decay"] == preset["weight_decay"]


def test_cifar10_sandwich_points_trains_every_operating_point_each_step():
    from zoo.recipes import recipe_callbacks

    cifar10 = importlib.import_module("benchmarks.cifar10")
    recipe = cifar10.recipe_for("vgg16", "sandwich_points", quick=False)
    (sampler,) = recipe_callbacks(recipe, None)
    assert sampler.sample(0) == sampler.sample(7) == [1.0, 0.75, 0.5, 0.25, 0.2]


def test_cifar10_sandwich_middle_points_draws_the_middle_ratio_from_inner_points():
    from zoo.recipes import recipe_callbacks

    cifar10 = importlib.import_module("benchmarks.cifar10")
    recipe = cifar10.recipe_for("mobilenet", "sandwich_middle_points", quick=False)
    (sampler,) = recipe_callbacks(recipe, None)
    samples = [sampler.sample(step) for step in range(40)]
    assert all(len(sample) == 3 for sample in samples)
    widest, middle, narrowest = zip(*samples)
    assert set(widest) == {1.0} and set(narrowest) == {0.25}
    assert set(middle) == {0.5, 0.75}


def cifar10_rows(cifar10):
    """A current row of each of two methods, sandwich and individual."""
    accuracy = {f"{r:.2f}": 70.0 for r in cifar10.RATIOS}
    row = {"accuracy": accuracy, "mult_adds": dict.fromkeys(accuracy, 1e6), "seconds": 60.0}
    row.update(source="trained by this script", calibration=cifar10.CALIBRATION)
    return {
        name: {**row, "recipe": cifar10.recipe_for("mobilenet", name, quick=False)}
        for name in ("sandwich", "individual")
    }


def test_cifar10_rows_of_another_calibration_are_marked_and_not_compared():
    cifar10 = importlib.import_module("benchmarks.cifar10")
    methods = cifar10_rows(cifar10)
    del methods["individual"]["calibration"]
    check = cifar10.target_checks("mobilenet", methods)[-1]
    assert check[1] is None and "not comparable" in check[0] and "(†)" in check[0]
    table = cifar10.markdown({"architectures": {"mobilenet": {"methods": methods}}})
    assert "networks (one per ratio) † |" in table and "distillation † |" not in table
    assert "\n† Batch norm calibrated" in table and "\n‡" not in table
    methods["individual"]["calibration"] = cifar10.CALIBRATION
    assert cifar10.target_checks("mobilenet", methods)[-1][1] is True


def test_cifar10_rows_of_another_recipe_are_marked_and_not_compared():
    cifar10 = importlib.import_module("benchmarks.cifar10")
    methods = cifar10_rows(cifar10)
    methods["sandwich"]["recipe"] = {**methods["sandwich"]["recipe"], "weight_decay": 1e-4}
    check = cifar10.target_checks("mobilenet", methods)[-1]
    assert check[1] is None and "(‡)" in check[0]
    table = cifar10.markdown({"architectures": {"mobilenet": {"methods": methods}}})
    assert "distillation ‡ |" in table and "networks (one per ratio) |" in table
    assert "\n‡ Trained with another recipe" in table and "\n†" not in table


def test_cifar10_individual_networks_resume_from_the_results_file(monkeypatch):
    cifar10 = importlib.import_module("benchmarks.cifar10")
    recipe = cifar10.recipe_for("resnet20", "individual", quick=False)
    done = {"accuracy": 61.0, "mult_adds": 5, "seconds": 9.0, "calibration": cifar10.CALIBRATION}
    done["recipe"] = recipe
    stored = {"architectures": {"resnet20": {"methods": {}, "individual_networks": {"0.25": done}}}}
    written = []
    monkeypatch.setattr(cifar10, "stored_results", lambda name: stored)
    monkeypatch.setattr(cifar10, "write_results", lambda *args, **kwargs: written.append(args))
    monkeypatch.setattr(cifar10, "train", lambda *args: pytest.fail("trained a stored network"))
    assert cifar10.individual_network("resnet20", 0.25, recipe, None, False, False) == done
    cifar10.store_network("resnet20", "0.50", {**done, "accuracy": 70.0})
    assert set(stored["architectures"]["resnet20"]["individual_networks"]) == {"0.25", "0.50"}
    assert "resnet20" not in written[0][2]  # no table for an architecture without a finished row

    done["recipe"] = {**recipe, "weight_decay": 1e-4}  # trained with another recipe
    monkeypatch.setattr(cifar10, "train", lambda *args: pytest.fail("trained again"))
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        cifar10.individual_network("resnet20", 0.25, recipe, None, False, False)


def test_training_clock_records_throughput_and_warns_when_an_epoch_shared_the_cpu(
    tmp_path, monkeypatch
):
    from benchmarks import training_clock
    from benchmarks.training_clock import TrainingClock

    cores = len(training_clock.process_cores())
    now = {"wall": 0.0, "cpu": 0.0, "busy": 0.0, "load": 3.0 * cores}
    monkeypatch.setattr(training_clock.time, "perf_counter", lambda: now["wall"])
    monkeypatch.setattr(training_clock.time, "process_time", lambda: now["cpu"])
    monkeypatch.setattr(training_clock, "busy_cpu_seconds", lambda: now["busy"])
    monkeypatch.setattr(training_clock.os, "getloadavg", lambda: (now["load"], 0.0, 0.0))
    clock = TrainingClock(str(tmp_path / "clock.json"), images_per_epoch=1000)

    def epoch(number, seconds, others_seconds=0.0, own=None):
        clock.on_epoch_begin(number)
        own = seconds * cores if own is None else own  # the run keeps every core busy
        now.update(
            wall=now["wall"] + seconds,
            cpu=now["cpu"] + own,
            busy=now["busy"] + own + others_seconds,
        )
        clock.on_epoch_end(number)

    clock.on_train_begin()
    with warnings.catch_warnings():
        # A run alone whose own threads hold the load average above the cores.
        warnings.simplefilter("error")
        for number in range(3):
            epoch(number, 10.0)
    assert clock.record["images_per_second"] == {"1": 100.0, "2": 100.0, "3": 100.0}
    assert clock.record["others_cpu_share"] == {"1": 0.0, "2": 0.0, "3": 0.0}
    with pytest.warns(UserWarning, match="50.0 images/s against 100.0") as caught:
        epoch(3, 20.0)  # half the throughput, with no other process about
    assert "otherwise idle (0% used by others)" in str(caught[0].message)
    assert "the machine itself ran slower" in str(caught[0].message)
    with pytest.warns(UserWarning, match="other processes used 50%"):
        epoch(4, 10.0, others_seconds=5.0 * cores)
    assert clock.record["others_cpu_share"]["5"] == 0.5
    with pytest.warns(UserWarning, match="not one of a run alone") as caught:
        epoch(5, 20.0, others_seconds=10.0 * cores, own=10.0 * cores)  # slow and shared
    assert "machine itself" not in str(caught[0].message)
    with pytest.warns(UserWarning, match="the process was paused or waited"):
        epoch(6, 20.0, own=10.0 * cores)  # half the epoch stopped, the cores idle

    # Without /proc/stat the load average against the cores stands in.
    monkeypatch.setattr(training_clock, "busy_cpu_seconds", lambda: None)
    with pytest.warns(UserWarning, match="load average"):
        epoch(7, 10.0)
    assert "8" not in clock.record["others_cpu_share"]


def test_training_clock_without_a_path_keeps_its_record_in_memory(tmp_path, monkeypatch):
    from benchmarks import training_clock
    from benchmarks.training_clock import TrainingClock

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training_clock, "busy_cpu_seconds", lambda: None)
    monkeypatch.setattr(training_clock.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    clock = TrainingClock(images_per_epoch=10)
    clock.on_train_begin()
    clock.on_epoch_begin(0)
    clock.on_epoch_end(0)
    clock.on_train_end()
    assert clock.record["epochs"] == 1 and "1" in clock.record["images_per_second"]
    assert not list(tmp_path.iterdir())


def test_busy_cpu_seconds_counts_the_process_cores_without_idle_time(tmp_path, monkeypatch):
    from benchmarks import training_clock

    monkeypatch.setattr(training_clock, "process_cores", lambda: [1])
    stat = tmp_path / "stat"
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice; guest
    # time is already in user (and guest_nice in nice), so it counts once.
    stat.write_text(
        f"cpu  {9 * hz} 0 0 {9 * hz} 0 0 0 0 0 0\n"
        f"cpu0 {5 * hz} 0 0 {hz} 0 0 0 0 0 0\n"
        f"cpu1 {2 * hz} {hz} {hz} {7 * hz} {hz} {hz} {hz} {hz} {hz} {hz}\n"
        "intr 1 2 3\n"
    )
    assert training_clock.busy_cpu_seconds(str(stat)) == 7.0
    assert training_clock.busy_cpu_seconds(str(tmp_path / "absent")) is None


def test_training_clock_counts_on_from_an_interrupted_run(tmp_path, monkeypatch):
    from benchmarks import training_clock
    from benchmarks.training_clock import TrainingClock

    path = tmp_path / "train_seconds.json"
    first = TrainingClock(str(path))
    first.on_train_begin()
    first.on_epoch_begin(0)
    first.on_epoch_end(0)
    record = json.loads(path.read_text())
    assert record["epochs"] == 1 and set(record["epoch_seconds"]) == {"1"}

    # A record written before epochs were timed: 3 epochs took 100 s.
    path.write_text(json.dumps({"seconds": 100.0, "epochs": 3}))
    now = {"wall": 1000.0, "cpu": 50.0}
    monkeypatch.setattr(training_clock.time, "perf_counter", lambda: now["wall"])
    monkeypatch.setattr(training_clock.time, "process_time", lambda: now["cpu"])
    resumed = TrainingClock(str(path))
    resumed.on_train_begin()
    resumed.on_epoch_begin(3)
    now.update(wall=1030.0, cpu=110.0)  # an epoch of 30 s on the clock, 60 s of CPU (two cores)
    resumed.on_epoch_end(3)
    resumed.on_train_end()
    assert resumed.seconds == 130.0
    assert json.loads(path.read_text()) == {
        "seconds": 130.0,
        "epochs": 4,
        "epoch_seconds": {"4": 30.0},
        "epoch_cpu_seconds": {"4": 60.0},
    }
    assert not list(tmp_path.glob("*.partial"))


def test_cached_training_keeps_the_record_beside_the_weights(tmp_path, data):
    from benchmarks.common import cached_training

    recipe = {"method": "idp", "epochs": 2, "batch_size": 32, "learning_rate": 0.01}
    build = lambda: zoo.build("mlp", input_shape=(8, 8, 1), num_classes=10, hidden_units=(16,))
    checkpoint = str(tmp_path / "run")
    _, trained = cached_training(checkpoint, build, recipe, data, data)
    assert trained["epochs"] == 2 and set(trained["epoch_seconds"]) == {"1", "2"}

    # A later run loads the weights and the record instead of training.
    _, loaded = cached_training(checkpoint, build, recipe, data, data)
    assert loaded == trained
    # Records kept before epochs were timed hold the seconds only.
    (tmp_path / "run.json").write_text(json.dumps({"train_seconds": 12.0}))
    assert cached_training(checkpoint, build, recipe, data, data)[1] == {"seconds": 12.0}


def test_cifar10_targets_are_each_architectures_goals_and_its_gap():
    cifar10 = importlib.import_module("benchmarks.cifar10")
    methods = cifar10_rows(cifar10)
    methods["sandwich"]["accuracy"] = {**methods["sandwich"]["accuracy"], "1.00": 85.0}
    methods["individual"]["accuracy"] = {**methods["individual"]["accuracy"], "1.00": 86.5}
    goal, gap = cifar10.target_checks("mobilenet", methods)
    assert goal == ("mobilenet at ratio 1.00 >= 85%: 85.00", True)
    assert gap[1] is False and "within 1.0 points" in gap[0] and "gap 1.50 at 1.00" in gap[0]
    table = cifar10.markdown({"architectures": {"mobilenet": {"methods": methods}}})
    assert "- met: mobilenet at ratio 1.00 >= 85%" in table and "- **missed**: best" in table


def test_cifar10_rows_carry_images_per_second_and_cpu_seconds_per_epoch():
    cifar10 = importlib.import_module("benchmarks.cifar10")
    training = {
        "seconds": 60.0,
        "epoch_seconds": {"1": 20.0, "2": 20.0, "3": 20.0},
        "epoch_cpu_seconds": {"1": 19.0, "2": 20.0, "3": 40.0},
        "images_per_second": {"1": 100.0, "2": 50.0, "3": 110.0},
        "load_average": {"1": 1.0, "2": 2.5, "3": 1.1},
    }
    timed = cifar10.timing(training)
    assert timed["images_per_second"] == 100.0 and timed["cpu_seconds_per_epoch"] == 20.0
    assert timed["epoch_load_average"] == training["load_average"]
    row = {**cifar10_rows(cifar10)["sandwich"], **timed}
    table = cifar10.markdown({"architectures": {"mobilenet": {"methods": {"sandwich": row}}}})
    epochs = cifar10.ARCHITECTURES["mobilenet"]["epochs"]
    assert f"| {epochs} | 1 min | 100 | trained by this script |" in table


def test_cifar10_rows_keep_the_epochs_and_their_seconds():
    cifar10 = importlib.import_module("benchmarks.cifar10")
    training = {
        "seconds": 9.0,
        "epochs": 2,
        "epoch_seconds": {"1": 4.0, "2": 5.0},
        "epoch_cpu_seconds": {"1": 8.0, "2": 9.0},
    }
    assert cifar10.timing(training) == {
        "seconds": 9.0,
        "epochs_trained": 2,
        "epoch_seconds": {"1": 4.0, "2": 5.0},
        "epoch_cpu_seconds": {"1": 8.0, "2": 9.0},
        "cpu_seconds_per_epoch": 8.5,
    }
    assert cifar10.timing({"seconds": 9.0}) == {"seconds": 9.0}
    assert cifar10.timing(None) == {"seconds": None}


def test_cifar10_checkpoints_go_under_zoo_runs_dir_when_set(monkeypatch, tmp_path):
    cifar10 = importlib.import_module("benchmarks.cifar10")
    arguments = cifar10.arguments_for("resnet20", "idp")
    recipe = cifar10.recipe_for("resnet20", "idp", quick=False)
    monkeypatch.delenv("ZOO_RUNS_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    default = cifar10.checkpoint_dir("resnet20", arguments, recipe, 0)
    assert default.startswith(str(tmp_path / "home" / "zoo" / "runs"))
    monkeypatch.setenv("ZOO_RUNS_DIR", str(tmp_path / "runs"))
    moved = cifar10.checkpoint_dir("resnet20", arguments, recipe, 0)
    assert moved == str(tmp_path / "runs" / pathlib.Path(default).name)


def test_epoch_budget_lists_runs_by_epochs_beside_the_single_model():
    epoch_budget = importlib.import_module("benchmarks.epoch_budget")
    runs = {
        str(e): {"accuracy": 70.0 + e / 10, "seconds": 60.0 * e, "recipe": {"weight_decay": 5e-4}}
        for e in (100, 12, 48)
    }
    entry = {"runs": runs, "text": "vgg16 at ratio 0.20 >= 80%"}
    entry["single_model"] = ["sandwich", 75.26, 12, 5e-4]
    table = epoch_budget.markdown({"targets": {"vgg16_0.20": entry}})
    rows = [line for line in table.splitlines() if line.startswith("| vgg16")]
    assert [row.split(" | ")[1:3] for row in rows] == [[e, "0.0005"] for e in ("12", "48", "100")]
    assert "(sandwich) reaches 75.26 in 12 epochs at weight decay 0.0005" in table


def test_epoch_budget_store_keeps_other_targets_and_refreshes_their_single_model(
    monkeypatch,
):
    epoch_budget = importlib.import_module("benchmarks.epoch_budget")
    recipe = {"epochs": 64, "weight_decay": 5e-3}
    vgg16 = {"sandwich": {"accuracy": {"0.20": 80.81}, "recipe": recipe}}
    old_run = {"accuracy": 73.84, "seconds": 1500.0, "recipe": {"weight_decay": 5e-4}}
    stored = {
        "cifar10": {"architectures": {"vgg16": {"methods": vgg16}}},
        "epoch_budget": {
            "targets": {
                "vgg16_0.20": {"runs": {"12": old_run}, "single_model": ["x", 79.69, 64, 5e-4]},
                "retired_target": {"runs": {}, "text": "kept as it was"},
            }
        },
    }
    written = {}
    monkeypatch.setattr(epoch_budget.cifar10, "stored_results", lambda name: stored[name])
    monkeypatch.setattr(epoch_budget, "machine", lambda: "this machine")
    monkeypatch.setattr(
        epoch_budget, "write_results", lambda name, data, table: written.update(data=data)
    )
    new_run = {"accuracy": 70.0, "seconds": 900.0, "recipe": {"weight_decay": 5e-3}}
    epoch_budget.store("mobilenet_1.00", {"10": new_run})
    targets = written["data"]["targets"]
    assert targets["mobilenet_1.00"]["runs"] == {"10": new_run}
    assert targets["mobilenet_1.00"]["single_model"] is None  # no mobilenet results here
    assert targets["vgg16_0.20"]["runs"] == {"12": old_run}
    assert targets["vgg16_0.20"]["single_model"] == ("sandwich", 80.81, 64, 5e-3)
    assert targets["retired_target"] == {"runs": {}, "text": "kept as it was"}


def test_epoch_budget_takes_the_benchmarks_own_run_only_in_its_recipe(monkeypatch):
    epoch_budget = importlib.import_module("benchmarks.epoch_budget")
    recipe = epoch_budget.recipe_for("resnet20", 30)
    network = {"accuracy": 86.56, "seconds": 7801.0, "recipe": recipe, "mult_adds": 1}
    stored = {"architectures": {"resnet20": {"individual_networks": {"1.00": network}}}}
    monkeypatch.setattr(epoch_budget.cifar10, "stored_results", lambda name: stored)
    run = epoch_budget.benchmark_run("resnet20", 1.0, 30)
    assert run == {"accuracy": 86.56, "seconds": 7801.0, "recipe": recipe}
    assert epoch_budget.benchmark_run("resnet20", 1.0, 60) is None
    assert epoch_budget.benchmark_run("resnet20", 0.5, 30) is None
    assert epoch_budget.benchmark_run("vgg16", 0.2, 12) is None


def test_latency_of_some_models_keeps_the_committed_rows_of_the_others(monkeypatch, tmp_path):
    latency = importlib.import_module("benchmarks.latency")
    rows = [{"model": m, "batch": 1, "ratio": 1.0} for m in ("mlp", "vgg16", "resnet20")]
    (tmp_path / "latency.json").write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(latency, "RESULTS", str(tmp_path))
    assert [r["model"] for r in latency.committed_rows(without=["vgg16"])] == ["mlp", "resnet20"]
    monkeypatch.setattr(latency, "RESULTS", str(tmp_path / "absent"))
    assert latency.committed_rows(without=["vgg16"]) == []


def test_lcnet_results_of_an_earlier_recipe_say_what_changed():
    lcnet = importlib.import_module("benchmarks.lcnet")
    current = dict(lcnet.RECIPE, epochs=12)
    assert lcnet.recipe_note({"recipe": current}) == []
    note = lcnet.recipe_note({"recipe": dict(current, weight_decay=5e-4)})
    assert "`weight_decay` 0.0005 (now 0.005)" in note[0]


def test_lcnet_results_of_the_earlier_calibration_say_so():
    lcnet = importlib.import_module("benchmarks.lcnet")
    assert lcnet.calibration_note({"calibration": lcnet.CALIBRATION}) == []
    assert "Calibrated batch norm once" in lcnet.calibration_note({})[0]


def test_the_masked_baseline_computes_what_the_dynamic_model_does():
    latency = importlib.import_module("benchmarks.latency")
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype("float32")
    for ratio in (0.3, 0.5):
        np.testing.assert_allclose(
            latency.masked_function(model)(x, tf.fill([4], ratio)).numpy(),
            model(x, compute_ratio=ratio).numpy(),
            rtol=1e-5,
            atol=1e-5,
        )


def test_litert_shared_weights_rewrite_stores_each_weight_once_with_equal_outputs(tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    shared_weights = importlib.import_module("benchmarks.litert_shared_weights")
    model = zoo.load("resnet20_cifar10")
    original, full, shared = (
        str(tmp_path / f"{name}.tflite") for name in ("all", "full", "shared")
    )
    zoo.export_litert(model, original, ratios=[1.0, 0.5])
    zoo.export_litert(model, full, ratios=[1.0])
    rewritten = flatbuffer_utils.read_model(original)
    kinds = shared_weights.share_weights(rewritten)
    flatbuffer_utils.write_model(rewritten, shared)
    # Batch norm folded per operating point: the narrower weights are scaled blocks.
    assert kinds["scaled"] > 0 and kinds["neither"] == 0
    stored = shared_weights.buffer_bytes(flatbuffer_utils.read_model(shared))
    assert stored < 1.05 * shared_weights.buffer_bytes(flatbuffer_utils.read_model(full))
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    for name in ("ratio_100", "ratio_050"):
        expected = Interpreter(original).get_signature_runner(name)(images=images)["logits"]
        got = Interpreter(shared).get_signature_runner(name)(images=images)["logits"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_lcnet_results_state_each_trainings_clock():
    lcnet = importlib.import_module("benchmarks.lcnet")
    clock = {"seconds": 7200.0, "images_per_second": 150.0, "cpu_seconds_per_epoch": 600.0}
    results = {
        "variants": {"subset": {"training": clock}, "prefix": {}},
        "uniform_fine_tuned_training": {"seconds": 3600.0},
    }
    assert lcnet.clock_line(results) == (
        "Training (medians over epochs): subset: 2.0 h, 150 images/s, 600 CPU s/epoch; "
        "prefix: not timed; uniform +epochs: 1.0 h."
    )

import json
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import Interrupt

import callbacks
import zoo


def mlp(learning_rate=0.0):
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class RecordPlans(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.plans = []

    def on_train_batch_begin(self, batch, logs=None):
        self.plans.append(self.model.training_plan)


# -- TaskwiseEarlyStopping -----------------------------------------------------


def test_task_switches_after_patience_rounds_and_training_stops(data):
    model, record = mlp(learning_rate=0.0), RecordPlans()  # accuracy never improves
    tesla = callbacks.TaskwiseEarlyStopping(
        [0.25, 1.0, 0.5], validation_data=data, patience=2, steps_per_round=1
    )
    model.fit(*data, batch_size=16, epochs=10, callbacks=[tesla, record], verbose=0)
    current = [plan["ratios"][0] for plan in record.plans]
    # Round 1 sets the best value, rounds 2 and 3 do not improve: switch.
    assert current == [1.0] * 3 + [0.5] * 3 + [0.25] * 3
    assert len(record.plans) == 9  # stopped after the last task


def test_task_switches_at_its_round_cap_while_still_improving(data):
    model, record = mlp(learning_rate=0.0), RecordPlans()
    tesla = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5], validation_data=data, patience=100, steps_per_round=1, max_rounds_per_task=2
    )
    model.fit(*data, batch_size=16, epochs=10, callbacks=[tesla, record], verbose=0)
    assert [plan["ratios"][0] for plan in record.plans] == [1.0] * 2 + [0.5] * 2


def test_aggregated_loss_follows_the_formula(data):
    tesla = callbacks.TaskwiseEarlyStopping([1.0, 0.5, 0.25], validation_data=data, alpha=0.3)
    a = 0.3
    assert tesla.task_weights(0) == [1.0]
    np.testing.assert_allclose(tesla.task_weights(1), [a, 1 - a])
    # A_2 = a * (a * L0 + (1 - a) * L1) + (1 - a) * L2
    np.testing.assert_allclose(tesla.task_weights(2), [a * a, a * (1 - a), 1 - a])
    assert callbacks.TaskwiseEarlyStopping([1.0, 0.5], data, aggregation="sum").task_weights(1) == [
        1,
        1,
    ]


def test_training_loss_is_the_aggregated_loss(data):
    x, y = data[0][:16], data[1][:16]
    model = mlp(learning_rate=0.0)
    tesla = callbacks.TaskwiseEarlyStopping([1.0, 0.5, 0.25], validation_data=(x, y), alpha=0.3)
    tesla.set_model(model)
    tesla.on_train_begin()
    model.training_state.assign(np.where(np.arange(128) == 0, 2.0, model.training_state.numpy()))
    tesla.on_epoch_begin(0)  # now on task 2 (ratio 0.25)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses = [float(loss(y, model(x, compute_ratio=r))) for r in (1.0, 0.5, 0.25)]
    expected = 0.09 * losses[0] + 0.21 * losses[1] + 0.7 * losses[2]
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)


def test_distribution_follows_the_order_the_ratios_were_given_in(data):
    tesla = callbacks.TaskwiseEarlyStopping(
        [0.25, 0.5, 1.0], validation_data=data, order="random", distribution=[0.6, 0.3, 0.1]
    )
    assert tesla.ratios == [1.0, 0.5, 0.25]
    np.testing.assert_allclose(tesla.distribution, [0.1, 0.3, 0.6])
    with pytest.raises(ValueError, match="distinct"):
        callbacks.TaskwiseEarlyStopping(
            [0.5, 0.5, 1.0], validation_data=data, order="random", distribution=[0.6, 0.3, 0.1]
        )


def test_random_order_draws_open_tasks_and_stops(data):
    model, record = mlp(learning_rate=0.0), RecordPlans()
    tesla = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5, 0.25],
        validation_data=data,
        order="random",
        patience=1,
        steps_per_round=1,
        seed=3,
    )
    model.fit(*data, batch_size=16, epochs=20, callbacks=[tesla, record], verbose=0)
    drawn = [plan["ratios"][0] for plan in record.plans]
    assert set(drawn) == {1.0, 0.5, 0.25}
    assert len(drawn) == 6  # each task: one improving round, one flat round


@pytest.mark.parametrize("backup_first", [True, False])
def test_backup_and_restore_resumes_on_the_same_task(data, tmp_path, backup_first):
    x, y = data[0][:16], data[1][:16]

    def run(extra):
        model = mlp(learning_rate=0.0)
        tesla = callbacks.TaskwiseEarlyStopping(
            [1.0, 0.5, 0.25], validation_data=(x, y), patience=1
        )
        record = RecordPlans()
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        ordered = [backup, tesla] if backup_first else [tesla, backup]
        model.fit(x, y, batch_size=16, epochs=5, callbacks=ordered + [record] + extra, verbose=0)
        return record

    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt(epoch=3)])
    # Epochs 0-1 ran task 0, epoch 2 task 1; the backup holds the end of epoch 2.
    resumed = run([])
    assert resumed.plans[0]["ratios"][0] == 0.5
    # Round of epoch 3 (task 1, no gain) switches to task 2 for epoch 4.
    assert [p["ratios"][0] for p in resumed.plans] == [0.5, 0.25]


@pytest.mark.parametrize("backup_first", [True, False])
def test_a_mid_epoch_backup_keeps_the_round_open(data, tmp_path, backup_first):
    x, y = data[0][:32], data[1][:32]  # two batches an epoch

    def run(extra):
        model, record = mlp(learning_rate=0.0), RecordPlans()
        tesla = callbacks.TaskwiseEarlyStopping(
            [1.0, 0.5, 0.25], validation_data=(x, y), patience=1
        )
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=1)
        ordered = [backup, tesla] if backup_first else [tesla, backup]
        model.fit(x, y, batch_size=16, epochs=5, callbacks=ordered + [record] + extra, verbose=0)
        return record

    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt(epoch=2, batch=1)])  # backed up after batch 0 of epoch 2
    # Epoch 2 runs again as task 1's first round, epoch 3 its second.
    resumed = [p["ratios"][0] for p in run([]).plans]
    assert resumed == [0.5] * 4 + [0.25] * 2


def test_a_tesla_with_other_settings_starts_over_on_a_trained_model(data):
    model = mlp(learning_rate=0.0)
    first = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.75, 0.5, 0.25], validation_data=data, patience=1, steps_per_round=1
    )
    model.fit(*data, batch_size=16, epochs=1, callbacks=[first], verbose=0)
    assert first.current_task == 2
    record = RecordPlans()
    second = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5], validation_data=data, patience=1, steps_per_round=1
    )
    with pytest.warns(UserWarning, match="starts its schedule over"):
        model.fit(*data, batch_size=16, epochs=1, callbacks=[second, record], verbose=0)
    assert [plan["ratios"][0] for plan in record.plans] == [1.0, 1.0, 0.5, 0.5]


def test_a_tesla_with_the_same_settings_continues_where_it_stopped(data):
    model = mlp(learning_rate=0.0)
    make = lambda: callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5, 0.25], validation_data=data, patience=1, steps_per_round=1
    )
    model.fit(data[0][:48], data[1][:48], batch_size=16, epochs=1, callbacks=[make()], verbose=0)
    record = RecordPlans()
    model.fit(*data, batch_size=16, epochs=1, callbacks=[make(), record], verbose=0)
    assert [plan["ratios"][0] for plan in record.plans] == [0.5, 0.25, 0.25]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ratios=[]), "empty"),
        (dict(ratios=[1.0, 1.5]), r"\(0, 1\]"),
        (dict(ratios=[1.0], alpha=1.0), "alpha"),
        (dict(ratios=[1.0], order="shuffled"), "order"),
        (dict(ratios=[1.0, 0.5], distribution=[1.0]), "distribution"),
        (dict(ratios=[1.0], patience=0), "patience"),
        (dict(ratios=[1.0], max_rounds_per_task=0), "max_rounds_per_task"),
        (dict(ratios=[1.0], order="random", max_rounds_per_task=3), "descending"),
    ],
)
def test_tesla_rejects_bad_arguments(kwargs, message, data):
    with pytest.raises(ValueError, match=message):
        callbacks.TaskwiseEarlyStopping(validation_data=data, **kwargs)


# -- SubnetSampler -------------------------------------------------------------


def test_sampler_yields_requested_ratios(data):
    sampler = callbacks.SubnetSampler(ratios=[1.0, 0.5, 0.25], per="batch", seed=1)
    draws = {sampler.sample(step)[0] for step in range(50)}
    assert draws == {1.0, 0.5, 0.25}
    ranged = callbacks.SubnetSampler(ratio_range=(0.2, 0.8))
    assert all(0.2 <= ranged.sample(step)[0] <= 0.8 for step in range(50))


def test_sandwich_set_has_widest_narrowest_and_random(data):
    sampler = callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=4)
    for step in range(20):
        ratios = sampler.sample(step)
        assert len(ratios) == 4 and ratios[0] == 1.0 and ratios[-1] == 0.1
        assert all(0.1 <= r <= 1.0 for r in ratios[1:3])
    model, record = mlp(0.01), RecordPlans()
    model.fit(*data, batch_size=16, epochs=1, callbacks=[sampler, record], verbose=0)
    assert all(p["distillation"] == 1.0 and p["ratios"][0] == 1.0 for p in record.plans)
    assert len({tuple(p["ratios"]) for p in record.plans}) == len(record.plans)
    # fit leaves the default plan behind.
    assert model.training_plan == {"ratios": [1.0], "weights": [1.0], "distillation": 0.0}


def test_sandwich_without_replacement_draws_distinct_inner_ratios():
    points = callbacks.SubnetSampler(
        ratios=[0.25, 0.5, 0.75, 1.0], sandwich=True, num_ratios=4, replace=False
    )
    assert all(points.sample(step) == [1.0, 0.75, 0.5, 0.25] for step in range(10))
    some = callbacks.SubnetSampler(
        ratios=[0.1, 0.3, 0.5, 0.7, 1.0], sandwich=True, num_ratios=4, replace=False
    )
    for step in range(20):
        middle = some.sample(step)[1:-1]
        assert len(set(middle)) == 2 and set(middle) <= {0.3, 0.5, 0.7}


def test_sampler_per_epoch(data):
    model, record = mlp(0.01), RecordPlans()
    sampler = callbacks.SubnetSampler(ratios=[1.0, 0.5, 0.25], per="epoch", seed=0)
    model.fit(*data, batch_size=16, epochs=3, callbacks=[sampler, record], verbose=0)
    per_epoch = [record.plans[i : i + 4] for i in range(0, 12, 4)]
    assert all(len({tuple(p["ratios"]) for p in epoch}) == 1 for epoch in per_epoch)
    assert [e[0]["ratios"] for e in per_epoch] == [sampler.sample(s) for s in range(3)]


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        callbacks.SubnetSampler()
    with pytest.raises(ValueError, match="ratio_range"):
        callbacks.SubnetSampler(ratio_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="empty"):
        callbacks.SubnetSampler(ratios=[])
    with pytest.raises(ValueError, match="replace=False.*at least `num_ratios` \\(4\\)"):
        callbacks.SubnetSampler(ratios=[1.0, 0.5, 0.25], sandwich=True, replace=False)
    with pytest.raises(ValueError, match="replace=False"):
        callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, replace=False)
    with pytest.raises(ValueError, match="nonuniform=False"):
        callbacks.SubnetSampler(
            ratios=[1.0, 0.5, 0.25], sandwich=True, num_ratios=3, replace=False, nonuniform=True
        )
    for bad in ((0.5,), 0.5, ("low", 1.0)):
        with pytest.raises(ValueError, match="`ratio_range` must be \\(low, high\\)"):
            callbacks.SubnetSampler(ratio_range=bad)
    with pytest.raises(ValueError, match="2 to 32 ratios"):
        callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=40)
    # `replace` only matters under the sandwich rule.
    callbacks.SubnetSampler(ratios=[1.0, 0.5], replace=False)


def test_sampler_traces_its_plan_structure_once(data):
    model = mlp(0.01)
    traces = []
    step = model.train_step
    model.train_step = lambda d: (traces.append(model.plan.structure.size), step(d))[1]
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    sampler = callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=3)
    model.fit(*data, batch_size=16, epochs=2, callbacks=[sampler], verbose=0)
    traced = len(traces)
    assert 3 in traces  # the step of a 3-entry plan
    model.fit(*data, batch_size=16, epochs=2, callbacks=[sampler], verbose=0)
    assert len(traces) == traced  # new ratios every batch, no new trace


# -- OperatingPointLogger --------------------------------------------------------


def test_logger_keys_in_history_and_early_stopping(data):
    model = mlp(0.01)
    logger = callbacks.OperatingPointLogger(data, ratios=[1.0, 0.25])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy@0.25", mode="max", patience=1)
    history = model.fit(*data, batch_size=16, epochs=2, callbacks=[logger, stop], verbose=0)
    for key in ("val_accuracy@1.0", "val_loss@1.0", "val_accuracy@0.25", "val_loss@0.25"):
        assert len(history.history[key]) == len(history.history["loss"])
    accuracy = zoo.evaluate_ratios(model, data, [0.25])[0.25]
    assert history.history["val_accuracy@0.25"][-1] == pytest.approx(accuracy)


def test_logger_on_a_plain_keras_model_says_what_it_needs(data):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = callbacks.OperatingPointLogger(data)
    with pytest.raises(ValueError, match="needs a zoo.DynamicModel"):
        model.fit(*data, epochs=1, callbacks=[logger], verbose=0)


def start_tensorboard(log_dir):
    """A real TensorBoard server on 127.0.0.1 over `log_dir`, loaded once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={log_dir}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--load_fast=false",
            "--reload_interval=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def tensorboard_json(url, path, body=None, timeout=60):
    """A TensorBoard HTTP API answer, waiting for the server to come up."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(url + path)
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
            request.add_header("X-XSRF-Protected", "1")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
                return (
                    data
                    if path.startswith("/data/plugin/images/individualImage")
                    else json.loads(data)
                )
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_logger_runs_as_a_real_tensorboard_server_shows_them(data, tmp_path):
    logs = tmp_path / "logs"
    for run, extra in (
        (
            "sandwich",
            [callbacks.SubnetSampler(ratios=[1.0, 0.5, 0.25], sandwich=True, num_ratios=3)],
        ),
        ("plain", []),
    ):
        model = mlp(0.01)
        logger = callbacks.OperatingPointLogger(data, ratios=[1.0, 0.5, 0.25], log_dir=logs / run)
        model.fit(*data, batch_size=16, epochs=2, callbacks=[*extra, logger], verbose=0)
    server, url = start_tensorboard(logs)
    try:
        runs = set(tensorboard_json(url, "/data/runs"))
        for run in ("sandwich", "plain"):
            assert {run, f"{run}/r=1.0", f"{run}/r=0.5", f"{run}/r=0.25"} <= runs
        scalars = tensorboard_json(url, "/data/plugin/scalars/tags")
        assert set(scalars["sandwich/r=0.25"]) == {
            "operating_point/accuracy",
            "operating_point/loss",
        }
        assert {"accuracy@1.0", "accuracy@0.25"} <= set(scalars["plain"])
        points = tensorboard_json(
            url, "/data/plugin/scalars/scalars?run=plain/r%3D0.5&tag=operating_point/accuracy"
        )
        assert [step for _, step, _ in points] == [0, 1]

        groups = tensorboard_json(
            url,
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 10,
            },
        )["sessionGroups"]
        trials = {group["name"]: group["hparams"] for group in groups}
        assert set(trials) == {"sandwich", "plain"}  # named after the runs
        sandwich = trials["sandwich"]
        assert sandwich["method"] == "SubnetSampler" and trials["plain"]["method"] == "plan"
        assert (
            sandwich["SubnetSampler.num_ratios"] == 3 and sandwich["SubnetSampler.sandwich"] is True
        )
        assert sandwich["epochs"] == 2 and sandwich["batch_size"] == 16
        assert sandwich["optimizer"] == "SGD" and sandwich["learning_rate"] == pytest.approx(0.01)
        assert sandwich["mult_adds@0.25"] == zoo.cost(model, 0.25)["flops"]

        layout = tensorboard_json(url, "/data/plugin/custom_scalars/layout")
        titles = [c["title"] for category in layout["category"] for c in category["chart"]]
        assert "accuracy: a line per operating point" in titles
        assert "accuracy at 0.25: a line per run" in titles

        images = tensorboard_json(url, "/data/plugin/images/tags")
        assert "accuracy_vs_mult_adds" in images["plain"]
        (last, *_) = tensorboard_json(
            url, "/data/plugin/images/images?run=plain&tag=accuracy_vs_mult_adds&sample=0"
        )[::-1]
        png = tensorboard_json(url, "/data/plugin/images/individualImage?" + last["query"])
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR
        assert last["step"] == 1 and width >= 800 and height >= 550
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- BatchNormCalibration -------------------------------------------------------


def test_calibration_restores_accuracy():
    x, y = zoo.datasets.load_arrays("digits", "train")
    model = zoo.build(
        "resnet20",
        input_shape=(8, 8, 1),
        width=0.5,
        blocks_per_stage=1,
        operating_points=[0.5, 1.0],
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.set_training_plan([1.0, 0.5])
    model.fit(x, y, batch_size=64, epochs=4, verbose=0)
    calibration = callbacks.BatchNormCalibration(x, steps=4)
    calibration.set_model(model)
    calibration.calibrate()
    calibrated = zoo.evaluate_ratios(model, (x, y), [0.5])[0.5]
    # Statistics never collected at 0.5 (as after training at other widths):
    for layer in model.dynamic_layers:
        if isinstance(layer, zoo.layers.DynamicBatchNormalization):
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    stale = zoo.evaluate_ratios(model, (x, y), [0.5])[0.5]
    calibration.on_train_end()
    restored = zoo.evaluate_ratios(model, (x, y), [0.5])[0.5]
    assert stale < calibrated - 0.2 and restored == pytest.approx(calibrated, abs=1e-6)


# -- ProfileScheduler -----------------------------------------------------------


def adam_mlp(**kwargs):
    model = zoo.build("mlp", input_shape=(8, 8, 1), **kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_profile_stages_freeze_the_earlier_block_exactly(data):
    model = adam_mlp(profile="linear", profile_boundaries=(0.3,))
    record, outputs = RecordPlans(), {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                outputs["narrow"] = model(data[0], compute_ratio=0.3).numpy()
                outputs["middle"] = model.hidden[1].kernel.numpy().copy()

    scheduler = callbacks.ProfileScheduler(stages=[((0.0, 0.3), 2), ((0.3, 1.0), 2)])
    history = model.fit(
        *data, batch_size=16, epochs=10, callbacks=[scheduler, record, Snapshot()], verbose=0
    )
    assert len(history.history["loss"]) == 4  # the schedule ends training
    assert history.history["profile_stage"] == [0, 0, 1, 1]
    assert [p["ratios"][0] for p in record.plans] == pytest.approx([0.3] * 8 + [1.0] * 8)
    # Stage 2 trained the rest of the middle layer but not its 0.3 block
    # (Adam's momenta were reset), so the sub-net at 0.3 is unchanged.
    kernel, before = model.hidden[1].kernel.numpy(), outputs["middle"]
    np.testing.assert_array_equal(kernel[:30, :30], before[:30, :30])
    assert np.abs(kernel[30:, :] - before[30:, :]).max() > 0
    np.testing.assert_array_equal(model(data[0], compute_ratio=0.3).numpy(), outputs["narrow"])
    assert model.frozen_ratio == 0.0


def test_multi_profile_layers_follow_the_ratio(data):
    model = adam_mlp(profile_boundaries=(0.3,))
    first = model.hidden[0]
    assert isinstance(first, zoo.layers.ProfileBranches) and len(first.branches) == 2
    x = data[0][:4]
    branch0 = first.branches[0](x.reshape(4, -1) / 255.0, compute_ratio=0.2)
    branch1 = first.branches[1](x.reshape(4, -1) / 255.0, compute_ratio=0.2)
    np.testing.assert_allclose(first(x.reshape(4, -1) / 255.0, compute_ratio=0.2), branch0)
    assert not np.allclose(branch0, branch1)
    mixed = np.array([0.2, 0.8, 0.2, 0.8], "float32")
    together = model({"images": x, "compute_ratio": mixed}).numpy()
    alone = [model(x[i : i + 1], compute_ratio=float(r)).numpy()[0] for i, r in enumerate(mixed)]
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-5)
    assert zoo.cost(model, 0.2)["flops"] == zoo.cost(adam_mlp(), 0.2)["flops"]


def test_multi_profile_model_saves_and_extracts(data, tmp_path):
    model = adam_mlp(profile_boundaries=(0.3, 0.6))
    # One step builds the optimizer, whose state is then saved and restored.
    model.fit(*data, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0)
    path = str(tmp_path / "mp.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for ratio in (0.2, 0.5, 1.0):
        expected = model(data[0][:8], compute_ratio=ratio).numpy()
        np.testing.assert_allclose(loaded(data[0][:8], compute_ratio=ratio), expected, atol=1e-6)
        np.testing.assert_allclose(
            zoo.extract_subnet(model, ratio)(data[0][:8]), expected, atol=1e-5
        )


def test_random_keep_ratio_and_curriculum(data):
    keep = callbacks.ProfileScheduler(random_keep_ratio=0.1, min_ratio=0.05)
    draws = np.array([keep.keep_ratio(step) for step in range(2000)])
    assert draws.min() >= 0.05 and draws.max() <= 1.0
    assert 1.0 - draws.mean() == pytest.approx(0.1, abs=0.01)  # E[X] = scale
    model, record = adam_mlp(), RecordPlans()
    curriculum = callbacks.ProfileScheduler(curriculum=[1.0, 0.5, 0.25], epochs_per_stage=1, seed=2)
    model.fit(*data, batch_size=8, epochs=3, callbacks=[curriculum, record], verbose=0)
    per_epoch = [{p["ratios"][0] for p in record.plans[i : i + 8]} for i in (0, 8, 16)]
    assert per_epoch[0] == {1.0} and per_epoch[1] <= {1.0, 0.5} and 0.25 in per_epoch[2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one"),
        (dict(stages=[]), "empty"),
        (dict(stages=[((0.0, 0.5), 2), ((0.4, 1.0), 2)]), "overlaps"),
        (dict(stages=[((0.0, 0.3), 2), ((0.5, 1.0), 2)]), "gap"),
        (dict(stages=[((0.1, 0.5), 2)]), "start at 0"),
        (dict(stages=[((0.0, 1.5), 2)]), "0 <= low < high <= 1"),
        (dict(stages=[(0.5, 2)]), r"\(\(low, high\), epochs\)"),
        (dict(curriculum=[0.5, 1.0]), "wide to narrow"),
        (dict(curriculum=[1.0, 0.0]), r"\(0, 1\]"),
        (dict(random_keep_ratio=-1.0), "positive"),
    ],
)
def test_profile_scheduler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        callbacks.ProfileScheduler(**kwargs)


def test_profile_schedule_resumes_under_backup_and_restore(data, tmp_path):
    def run(extra):
        model, record = adam_mlp(profile_boundaries=(0.5,)), RecordPlans()
        scheduler = callbacks.ProfileScheduler(stages=[((0.0, 0.5), 2), ((0.5, 1.0), 3)])
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        model.fit(
            *data,
            batch_size=16,
            epochs=10,
            callbacks=[backup, scheduler, record] + extra,
            verbose=0,
        )
        return model, record

    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt(epoch=3)])
    model, record = run([])
    assert len(record.plans) == 2 * 4  # epochs 3 and 4 of the schedule
    assert {p["ratios"][0] for p in record.plans} == {1.0}


def test_profile_schedule_resumes_from_a_mid_epoch_backup(data, tmp_path):
    def run(extra):
        model, record = adam_mlp(profile_boundaries=(0.5,)), RecordPlans()
        scheduler = callbacks.ProfileScheduler(stages=[((0.0, 0.5), 2), ((0.5, 1.0), 3)])
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=2)
        model.fit(
            *data,
            batch_size=16,
            epochs=10,
            callbacks=[backup, scheduler, record] + extra,
            verbose=0,
        )
        return record

    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt(epoch=2, batch=2)])  # backed up after batch 1 of epoch 2
    resumed = run([]).plans
    assert len(resumed) == 3 * 4  # epoch 2 again, then 3 and 4
    assert {p["ratios"][0] for p in resumed} == {1.0}


def test_freezing_does_not_retrace_and_each_update_group_traces_once(data):
    model = adam_mlp(profile=zoo.profiles.Profile("linear", trainable=True))
    model.enable_profile_updates()
    traces = []
    step = model.train_step
    model.train_step = lambda d: (traces.append(model.update_group), step(d))[1]
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    for ratio in (0.5, 0.25, 0.0):
        model.freeze_channels(ratio)
        model.fit(*data, batch_size=16, epochs=1, verbose=0)
    assert set(traces) == {"all"}
    for group in ("weights", "profile", "all", "weights", "profile"):
        model.set_update_group(group)
        model.fit(*data, batch_size=16, epochs=1, verbose=0)
    traced = {group: traces.count(group) for group in set(traces)}
    model.set_update_group("weights")
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    assert {group: traces.count(group) for group in set(traces)} == traced


# -- TESLA's trainable profile (ATP) ----------------------------------------------


def test_profile_updates_enabled_after_a_fit_take_effect(data):
    model = adam_mlp(profile=zoo.profiles.Profile("linear", trainable=True))
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    model.enable_profile_updates()
    model.set_update_group("profile")
    kernel = model.hidden[1].kernel.numpy().copy()
    profile = model.hidden[1].profile_gamma.numpy().copy()
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.hidden[1].kernel.numpy(), kernel)
    assert not np.allclose(model.hidden[1].profile_gamma.numpy(), profile)


def test_atp_alternates_weight_and_profile_rounds(data):
    model = adam_mlp(profile=zoo.profiles.Profile("linear", trainable=True))
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            profile = [v.numpy().copy() for v in model.profile_variables]
            kernel = model.hidden[1].kernel.numpy().copy()
            snapshots.append((profile, kernel))

    tesla = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5], validation_data=data, patience=5, alternate_profile=True
    )
    model.fit(*data, batch_size=16, epochs=4, callbacks=[tesla, Snapshot()], verbose=0)
    changed = []
    for (p0, k0), (p1, k1) in zip(snapshots, snapshots[1:]):
        changed.append(
            (any(np.abs(a - b).max() > 0 for a, b in zip(p0, p1)), np.abs(k1 - k0).max() > 0)
        )
    # Epoch 0 trained weights; then profile, weights, profile: never both.
    assert changed == [(True, False), (False, True), (True, False)]
    for gamma in model.profile_variables:
        assert np.all(np.diff(gamma.numpy()) <= 0)  # projected to non-increasing
    assert model.update_group == "all"  # back to "all" after training


def test_atp_needs_a_trainable_profile(data):
    tesla = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5], validation_data=data, alternate_profile=True
    )
    with pytest.raises(ValueError, match="trainable profile"):
        adam_mlp().fit(*data, epochs=1, callbacks=[tesla], verbose=0)


# -- Non-uniform sub-nets ---------------------------------------------------------


def test_reordering_keeps_the_full_width_function(data):
    model = adam_mlp(profile="linear", profile_boundaries=(0.5,))
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    before = model(data[0]).numpy()
    assert zoo.reorder_channels(model) is model
    np.testing.assert_allclose(model(data[0]), before, atol=1e-4)
    # The first hidden layer's channels now come by decreasing L1 norm.
    norms = sum(np.abs(b.kernel.numpy()).sum(0) for b in model.hidden[0].branches)
    assert np.all(np.diff(norms) <= 1e-6) and len(zoo.width_groups(model)) == 2
    # Adam's moments of the old order are gone, not applied to other channels.
    from zoo.optimizer_slots import optimizer_slots

    slots = optimizer_slots(model.optimizer, model.trainable_variables)
    assert slots and all(not np.any(s.numpy()) for s in slots)


def test_non_uniform_sub_nets_take_a_ratio_per_group(data):
    model = adam_mlp()
    x = data[0][:8]
    assert model.num_width_groups == 2
    np.testing.assert_allclose(model(x, layer_ratios=[0.5, 0.5]), model(x, compute_ratio=0.5))
    hidden = model.flatten(model.rescale(x))
    h0 = model.hidden[0](hidden, compute_ratio=1.0)  # group 0 at 1.0 keeps all 100
    dense_1, classifier = model.hidden[1], model.classifier
    h1 = np.maximum(h0.numpy() @ dense_1.kernel.numpy()[:, :20] + dense_1.bias.numpy()[:20], 0)
    expected = h1 @ classifier.kernel.numpy()[:20] + classifier.bias.numpy()
    np.testing.assert_allclose(model(x, layer_ratios=[1.0, 0.2]), expected, atol=1e-5)
    assert zoo.cost(model, layer_ratios=[1.0, 0.2])["flops"] == 64 * 100 + 100 * 20 + 20 * 10
    with pytest.raises(ValueError, match="one ratio per width group"):
        model(x, layer_ratios=[0.5])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        model(x, layer_ratios=[0.5, 1.5])
    with pytest.raises(ValueError, match="not a chain"):
        zoo.build("resnet20", input_shape=(8, 8, 1), width=0.25)(x, layer_ratios=[0.5])


def test_non_uniform_sampler_trains_sampled_sub_nets(data):
    model, record = adam_mlp(), RecordPlans()
    sampler = callbacks.SubnetSampler(
        ratios=[1.0, 0.5, 0.25], nonuniform=True, sandwich=True, num_ratios=3
    )
    model.fit(*data, batch_size=16, epochs=1, callbacks=[sampler, record], verbose=0)
    plans = record.plans
    assert all(
        p["layer_ratios"][0] == [1.0, 1.0] and p["layer_ratios"][-1] == [0.25, 0.25] for p in plans
    )
    middles = {tuple(p["layer_ratios"][1]) for p in plans}
    assert any(a != b for a, b in middles)  # the groups got different ratios
    # One training step at a fixed non-uniform plan moves only what it uses.
    model = adam_mlp()
    model.set_training_plan([1.0], layer_ratios=[[1.0, 0.3]])
    before = model.classifier.kernel.numpy().copy()
    model.fit(data[0][:16], data[1][:16], batch_size=16, epochs=1, verbose=0)
    after = model.classifier.kernel.numpy()
    assert np.abs(after[:30] - before[:30]).max() > 0
    np.testing.assert_array_equal(after[30:], before[30:])


def test_non_uniform_sampler_needs_a_chain_model(data):
    model = zoo.build("resnet20", input_shape=(8, 8, 1), width=0.25)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with pytest.raises(ValueError, match="not a chain"):
        model.fit(
            *data,
            epochs=1,
            callbacks=[callbacks.SubnetSampler(ratios=[1.0, 0.5], nonuniform=True)],
            verbose=0,
        )


@pytest.mark.parametrize("per", ["epoch", "batch"])
def test_sampler_repeats_the_draws_of_an_epoch_rerun_after_a_mid_epoch_backup(data, tmp_path, per):
    x, y = data[0][:32], data[1][:32]  # two batches an epoch

    def run(extra, backup_dir):
        model, record = mlp(0.0), RecordPlans()
        sampler = callbacks.SubnetSampler(ratios=[1.0, 0.75, 0.5, 0.25], per=per, seed=1)
        backup = keras.callbacks.BackupAndRestore(str(backup_dir), save_freq=1)
        model.fit(
            x, y, batch_size=16, epochs=5, callbacks=[backup, sampler, record, *extra], verbose=0
        )
        return [p["ratios"] for p in record.plans]

    uninterrupted = run([], tmp_path / "whole")
    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt(epoch=2, batch=1)], tmp_path / "cut")  # backed up after batch 0
    assert run([], tmp_path / "cut") == uninterrupted[4:]  # epoch 2 again, then 3 and 4


def test_profile_stages_must_end_at_the_models_profile_boundaries(data):
    model = adam_mlp(profile_boundaries=(0.3,))
    scheduler = callbacks.ProfileScheduler(stages=[((0.0, 0.5), 1), ((0.5, 1.0), 1)])
    with pytest.raises(ValueError, match=r"split the ratios at \[0.3\].*stages end at \[0.5\]"):
        model.fit(*data, epochs=1, callbacks=[scheduler], verbose=0)


def test_profile_stages_warn_that_weight_decay_moves_the_frozen_block(data):
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.compile(
        keras.optimizers.AdamW(1e-3, weight_decay=0.01), "sparse_categorical_crossentropy"
    )
    scheduler = callbacks.ProfileScheduler(stages=[((0.0, 0.5), 1), ((0.5, 1.0), 1)])
    with pytest.warns(UserWarning, match="weight decay shrinks the frozen block"):
        model.fit(*data, epochs=1, callbacks=[scheduler], verbose=0)


def test_a_subclassed_plan_callback_keeps_its_window_and_resets_the_plan(data):
    class HalfOrFull(callbacks.SubnetSampler):
        pass

    model = mlp(learning_rate=0.0)
    record = RecordPlans()
    sampler = HalfOrFull(ratios=[1.0, 0.5], seed=4)
    model.fit(*data, batch_size=32, epochs=1, callbacks=[sampler, record], verbose=0)
    assert [p["ratios"] for p in record.plans] == [sampler.sample(0), sampler.sample(1)]
    assert model.training_plan["ratios"] == [1.0]

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import callbacks
import zoo


@pytest.fixture(scope="module")
def data():
    x, y = zoo.datasets.load_arrays("digits", "train")
    return x[:64], y[:64]


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
    tesla = callbacks.TaskwiseEarlyStopping([0.25, 1.0, 0.5], validation_data=data, patience=2, steps_per_round=1)
    model.fit(*data, batch_size=16, epochs=10, callbacks=[tesla, record], verbose=0)
    current = [plan["ratios"][0] for plan in record.plans]
    # Round 1 sets the best value, rounds 2 and 3 do not improve: switch.
    assert current == [1.0] * 3 + [0.5] * 3 + [0.25] * 3
    assert len(record.plans) == 9  # stopped after the last task


def test_aggregated_loss_follows_the_formula(data):
    tesla = callbacks.TaskwiseEarlyStopping([1.0, 0.5, 0.25], validation_data=data, alpha=0.3)
    a = 0.3
    assert tesla.task_weights(0) == [1.0]
    np.testing.assert_allclose(tesla.task_weights(1), [a, 1 - a])
    # A_2 = a * (a * L0 + (1 - a) * L1) + (1 - a) * L2
    np.testing.assert_allclose(tesla.task_weights(2), [a * a, a * (1 - a), 1 - a])
    assert callbacks.TaskwiseEarlyStopping([1.0, 0.5], data, aggregation="sum").task_weights(1) == [1, 1]


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


def test_random_order_draws_open_tasks_and_stops(data):
    model, record = mlp(learning_rate=0.0), RecordPlans()
    tesla = callbacks.TaskwiseEarlyStopping(
        [1.0, 0.5, 0.25], validation_data=data, order="random", patience=1, steps_per_round=1, seed=3
    )
    model.fit(*data, batch_size=16, epochs=20, callbacks=[tesla, record], verbose=0)
    drawn = [plan["ratios"][0] for plan in record.plans]
    assert set(drawn) == {1.0, 0.5, 0.25}
    assert len(drawn) == 6  # each task: one improving round, one flat round


def test_backup_and_restore_resumes_on_the_same_task(data, tmp_path):
    x, y = data[0][:16], data[1][:16]

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("interrupted")

    def run(extra):
        model = mlp(learning_rate=0.0)
        tesla = callbacks.TaskwiseEarlyStopping([1.0, 0.5, 0.25], validation_data=(x, y), patience=1)
        record = RecordPlans()
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        model.fit(x, y, batch_size=16, epochs=5, callbacks=[backup, tesla, record] + extra, verbose=0)
        return record

    with pytest.raises(RuntimeError, match="interrupted"):
        first = run([Interrupt()])
    # Epochs 0-1 ran task 0, epoch 2 task 1; the backup holds the end of epoch 2.
    resumed = run([])
    assert resumed.plans[0]["ratios"][0] == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ratios=[]), "empty"),
        (dict(ratios=[1.0, 1.5]), r"\(0, 1\]"),
        (dict(ratios=[1.0], alpha=1.0), "alpha"),
        (dict(ratios=[1.0], order="shuffled"), "order"),
        (dict(ratios=[1.0, 0.5], distribution=[1.0]), "distribution"),
        (dict(ratios=[1.0], patience=0), "patience"),
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


def test_sampler_does_not_retrace(data):
    model = mlp(0.01)
    traces = []
    step = model.train_step
    model.train_step = lambda d: (traces.append(1), step(d))[1]
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    traced = len(traces)
    sampler = callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=3)
    model.fit(*data, batch_size=16, epochs=2, callbacks=[sampler], verbose=0)
    assert len(traces) == traced


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


def test_logger_tensorboard_runs_read_back(data, tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    model = mlp(0.01)
    logger = callbacks.OperatingPointLogger(data, ratios=[1.0, 0.5, 0.25], log_dir=str(tmp_path), hparams={"seed": 0})
    model.fit(*data, batch_size=16, epochs=2, callbacks=[logger], verbose=0)
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path))
    runs.Reload()
    assert {"r=1.0", "r=0.5", "r=0.25"} <= set(runs.Runs())
    events = runs.Tensors("r=0.25", "operating_point/accuracy")
    assert [e.step for e in events] == [0, 1]
    mult_adds = tf.make_ndarray(runs.Tensors("r=0.25", "operating_point/mult_adds")[0].tensor_proto)
    assert float(mult_adds) == zoo.cost(model, 0.25)["flops"]
    root = runs.Runs()["."]
    assert "accuracy_vs_mult_adds" in root["tensors"]
    assert "custom_scalars__config__" in root["tensors"] and "_hparams_/session_start_info" in root["tensors"]


# -- BatchNormCalibration -------------------------------------------------------


def test_calibration_restores_accuracy():
    x, y = zoo.datasets.load_arrays("digits", "train")
    model = zoo.build("resnet20", input_shape=(8, 8, 1), width=0.5, operating_points=[0.5, 1.0])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
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

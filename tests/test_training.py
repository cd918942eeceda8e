import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import counting_traces

import zoo
from zoo.layers import DynamicBatchNormalization


def digits(n=256):
    x, y = zoo.datasets.load_arrays("digits", "train")
    return x[:n], y[:n]


def compiled(model, learning_rate=3e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_default_plan_is_ratio_one():
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    assert model.training_plan == {"ratios": [1.0], "weights": [1.0], "distillation": 0.0}


def test_plan_trains_every_ratio():
    x, y = digits()
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    model.set_training_plan([1.0, 0.25], distillation=0.5)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    accuracy = zoo.evaluate_ratios(model, (x, y), [1.0, 0.25])
    assert accuracy[1.0] > 0.9 and accuracy[0.25] > 0.8


def test_only_ratio_one_leaves_narrow_widths_untrained():
    x, y = digits()
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    before = model.hidden[1].kernel.numpy().copy()
    model.set_training_plan([0.25])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    after = model.hidden[1].kernel.numpy()
    # At 0.25 only the first 25x25 block of the 100x100 kernel is used.
    assert not np.allclose(before[:25, :25], after[:25, :25])
    np.testing.assert_array_equal(before[25:], after[25:])
    np.testing.assert_array_equal(before[:, 25:], after[:, 25:])


def test_changing_the_plan_between_batches_traces_each_plan_size_once():
    x, y = digits(128)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    traces = counting_traces(model)
    rng = np.random.default_rng(0)

    class ChangePlan(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            size = batch % 4 + 1
            self.model.set_training_plan(rng.uniform(0.1, 1.0, size), distillation=rng.uniform())

    # The step is traced once per plan size (the entries are unrolled);
    # new ratios, weights and distillation of a size traced before trace nothing.
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[ChangePlan()], verbose=0)
    assert len(traces) == 4
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[ChangePlan()], verbose=0)
    assert len(traces) == 4


@pytest.mark.parametrize("form", ["arrays", "dataset"])
def test_the_first_fit_traces_its_training_step_once(form):
    # Keras would create the optimizer's momenta and the metrics inside the
    # first trace, and a function that creates variables traces twice.
    x, y = digits(64)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    traces = counting_traces(model)
    if form == "arrays":
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert len(traces) == 1
    assert model.optimizer.built


@pytest.mark.parametrize("labels", ["sparse", "one_hot"])
def test_metrics_built_before_the_first_fit_log_only_its_data(labels):
    # Built on a zero example whose prediction is right, then cleared.
    x, y = digits(64)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    sparse = labels == "sparse"
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),  # the weights stay as they are
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if sparse
        else keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    traces = counting_traces(model)
    targets = y if sparse else keras.utils.to_categorical(y, 10)
    history = model.fit(x, targets, epochs=1, batch_size=16, verbose=0)
    assert len(traces) == 1
    right = np.argmax(model.predict(x, verbose=0), -1) == y
    assert history.history["accuracy"][0] == pytest.approx(np.mean(right), abs=1e-6)


@pytest.mark.parametrize("form", ["arrays", "dataset"])
def test_evaluate_traces_its_test_step_once_and_logs_only_its_data(form):
    x, y = digits(64)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    traces = counting_traces(model, "test_step")
    if form == "arrays":
        logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        logs = model.evaluate(dataset, verbose=0, return_dict=True)
    assert len(traces) == 1
    right = np.argmax(model.predict(x, verbose=0), -1) == y
    assert logs["accuracy"] == pytest.approx(np.mean(right), abs=1e-6)


class SetPlan(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.model.set_training_plan([1.0, 0.5], distillation=1.0)


def test_the_plan_is_not_a_weight_so_checkpoints_do_not_bring_it_back(tmp_path):
    x, y = digits(64)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    assert not [v.path for v in model.weights if "plan" in v.path]
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "last.keras"))
    best = keras.callbacks.EarlyStopping("loss", patience=5, restore_best_weights=True)
    model.fit(x, y, epochs=2, callbacks=[SetPlan(), checkpoint, best], verbose=0)
    model.set_training_plan([1.0])
    best.on_train_end()  # restores the best epoch's weights, plan untouched
    assert model.training_plan["ratios"] == [1.0]
    loaded = keras.saving.load_model(tmp_path / "last.keras")
    assert loaded.training_plan == {"ratios": [1.0], "weights": [1.0], "distillation": 0.0}


def test_weights_saved_with_the_plan_as_weights_still_load(tmp_path):
    import h5py

    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.training_state.assign(np.arange(model.training_state.shape[0], dtype="float32"))
    path = str(tmp_path / "legacy.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "r+") as f:  # the layout before the plan left the weights
        own = f["vars"]
        own.move("0", "6")
        for i in range(6):
            own[str(i)] = np.full(3, 0.5, "float32")
    fresh = zoo.build("mlp", input_shape=(8, 8, 1))
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.training_state.numpy(), model.training_state.numpy())
    np.testing.assert_array_equal(
        fresh.predict(digits(4)[0], verbose=0), model.predict(digits(4)[0], verbose=0)
    )
    assert fresh.training_plan["ratios"] == [1.0]


def test_training_data_must_not_carry_ratios():
    x, y = digits(32)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1)))
    with pytest.raises(ValueError, match="training plan"):
        model.fit({"images": x, "compute_ratio": np.ones(32, "float32")}, y, verbose=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ratios=[]), "1 to 32 ratios"),
        (dict(ratios=[1.0, 1.2]), r"`ratios` must be in \(0, 1\]"),
        (dict(ratios=[1.0, 0.5], weights=[1.0]), "one weight per ratio"),
        (dict(ratios=[1.0], distillation=2.0), "distillation"),
    ],
)
def test_bad_plans_are_rejected(kwargs, message):
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=message):
        model.set_training_plan(**kwargs)


def test_trainable_profile_stays_non_increasing():
    x, y = digits(128)
    profile = zoo.profiles.Profile("linear", trainable=True)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1), profile=profile), learning_rate=0.05)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    gamma = model.hidden[1].profile_gamma.numpy()
    assert not np.allclose(gamma, zoo.profiles.linear(100))
    assert np.all(np.diff(gamma) <= 1e-7)


def test_xla_is_refused_with_a_warning():
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    with pytest.warns(UserWarning, match="without XLA"):
        model.compile(optimizer="adam", loss="mse", jit_compile=True)
    assert model.jit_compile is False


def test_batchnorm_statistics_per_point_and_calibration():
    x, y = zoo.datasets.load_arrays("digits", "train")
    model = compiled(
        zoo.build(
            "resnet20",
            blocks_per_stage=1,
            input_shape=(8, 8, 1),
            width=0.5,
            operating_points=[0.25, 1.0],
        )
    )
    model.set_training_plan([1.0])
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    bn = next(l for l in model.dynamic_layers if isinstance(l, DynamicBatchNormalization))
    # Only the 1.0 row was trained; the 0.25 row still holds its initial values.
    assert np.all(bn.moving_mean.numpy()[0] == 0)
    zoo.calibrate_batchnorm(model, x, steps=4)
    assert not np.all(bn.moving_mean.numpy()[0] == 0)
    # Calibrated statistics are the exact mean of the batch statistics.
    batches = [x[i : i + 256] for i in range(0, 1024, 256)]
    stem = model.stem[0]
    features = [model.normalize(b) for b in batches]
    means = [stem(f, compute_ratio=1.0).numpy().mean(axis=(0, 1, 2)) for f in features]
    np.testing.assert_allclose(bn.moving_mean.numpy()[1], np.mean(means, 0), rtol=1e-3, atol=1e-4)


def test_calibration_rejects_ratios_without_statistics():
    model = zoo.build("resnet20", input_shape=(8, 8, 1), width=0.25, operating_points=[0.5, 1.0])
    with pytest.raises(ValueError, match="operating points"):
        zoo.calibrate_batchnorm(model, np.zeros((8, 8, 8, 1)), ratios=[0.3])


def test_inference_never_sees_stale_kernels(tmp_path):
    x, y = digits(64)
    model = compiled(zoo.build("mlp", input_shape=(8, 8, 1), hidden_units=(256, 256)))
    predict = lambda: model.predict(
        {"images": x, "compute_ratio": np.full(64, 0.5, "float32")}, verbose=0
    )
    fresh = lambda: zoo.extract_subnet(model, 0.5)(x).numpy()
    before = predict()  # fills the caches of the 256x256 layer
    np.testing.assert_allclose(before, fresh(), rtol=1e-4, atol=1e-4)
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(predict(), fresh(), rtol=1e-4, atol=1e-4)
    model.save_weights(tmp_path / "trained.weights.h5")
    model.set_weights([w * 0.5 for w in model.get_weights()])
    np.testing.assert_allclose(predict(), fresh(), rtol=1e-4, atol=1e-4)
    model.load_weights(tmp_path / "trained.weights.h5")
    np.testing.assert_allclose(predict(), fresh(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(predict(), before)


def test_reset_optimizer_state_zeroes_momenta_only():
    x, y = digits(64)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    inner = keras.optimizers.SGD(0.01, momentum=0.9, use_ema=True)
    model.compile(keras.optimizers.LossScaleOptimizer(inner), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    optimizer = model.optimizer
    kept = [optimizer.dynamic_scale, inner.iterations, inner.learning_rate]
    kept += inner._model_variables_moving_average
    before = [np.array(v) for v in kept]
    model.reset_optimizer_state()
    assert all(not np.any(np.array(m)) for m in inner.momentums)
    for variable, value in zip(kept, before):
        np.testing.assert_array_equal(np.array(variable), value)
    assert float(inner.learning_rate) == pytest.approx(0.01)


def test_evaluate_ratios_uses_the_loss_compiled_last():
    x, y = digits(64)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    zoo.evaluate_ratios(model, (x, y), [1.0])  # before compile: no loss
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    _, losses = zoo.evaluate_ratios(model, (x, y), [1.0], return_loss=True)
    expected = model.evaluate(x, y, verbose=0)
    assert losses[1.0] == pytest.approx(expected, rel=1e-4)


def test_evaluate_ratios_traces_once_for_every_batch_size_and_ratio():
    x, y = digits(100)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    accuracy = zoo.evaluate_ratios(model, (x, y), [1.0, 0.5, 0.25], batch_size=64)  # 64 + 36
    step = zoo.evaluation._evaluation_step(model)
    assert step.experimental_get_tracing_count() == 1
    logits = model.predict(x, verbose=0)
    assert accuracy[1.0] == pytest.approx(np.mean(np.argmax(logits, -1) == y))

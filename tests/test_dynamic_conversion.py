"""`zoo.dynamic`: Keras models no one here wrote, made dynamic-width."""

import keras
import numpy as np
import pytest
from conftest import counting_traces, random_images

import callbacks
import zoo

L = keras.layers
POINTS = [0.25, 0.5, 0.75, 1.0]


def randomize_statistics(model, seed=0):
    """Non-trivial batch-norm statistics in a Keras model, so that the
    converted copy must carry them over."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_statistics(layer, seed + 1)
        elif isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


def sequential_cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Rescaling(1 / 255),
            L.Conv2D(16, 3, activation="relu"),
            L.BatchNormalization(),
            L.MaxPooling2D(),
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.Flatten(),
            L.Dropout(0.2),
            L.Dense(10, activation="softmax"),
        ],
        name="sequential_cnn",
    )


def two_branch():
    """Two branches concatenated, a nested Sequential block, hard-swish as
    keras.applications writes it (operations on tensors), squeeze-and-
    excitation, a separable convolution, layer norm and a residual add."""
    images = keras.Input((16, 16, 3))
    x = L.Normalization(mean=[120.0] * 3, variance=[3600.0] * 3)(images)
    a = L.Conv2D(12, 3, strides=2, padding="same", use_bias=False)(x)
    a = L.ReLU(6.0)(L.BatchNormalization()(a))
    b = L.SeparableConv2D(8, 3, strides=2, padding="same")(x)
    x = L.Concatenate()([a, b])
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    block = keras.Sequential(
        [keras.Input((8, 8, 20)), L.Conv2D(48, 1), L.LayerNormalization()], name="block"
    )
    x = block(x)
    x = x * keras.ops.relu6(x + 3.0) / 6.0
    squeeze = L.Reshape((1, 1, 48))(L.GlobalAveragePooling2D()(x))
    squeeze = L.Conv2D(12, 1, activation="relu")(squeeze)
    squeeze = L.Conv2D(48, 1, activation="hard_sigmoid")(squeeze)
    x = L.Multiply()([x, squeeze])
    x = L.Add()([x, L.Conv2D(48, 3, padding="same")(L.ZeroPadding2D(1)(L.Cropping2D(1)(x)))])
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(images, L.Dense(10)(x), name="two_branch")


def conv1d_model():
    signals = keras.Input((40, 4))
    x = L.Conv1D(16, 5, activation="relu")(signals)
    x = L.MaxPooling1D()(L.BatchNormalization()(x))
    x = L.Conv1D(16, 3, padding="same")(x)
    return keras.Model(signals, L.Dense(5)(L.GlobalAveragePooling1D()(x)), name="conv1d")


SMALL_MODELS = {"sequential": sequential_cnn, "two_branch": two_branch, "conv1d": conv1d_model}


def application(name):
    arguments = {"alpha": 0.35} if name == "MobileNetV2" else {}
    model = getattr(keras.applications, name)(
        input_shape=(32, 32, 3), weights=None, classes=10, **arguments
    )
    return randomize_statistics(model)


@pytest.fixture(scope="module", params=sorted(SMALL_MODELS))
def small(request):
    keras.utils.set_random_seed(0)
    base = randomize_statistics(SMALL_MODELS[request.param]())
    return base, zoo.dynamic(base, operating_points=POINTS)


def images_for(model, batch=4):
    return random_images(model, batch)


def check_equal_at_full_width(base, model, x):
    expected = base(x, training=False).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5 * scale)
    inputs = {"images": x, "compute_ratio": np.ones(len(x), "float32")}
    np.testing.assert_allclose(model(inputs).numpy(), expected, atol=1e-5 * scale)


def check_extraction_and_cost(model, x, ratio=0.5):
    subnet = zoo.extract_subnet(model, ratio)
    expected = model(x, compute_ratio=ratio).numpy()
    np.testing.assert_allclose(subnet(x).numpy(), expected, atol=1e-5 * np.abs(expected).max())
    assert all(type(l).__module__.startswith("keras") for l in subnet.layers)
    counted = zoo.cost(model, compute_ratio=ratio)
    assert zoo.static_cost(subnet)["flops"] == counted["flops"]
    assert counted["flops"] < 0.4 * zoo.cost(model)["flops"]


def check_round_trip(model, x, path):
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    for ratio in (1.0, 0.5):
        np.testing.assert_allclose(
            loaded(x, compute_ratio=ratio).numpy(), model(x, compute_ratio=ratio).numpy(), atol=1e-6
        )


def sandwich_step(model, x, run_eagerly=False):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not model.outputs_probabilities)
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"], run_eagerly=run_eagerly)
    y = np.arange(len(x)) % model.num_classes
    sampler = callbacks.SubnetSampler(ratios=[1.0, 0.75, 0.5, 0.25], sandwich=True, num_ratios=3)
    traces = counting_traces(model)
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, callbacks=[sampler])
    assert np.isfinite(history.history["loss"][0])
    if not run_eagerly:
        assert len(traces) == 1


# -- small models: every feature -------------------------------------------------


def test_small_models_equal_the_original_at_full_width(small):
    base, model = small
    check_equal_at_full_width(base, model, images_for(model))


def test_small_models_extract_and_count(small):
    base, model = small
    check_extraction_and_cost(model, images_for(model))


def test_mixed_ratios_give_each_image_its_own_result(small):
    _, model = small
    x = images_for(model)
    ratios = np.array([0.25, 0.5, 0.75, 1.0], "float32")
    mixed = model({"images": x, "compute_ratio": ratios}).numpy()
    for i, ratio in enumerate(ratios):
        alone = model(x[i : i + 1], compute_ratio=float(ratio)).numpy()[0]
        np.testing.assert_allclose(mixed[i], alone, atol=1e-5 * np.abs(alone).max())


def test_small_models_round_trip_and_train(small, tmp_path):
    _, model = small
    x = images_for(model, batch=8)
    check_round_trip(model, x, str(tmp_path / "m.keras"))
    sandwich_step(model, x)


def test_reordering_keeps_the_function_and_groups_stay_consistent(small):
    _, model = small
    x = images_for(model)
    before = model(x).numpy()
    zoo.reorder_channels(model, data=x)
    np.testing.assert_allclose(model(x).numpy(), before, atol=1e-5 * np.abs(before).max())
    zoo.reorder_channels(model, norm="l2")
    np.testing.assert_allclose(model(x).numpy(), before, atol=1e-5 * np.abs(before).max())
    # Each group's producers now compute their channels by decreasing L2 norm.
    for group in zoo.width_groups(model):
        norms = sum(
            np.sqrt((p.kernel.numpy().reshape(-1, group.channels) ** 2).sum(0))
            for p in group.producers
        )
        assert np.all(np.diff(norms) <= 1e-5)


def test_non_uniform_sub_nets_and_calibration(small):
    _, model = small
    x = images_for(model, batch=8)
    groups = model.num_width_groups
    np.testing.assert_allclose(
        model(x, layer_ratios=[0.5] * groups).numpy(), model(x, compute_ratio=0.5).numpy()
    )
    ratios = [0.25 + 0.75 * (i % 2) for i in range(groups)]
    assert np.isfinite(model(x, layer_ratios=ratios).numpy()).all()
    uniform = zoo.cost(model, compute_ratio=0.25)["flops"]
    assert uniform < zoo.cost(model, layer_ratios=ratios)["flops"] < zoo.cost(model)["flops"]
    zoo.calibrate_batchnorm(model, x, steps=1, batch_size=8)
    assert np.isfinite(model(x, compute_ratio=0.25).numpy()).all()


def test_two_branch_concatenation_keeps_each_inputs_first_channels():
    keras.utils.set_random_seed(0)
    model = zoo.dynamic(two_branch(), operating_points=POINTS)
    concat_bn = next(
        l
        for l in model.dynamic_layers
        if isinstance(l, zoo.layers.DynamicBatchNormalization) and l._input_segments
    )
    # 12 + 8 channels concatenated: at 0.5 the first 6 of each block.
    assert list(concat_bn.static_input_index(0.5)) == [0, 1, 2, 3, 4, 5, 12, 13, 14, 15]
    assert model.outputs_probabilities is False
    assert zoo.dynamic(sequential_cnn()).outputs_probabilities is True


def test_preprocessing_of_the_images_is_kept_as_it_is():
    images = keras.Input((20, 20, 3))
    x = L.RandomFlip("horizontal")(images)
    x = L.Resizing(16, 16)(L.Reshape((20, 20, 3))(x))
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3)(x))
    base = keras.Model(images, L.Dense(4)(x))
    model = zoo.dynamic(base)
    kept = [type(layer) for layer in model.graph_layers[:3]]
    assert kept == [L.RandomFlip, L.Reshape, L.Resizing]
    x = images_for(model)
    expected = base(x, training=False).numpy()
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-5)


def test_exports_serve_the_converted_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.dynamic(two_branch(), operating_points=[0.5, 1.0])
    x = images_for(model)
    model.export(str(tmp_path / "saved"), verbose=False)
    path = str(tmp_path / "m.tflite")
    zoo.export_litert(model, path)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(path).get_signature_runner("ratio_050")
    expected = model(x, compute_ratio=0.5).numpy()
    np.testing.assert_allclose(runner(images=x)["logits"], expected, rtol=1e-4, atol=1e-4)


# -- keras.applications ----------------------------------------------------------


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121"])
def test_keras_applications_convert(name, tmp_path):
    keras.utils.set_random_seed(0)
    base = application(name)
    model = zoo.dynamic(base, operating_points=POINTS)
    x = images_for(model)
    check_equal_at_full_width(base, model, x)
    check_extraction_and_cost(model, x)
    check_round_trip(model, x[:2], str(tmp_path / "m.keras"))
    # Eager: the traced step of a 150-layer graph takes minutes to build.
    sandwich_step(model, x, run_eagerly=True)


# -- clear errors, before anything is built ----------------------------------------


def functional(body, shape=(8, 8, 3)):
    images = keras.Input(shape)
    return keras.Model(images, body(images))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


def shared_conv():
    conv = L.Conv2D(3, 3, padding="same")
    return functional(lambda x: conv(conv(x)))


def two_inputs():
    inputs = [keras.Input((4,)), keras.Input((4,))]
    return keras.Model(inputs, L.Dense(2)(L.Concatenate()(inputs)))


ERRORS = {
    "an unsupported layer": (
        lambda: functional(lambda x: L.Dense(2)(L.LSTM(4)(L.Reshape((36, 4))(L.Conv2D(4, 3)(x))))),
        r"'reshape.*' \(Reshape\): it reshapes to \(36, 4\).*Supported: Conv1D",
    ),
    "an unsupported layer class": (
        lambda: functional(lambda x: L.PReLU()(L.Conv2D(4, 3)(x))),
        r"\(PReLU\): this class is not supported",
    ),
    "a shared layer": (shared_conv, r"called at more than one place"),
    "a subclassed model": (Subclassed, r"subclassed Subclassed"),
    "two inputs": (two_inputs, r"one input"),
    "a concatenation on another axis": (
        lambda: functional(lambda x: L.Concatenate(axis=1)([L.Conv2D(4, 1)(x), L.Conv2D(4, 1)(x)])),
        r"concatenates on axis 1",
    ),
    "an addition of differently concatenated tensors": (
        lambda: functional(
            lambda x: L.Add()(
                [L.Concatenate()([L.Conv2D(4, 1)(x), L.Conv2D(4, 1)(x)]), L.Conv2D(8, 1)(x)]
            )
        ),
        r"cannot be cut alike",
    ),
    "a dilated convolution": (
        lambda: functional(lambda x: L.Conv2D(4, 3, dilation_rate=2)(x)),
        r"it is dilated",
    ),
    "an undefined input shape": (
        lambda: functional(lambda x: L.Conv2D(4, 3)(x), shape=(None, None, 3)),
        r"fixed input shape",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_models_that_cannot_be_cut_get_a_clear_error(case):
    make, message = ERRORS[case]
    model = make()
    if isinstance(model, Subclassed):
        model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=message):
        zoo.dynamic(model)
    with pytest.raises(ValueError, match=message):  # every call, not only the first
        zoo.dynamic(model)


def test_the_callback_suite_trains_a_converted_model(tmp_path):
    """IDP's profile stages (frozen channels, concatenated inputs included),
    TESLA, per-epoch calibration, logging per operating point and a backup."""
    keras.utils.set_random_seed(0)
    model = zoo.dynamic(two_branch(), operating_points=[0.5, 1.0])
    x = images_for(model, batch=16)
    y = np.arange(16) % 10
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    suite = [
        callbacks.ProfileScheduler(stages=[((0.0, 0.5), 1), ((0.5, 1.0), 1)]),
        callbacks.OperatingPointLogger((x, y), ratios=[1.0, 0.5], log_dir=str(tmp_path / "logs")),
        callbacks.BatchNormCalibration((x, y), steps=1, frequency="epoch"),
        callbacks.ShardedBackupAndRestore(str(tmp_path / "backup")),
    ]
    narrow_before = model(x, compute_ratio=0.5).numpy()
    history = model.fit(x, y, batch_size=8, epochs=2, callbacks=suite, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    # The second stage trained (0.5, 1.0] with the first half frozen; the
    # first stage trained ratio 0.5 itself, so the narrow model changed.
    assert np.abs(model(x, compute_ratio=0.5).numpy() - narrow_before).max() > 0
    tesla = callbacks.TaskwiseEarlyStopping([1.0, 0.5], validation_data=(x, y), steps_per_round=1)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[tesla], verbose=0)

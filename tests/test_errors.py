import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo

BAD_RATIOS = [0.0, -0.5, 1.5, float("nan")]


@pytest.fixture(scope="module")
def model():
    return zoo.build("mlp", input_shape=(8, 8, 1))


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_bad_ratio_raises_naming_compute_ratio(model, ratio):
    x = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"`compute_ratio` must be in \(0, 1\]"):
        model(x, compute_ratio=ratio)
    with pytest.raises(ValueError, match=r"`compute_ratio` must be in \(0, 1\]"):
        model({"images": x, "compute_ratio": np.array([0.5, ratio], "float32")})


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_bad_ratio_raises_in_predict(model, ratio):
    x = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"compute_ratio` must be in \(0, 1\]"):
        model.predict({"images": x, "compute_ratio": np.array([0.5, ratio], "float32")}, verbose=0)
    dataset = tf.data.Dataset.from_tensors(
        {"images": x, "compute_ratio": np.array([0.5, ratio], "float32")}
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"compute_ratio` must be in \(0, 1\]"):
        model.predict(dataset, verbose=0)


def test_wrong_image_shape(model):
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 8, 8, 1\)"):
        model(np.zeros((2, 28, 28, 1), "float32"))


def test_wrong_ratio_shape(model):
    x = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="one ratio per sample"):
        model({"images": x, "compute_ratio": np.full((3,), 0.5, "float32")})
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        model({"images": x, "compute_ratio": np.full((2, 2), 0.5, "float32")})


X = np.zeros((4, 8, 8, 1), "float32")


def exported_signature_call(model, ratios):
    """Calls the exported SavedModel's signature with `ratios`."""
    import tempfile

    folder = tempfile.mkdtemp()
    model.export(folder, verbose=False)
    signature = tf.saved_model.load(folder).signatures["serving_default"]
    return signature(images=X, compute_ratio=np.asarray(ratios, "float32"))


def cli_call(*arguments):
    """Runs the CLI; its argparse error (stderr and exit) as a ValueError."""
    import contextlib
    import io

    from zoo import cli

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return cli.main(list(arguments))
    except SystemExit as exit:
        raise ValueError(errors.getvalue() or str(exit)) from None


HOSTILE_INPUTS = {
    "exported signature, ratios of another count": (
        lambda m: exported_signature_call(m, [0.5, 0.5]),
        "one value per image",
    ),
    "CLI, a negative epoch count": (
        lambda m: cli_call("train", "--epochs", "-1"),
        "--epochs: must be a whole number >= 1",
    ),
    "CLI, a damaged .keras file": (
        lambda m: cli_call("evaluate", __file__),
        "is not a .keras file",
    ),
    "ratio as a string": (lambda m: m(X, compute_ratio="0.5"), "must be a number in"),
    "ratio as a string in the dict": (
        lambda m: m({"images": X, "compute_ratio": "0.5"}),
        "must be a number in",
    ),
    "misspelled ratio key": (
        lambda m: m({"images": X, "compute_ration": 0.5}),
        "'images' and 'compute_ratio'",
    ),
    "predict, ratios of another count": (
        lambda m: m.predict({"images": X, "compute_ratio": np.full(3, 0.5, "float32")}),
        r"shape \(3,\) for 4 images",
    ),
    "evaluate, ratios of another count": (
        lambda m: m.evaluate({"images": X, "compute_ratio": [0.5] * 3}, np.zeros(4)),
        r"shape \(3,\) for 4 images",
    ),
    "predict, other image shape after a first call": (
        lambda m: (m.predict(X, verbose=0), m.predict(np.zeros((4, 28, 28, 1)), verbose=0)),
        r"expects images of shape \(batch, 8, 8, 1\)",
    ),
    "evaluate, other image shape after a first call": (
        lambda m: (
            m.evaluate(X, np.zeros(4), verbose=0),
            m.evaluate(np.zeros((4, 32, 32, 3)), np.zeros(4), verbose=0),
        ),
        r"expects images of shape \(batch, 8, 8, 1\)",
    ),
    "fit, other image shape after a first fit": (
        lambda m: (
            m.fit(X, np.zeros(4), verbose=0),
            m.fit(np.zeros((4, 32, 32, 3)), np.zeros(4), verbose=0),
        ),
        r"expects images of shape \(batch, 8, 8, 1\)",
    ),
    "extract_subnet of a Keras model": (
        lambda m: zoo.extract_subnet(keras.Sequential([keras.layers.Dense(2)]), 0.5),
        "slices a zoo dynamic model",
    ),
    "cost of a Keras model": (
        lambda m: zoo.cost(keras.Sequential([keras.layers.Dense(2)]), 0.5),
        "counts zoo models",
    ),
    "calibrating batch norm on NaN images": (
        lambda m: zoo.calibrate_batchnorm(
            zoo.build("resnet20", width=0.25, blocks_per_stage=1), np.full((4, 32, 32, 3), np.nan)
        ),
        "NaN or infinite pixels",
    ),
    "vgg16 on images too small for its pools": (
        lambda m: zoo.build("vgg16", input_shape=(8, 8, 3)),
        "at least 32x32",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_INPUTS))
def test_hostile_input_gets_a_clear_error(case):
    call, message = HOSTILE_INPUTS[case]
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Graph errors carry the message after TensorFlow's own header.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
        call(model)


@pytest.mark.parametrize(
    "inputs",
    [
        {"images": X, "compute_ratio": 0.5},
        {"images": X, "compute_ratio": [0.5] * 4},
        {"images": X, "compute_ratio": np.float32(0.5)},
        {"images": X, "compute_ratio": np.full((4, 1), 0.5, "float32")},
    ],
)
def test_a_ratio_as_a_number_list_or_column_is_taken(model, inputs):
    expected = model(X, compute_ratio=0.5).numpy()
    np.testing.assert_allclose(model(inputs).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, atol=1e-6)


def test_unknown_input_key(model):
    with pytest.raises(ValueError, match="'images' and 'compute_ratio'"):
        model({"pixels": np.zeros((2, 8, 8, 1))})


@pytest.mark.parametrize("function", [zoo.cost, zoo.extract_subnet])
def test_static_tools_reject_bad_ratios(model, function):
    with pytest.raises(ValueError, match="compute_ratio"):
        function(model, 1.2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: zoo.layers.DynamicConv2D(4, 3, padding="causal"),
        lambda: zoo.layers.DynamicDepthwiseConv2D(3, padding="causal"),
        lambda: zoo.effort.EffortConv2D(4, 3, padding="causal"),
    ],
)
def test_convolutions_name_the_accepted_paddings(make):
    with pytest.raises(ValueError, match="`padding` must be 'same' or 'valid'; got 'causal'"):
        make()


def test_subnet_rejects_an_unsupported_input_dtype(model):
    with pytest.raises(ValueError, match=r"`input_dtype` must be one of \('float32', 'uint8'\)"):
        zoo.extract_subnet(model, 0.5, input_dtype="int64")


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_a_standalone_layer_rejects_bad_tensor_ratios(ratio):
    layer = zoo.layers.DynamicDense(4)
    x = np.ones((2, 3), "float32")
    for given in (tf.constant(ratio), np.float32(ratio), tf.constant([0.5, ratio])):
        with pytest.raises(ValueError, match=r"`compute_ratio` must be in \(0, 1\]"):
            layer(x, compute_ratio=given)
    traced = tf.function(lambda r: layer(x, compute_ratio=r))
    with pytest.raises(tf.errors.InvalidArgumentError, match="compute_ratio"):
        traced(tf.constant(ratio))


def test_cost_takes_one_ratio_or_a_ratio_per_group_not_both(model):
    with pytest.raises(ValueError, match="not both"):
        zoo.cost(model, compute_ratio=0.5, layer_ratios=[1.0, 0.2])

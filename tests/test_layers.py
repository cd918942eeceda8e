import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers import (
    DynamicBatchNormalization,
    DynamicConv2D,
    DynamicDense,
    DynamicDepthwiseConv2D,
    ZeroPadShortcut,
)
from zoo.layers.leading_block import first_channels, leading_block
from zoo.ratio import channel_width

RATIOS = [1.0, 0.7, 0.5, 0.25, 0.1]


def zero_beyond(x, n):
    x = x.copy()
    x[..., n:] = 0
    return x


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("profile", ["uniform", "linear"])
def test_dense_equals_full_layer_on_first_channels(ratio, profile):
    layer = DynamicDense(12, profile=profile)
    x = np.random.default_rng(0).normal(size=(3, 20)).astype("float32")
    full = layer(zero_beyond(x, channel_width(ratio, 20))).numpy()
    sliced = layer(x, compute_ratio=ratio).numpy()
    n_out = channel_width(ratio, 12)
    assert sliced.shape == (3, n_out)
    np.testing.assert_allclose(sliced, full[:, :n_out], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", RATIOS)
def test_conv2d_equals_full_layer_on_first_channels(ratio):
    layer = DynamicConv2D(16, 3, strides=2, profile="harmonic")
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 8)).astype("float32")
    full = layer(zero_beyond(x, channel_width(ratio, 8))).numpy()
    sliced = layer(x, compute_ratio=ratio).numpy()
    n_out = channel_width(ratio, 16)
    assert sliced.shape == (2, 5, 5, n_out)
    np.testing.assert_allclose(sliced, full[..., :n_out], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", RATIOS)
def test_depthwise_equals_full_layer_on_first_channels(ratio):
    layer = DynamicDepthwiseConv2D(3, use_bias=True)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 10)).astype("float32")
    n = channel_width(ratio, 10)
    np.testing.assert_allclose(
        layer(x, compute_ratio=ratio).numpy(), layer(x).numpy()[..., :n], rtol=1e-5, atol=1e-6
    )


def test_batchnorm_uses_the_nearest_operating_point():
    layer = DynamicBatchNormalization(operating_points=(0.25, 0.5, 1.0))
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    layer(x)
    layer.moving_mean.assign(np.arange(3)[:, None] * np.ones((3, 8)))
    y = layer(x, compute_ratio=0.45).numpy()  # nearest point 0.5: mean 1
    expected = (x[:, :4] - 1.0) / np.sqrt(1.0 + layer.epsilon)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", [0.55, 0.65, 0.75])
def test_batchnorm_static_layer_takes_the_graphs_row_halfway_between_points(ratio):
    layer = DynamicBatchNormalization(operating_points=(0.5, 0.6, 0.7, 0.8, 1.0))
    x = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    layer(x)
    layer.moving_mean.assign(np.arange(5)[:, None] * np.ones((5, 10)))
    n = channel_width(ratio, 10)
    np.testing.assert_allclose(
        layer.static_layer(ratio)(x[:, :n]).numpy(),
        layer(x, compute_ratio=ratio).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


def test_batchnorm_training_updates_only_its_point_and_width():
    layer = DynamicBatchNormalization(operating_points=(0.5, 1.0), momentum=0.0)
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(64, 8)).astype("float32")
    layer(x)
    layer(x, compute_ratio=0.5, training=True)
    mean = layer.moving_mean.numpy()
    np.testing.assert_allclose(mean[0, :4], x[:, :4].mean(0), rtol=1e-4)
    assert np.all(mean[0, 4:] == 0) and np.all(mean[1] == 0)


def test_zero_pad_shortcut_keeps_input_channels_first():
    layer = ZeroPadShortcut(8, strides=2)
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 4)).astype("float32")
    y = layer(x, compute_ratio=0.5).numpy()
    assert y.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(y[..., :2], x[:, ::2, ::2, :2])
    assert np.all(y[..., 2:] == 0)


@pytest.mark.parametrize(
    "ratio, channels, multiple, expected",
    [(0.5, 64, 1, 32), (0.3, 10, 1, 3), (0.01, 10, 1, 1), (0.26, 64, 8, 24), (0.99, 64, 8, 64)],
)
def test_channel_width(ratio, channels, multiple, expected):
    assert channel_width(ratio, channels, multiple) == expected


def test_channel_multiple_rounds_widths_up():
    layer = DynamicDense(64, channel_multiple=8)
    y = layer(np.ones((1, 64), "float32"), compute_ratio=0.26)
    assert y.shape == (1, 24)


@pytest.mark.parametrize(
    "layer",
    [
        DynamicDense(5, profile="exp"),
        DynamicConv2D(4, 3, profile=dict(name="steps", levels=[1.0, 0.5])),
        DynamicDepthwiseConv2D(3),
        DynamicBatchNormalization(operating_points=(0.5, 1.0)),
        ZeroPadShortcut(8),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layers_round_trip_through_config(layer):
    shape = (1, 4) if isinstance(layer, DynamicDense) else (1, 4, 4, 4)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    y = layer(x, compute_ratio=0.5).numpy()
    clone = layer.__class__.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, compute_ratio=0.5).numpy(), y, rtol=1e-6)
    assert keras.saving.get_registered_object(keras.saving.get_registered_name(type(layer)))


def test_leading_block_cuts_like_slicing_and_keeps_static_lengths():
    kernel = tf.random.normal([3, 3, 16, 32])
    block = leading_block(kernel, {-2: tf.constant(8, "int64"), -1: 16})
    np.testing.assert_array_equal(block, kernel[..., :8, :16])
    x = tf.random.normal([2, 4, 4, 16])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        kept, whole = first_channels(x, tf.constant(5)), first_channels(x, 16)
    np.testing.assert_array_equal(kept, x[..., :5])
    np.testing.assert_array_equal(whole, x)
    expected = np.zeros(x.shape)
    expected[..., :5] = 1.0
    np.testing.assert_array_equal(tape.gradient(kept, x), expected)

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 16]), tf.TensorSpec([], "int32")])
    def static_shape(x, n):
        assert first_channels(x, n).shape.as_list() == [None, 4, 4, None]
        return first_channels(x, n)

    static_shape(x, tf.constant(3))

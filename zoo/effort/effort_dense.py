"""A dense layer with DyVEDeep's neuron-level knob (SPET)."""

import keras
import numpy as np
import tensorflow as tf

from zoo.effort import spet


@keras.saving.register_keras_serializable(package="zoo")
class EffortDense(keras.layers.Layer):
    """`keras.layers.Dense` whose ReLU neurons may stop early (SPET).

    Each output neuron first sums its most significant inputs (the order of
    total weight magnitude, fixed by `calibrate`) and, when that partial
    sum is below `-spet_margin` times the spread of its remaining terms,
    outputs zero without the rest (see `zoo.effort.spet`). SDSS and SFMA
    work on feature maps and do not apply to dense layers.

    Args:
        units: output size.
        activation: `None` or `"relu"`.
        use_bias: whether to add a bias.
        spet_margin: `None` (off), a float, `inf` (never stops) or `-inf`
            (always stops: every output zero).
        spet_fraction: the share of inputs in the partial sum.
        **kwargs: standard layer arguments.

    Example:
    >>> layer = EffortDense(100, activation="relu", spet_margin=1.0)
    >>> y = layer(np.random.rand(2, 784).astype("float32"))
    """

    def __init__(
        self, units, activation=None, use_bias=True, spet_margin=None, spet_fraction=0.5, **kwargs
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = spet.check_arguments(activation, spet_margin, spet_fraction, self.name)
        self.use_bias = bool(use_bias)
        self.spet_margin = None if spet_margin is None else float(spet_margin)
        self.spet_fraction = float(spet_fraction)
        # A dense layer has none of the feature-map knobs.
        self.sdss_threshold = self.sfma_threshold = None

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"EffortDense takes `(batch, features)` inputs; got shape {tuple(input_shape)}."
            )
        features = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(features, self.units))
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
            if self.use_bias
            else None
        )
        self.spet_order, self.remainder_scale = spet.add_weights(self, features, self.units)

    @property
    def knobs(self):
        return ("spet",) if self.spet_margin is not None else ()

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def dense_operations(self):
        return 2 * self.kernel.shape[0] * self.units

    def _spet_channels(self):
        split = spet.split(self.kernel.shape[0], self.spet_fraction)
        return self.spet_order[:split], self.spet_order[split:]

    def call(self, inputs):
        return self._forward(inputs)[0]

    def _forward(self, x):
        x = tf.convert_to_tensor(x, self.compute_dtype)
        bias = self.bias if self.use_bias else 0.0
        if self.spet_margin is None:
            outputs = tf.matmul(x, self.kernel) + bias
            return (tf.nn.relu(outputs) if self.activation else outputs), None
        first, rest = self._spet_channels()
        partial = tf.matmul(tf.gather(x, first, axis=1), tf.gather(self.kernel, first)) + bias
        stopped = spet.saturated(partial, self.spet_margin, self.remainder_scale)
        if rest.shape[0]:
            remainder = tf.matmul(tf.gather(x, rest, axis=1), tf.gather(self.kernel, rest))
        else:
            remainder = tf.zeros_like(partial)
        return spet.output(partial, remainder, stopped), stopped

    def measure(self, inputs):
        """`(outputs, operations)` of one pass (see `operations`)."""
        outputs, stopped = self._forward(inputs)
        return outputs, self._count(tf.shape(inputs)[0], stopped)

    def operations(self, inputs):
        """Scalar operations per input: `"total"`, `"dot_products"`, `"spet"`
        (its comparisons), and zero `"sdss"` and `"sfma"`."""
        return self.measure(inputs)[1]

    def _count(self, batch, stopped):
        zeros = tf.zeros([batch])
        if stopped is None:
            dot = tf.fill([batch], float(self.dense_operations))
            return {"total": dot, "dot_products": dot, "spet": zeros, "sdss": zeros, "sfma": zeros}
        first, rest = self._spet_channels()
        continued = float(self.units) - tf.reduce_sum(tf.cast(stopped, "float32"), axis=1)
        dot = 2.0 * first.shape[0] * self.units + continued * 2.0 * rest.shape[0]
        comparisons = tf.fill([batch], float(self.units))
        return {
            "total": dot + comparisons,
            "dot_products": dot,
            "spet": comparisons,
            "sdss": zeros,
            "sfma": zeros,
        }

    def calibrate(self, inputs):
        """Fixes SPET's input order and the spread of the remaining terms."""
        kernel = self.kernel.numpy()
        self.spet_order.assign(spet.significance_order(kernel))
        x = np.asarray(inputs, "float32")
        first, _ = self._spet_channels()
        first = first.numpy()
        self.remainder_scale.assign(spet.remainder_scale(x[:, first] @ kernel[first], x @ kernel))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "spet_margin": self.spet_margin,
                "spet_fraction": self.spet_fraction,
            }
        )
        return config

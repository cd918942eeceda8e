"""A 2-D convolution with DyVEDeep's three effort knobs."""

import math

import keras
import numpy as np
import tensorflow as tf

from zoo.effort import sdss, sfma, spet
from zoo.layers.conv_utils import conv_arguments, conv_output_spatial, same_padding


@keras.saving.register_keras_serializable(package="zoo")
class EffortConv2D(keras.layers.Layer):
    """`keras.layers.Conv2D` that does less work where the input allows.

    Each knob is off when its threshold is `None`; on, it decides per input
    (see `zoo.effort.spet`, `zoo.effort.sdss` and `zoo.effort.sfma`):

    - SFMA first merges alike input maps (fewer input channels).
    - SDSS computes the output at every other row and column, fills the
      positions in between where the sampled neighbours are insignificant
      or alike, and computes the others exactly.
    - SPET computes each neuron that is computed (ReLU layers only) over its
      most significant input channels first and stops where that partial
      sum predicts ReLU saturation.

    With every knob off the layer is the plain convolution. `calibrate`
    fixes SPET's channel order and the scales the thresholds are measured
    in; `operations` counts the scalar operations done per input.

    Args:
        filters: number of output channels.
        kernel_size: int or pair.
        strides: int or pair.
        padding: `"same"` or `"valid"`.
        use_bias: whether to add a bias.
        activation: `None` or `"relu"`.
        spet_margin: SPET stops a neuron when its partial sum is below
            `-spet_margin` times the spread of its remaining terms; `inf`
            never stops, `-inf` always stops (every output zero).
        spet_fraction: the share of input channels in SPET's partial sum.
        sdss_threshold: SDSS fills a position when its neighbours are within
            `sdss_threshold` map standard deviations of zero or of each
            other; negative computes every position, `inf` fills all.
        sfma_threshold: SFMA merges neighbouring maps whose normalized
            distance is at most this, in [0, 1]; negative never merges.
        **kwargs: standard layer arguments.

    Example:
    >>> layer = EffortConv2D(16, 3, activation="relu", spet_margin=1.0, sdss_threshold=0.1)
    >>> y = layer(np.random.rand(1, 8, 8, 4).astype("float32"))
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        activation=None,
        use_bias=True,
        spet_margin=None,
        spet_fraction=0.5,
        sdss_threshold=None,
        sfma_threshold=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size, self.strides, self.padding = conv_arguments(kernel_size, strides, padding)
        self.activation = spet.check_arguments(activation, spet_margin, spet_fraction, self.name)
        self.use_bias = bool(use_bias)
        self.spet_margin = None if spet_margin is None else float(spet_margin)
        self.spet_fraction = float(spet_fraction)
        self.sdss_threshold = None if sdss_threshold is None else float(sdss_threshold)
        self.sfma_threshold = None if sfma_threshold is None else float(sfma_threshold)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.input_spatial = tuple(int(d) for d in input_shape[1:3])
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (channels, self.filters)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )
        self.spet_order, self.remainder_scale = spet.add_weights(self, channels, self.filters)
        self.output_scale = self.add_weight(
            name="output_scale", shape=(self.filters,), initializer="ones", trainable=False
        )

    @property
    def knobs(self):
        """The knobs that are on, e.g. `("spet", "sdss")`."""
        settings = (
            ("spet", self.spet_margin),
            ("sdss", self.sdss_threshold),
            ("sfma", self.sfma_threshold),
        )
        return tuple(name for name, value in settings if value is not None)

    @property
    def output_spatial(self):
        return conv_output_spatial(self.input_spatial, self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_spatial + (self.filters,)

    def call(self, inputs):
        return self._forward(inputs)[0]

    def operations(self, inputs):
        """Scalar operations per input (`[batch]` tensors): `"total"` and its
        parts `"dot_products"` (multiplies and adds), `"spet"`, `"sdss"` and
        `"sfma"` (what each knob adds to decide)."""
        return self._forward(inputs, count=True)[1]

    def measure(self, inputs):
        """`(outputs, operations)` of one pass (see `operations`)."""
        return self._forward(inputs, count=True)

    @property
    def dense_operations(self):
        """Scalar operations of the plain convolution, per input."""
        taps = math.prod(self.kernel_size)
        return 2 * taps * self.kernel.shape[-2] * self.filters * math.prod(self.output_spatial)

    def _forward(self, x, count=False):
        x = tf.convert_to_tensor(x, self.compute_dtype)
        kernel = self.kernel
        groups = None
        if self.sfma_threshold is not None:
            groups = sfma.alike_groups(x, self.sfma_threshold)
            if self.spet_margin is None:
                # One input merges for real (fewer channels); a batch, whose
                # inputs merge differently, substitutes maps in place.
                x, kernel = tf.cond(
                    tf.shape(x)[0] == 1,
                    lambda: sfma.merged(x, kernel, *groups),
                    lambda: (sfma.substitute(x, groups[0]), kernel),
                )
            else:
                x = sfma.substitute(x, groups[0])
        padded = self._pad(x)
        if self.sdss_threshold is None:
            step = self.strides
            values, stopped = self._neurons(
                lambda channels: self._convolve(padded, kernel, channels, step)
            )
            exact = None
        else:
            values, stopped, exact = self._sampled_forward(padded, kernel)
        return values, (self._count(x, groups, stopped, exact) if count else None)

    def _sampled_forward(self, padded, kernel):
        height, width = self.output_spatial
        step = tuple(2 * s for s in self.strides)
        samples, sample_stopped = self._neurons(
            lambda channels: self._convolve(padded, kernel, channels, step)
        )
        values, exact = sdss.fill(samples, self.sdss_threshold, self.output_scale, height, width)
        positions = tf.where(tf.reduce_any(exact, axis=-1))
        patches = self._patches(padded, positions)
        computed, stopped = self._neurons(
            lambda channels: self._multiply(patches, kernel, channels)
        )
        shape = tf.concat(
            [
                tf.shape(padded, out_type="int64")[:1],
                tf.constant([height, width, self.filters], "int64"),
            ],
            axis=0,
        )
        exact_values = tf.scatter_nd(positions, computed, shape)
        values = tf.where(exact, exact_values, values)
        if stopped is not None:
            stopped = (sample_stopped, tf.scatter_nd(positions, stopped, shape))
        return values, stopped, exact

    def _neurons(self, linear):
        """Biased, activated outputs of `linear(channels)` (a sum over those
        input channels, all when `None`), and SPET's stopped neurons."""
        bias = self.bias if self.use_bias else 0.0
        if self.spet_margin is None:
            outputs = linear(None) + bias
            return (tf.nn.relu(outputs) if self.activation else outputs), None
        first, rest = self._spet_channels()
        partial = linear(first) + bias
        stopped = spet.saturated(partial, self.spet_margin, self.remainder_scale)
        remainder = linear(rest) if rest.shape[0] else tf.zeros_like(partial)
        return spet.output(partial, remainder, stopped), stopped

    def _spet_channels(self):
        split = spet.split(self.kernel.shape[-2], self.spet_fraction)
        return self.spet_order[:split], self.spet_order[split:]

    def _pad(self, x):
        if self.padding == "valid":
            return x
        pads = [
            same_padding(n, k, s)
            for n, k, s in zip(self.input_spatial, self.kernel_size, self.strides)
        ]
        return tf.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])

    @staticmethod
    def _convolve(padded, kernel, channels, strides):
        if channels is not None:
            padded = tf.gather(padded, channels, axis=3)
            kernel = tf.gather(kernel, channels, axis=2)
        return tf.nn.conv2d(padded, kernel, strides, "VALID")

    def _patches(self, padded, positions):
        """The receptive fields of output `positions` (`[N, 3]`): `[N, taps, C]`."""
        rows, columns = self.kernel_size
        offsets = np.array([[0, i, j] for i in range(rows) for j in range(columns)], "int64")
        scale = tf.constant([1, self.strides[0], self.strides[1]], "int64")
        indices = (positions * scale)[:, tf.newaxis, :] + offsets[tf.newaxis]
        return tf.gather_nd(padded, indices)

    @staticmethod
    def _multiply(patches, kernel, channels):
        if channels is not None:
            patches = tf.gather(patches, channels, axis=2)
            kernel = tf.gather(kernel, channels, axis=2)
        rows = tf.reshape(patches, [tf.shape(patches)[0], -1])
        return tf.matmul(rows, tf.reshape(kernel, [-1, kernel.shape[-1]]))

    def _count(self, x, groups, stopped, exact):
        """Scalar operations per input, by kind: the dot products, SPET's
        checks, SDSS's decisions and SFMA's grouping."""
        ones = tf.ones([tf.shape(x)[0]])
        neuron_operations = self._neuron_operations(groups, ones)
        if exact is None:
            dot, spet_ops, sdss_ops = self._grid_operations(neuron_operations, stopped, ones)
        else:
            dot, spet_ops, sdss_ops = self._sampled_operations(
                neuron_operations, stopped, exact, ones
            )
        sfma_ops = self._sfma_operations(groups, ones)
        return {
            "total": dot + spet_ops + sdss_ops + sfma_ops,
            "dot_products": dot,
            "spet": spet_ops,
            "sdss": sdss_ops,
            "sfma": sfma_ops,
        }

    def _sfma_operations(self, groups, ones):
        if groups is None:
            return 0.0 * ones
        taps = math.prod(self.kernel_size)
        channels = self.kernel.shape[-2]
        return sfma.overhead(
            math.prod(self.input_spatial), channels, groups[2], taps * self.filters
        )

    def _neuron_operations(self, groups, ones):
        """A function giving the dot-product and SPET operations of `count`
        neurons, `continued` of them past SPET's partial sum."""
        taps = math.prod(self.kernel_size)
        if self.spet_margin is None:
            terms = float(self.kernel.shape[-2]) * ones if groups is None else groups[2]
            full_cost = 2.0 * taps * tf.cast(terms, "float32")
            return lambda count, continued: (count * full_cost, 0.0 * ones)
        first, rest = self._spet_channels()
        if groups is None:
            first_terms, rest_terms = float(first.shape[0]) * ones, float(rest.shape[0]) * ones
        else:
            first_terms = spet.distinct_groups(groups[1], first)
            rest_terms = spet.distinct_groups(groups[1], rest) if rest.shape[0] else 0.0 * ones
        first_cost, rest_cost = 2.0 * taps * first_terms, 2.0 * taps * rest_terms
        return lambda count, continued: (count * first_cost + continued * rest_cost, count)

    def _grid_operations(self, neuron_operations, stopped, ones):
        """Every output position computed."""
        height, width = self.output_spatial
        neurons = float(height * width * self.filters) * ones
        continued = neurons if stopped is None else neurons - _per_input(stopped)
        dot, spet_ops = neuron_operations(neurons, continued)
        return dot, spet_ops, 0.0 * ones

    def _sampled_operations(self, neuron_operations, stopped, exact, ones):
        """SDSS: every other position in each direction, then the positions
        whose neighbours disagree (`exact`)."""
        height, width = self.output_spatial
        samples = float(((height + 1) // 2) * ((width + 1) // 2) * self.filters) * ones
        exact_count = _per_input(exact)
        if stopped is None:
            continued_samples, continued_exact = samples, exact_count
        else:
            continued_samples = samples - _per_input(stopped[0])
            continued_exact = exact_count - _per_input(tf.logical_and(exact, stopped[1]))
        dot_s, spet_s = neuron_operations(samples, continued_samples)
        dot_e, spet_e = neuron_operations(exact_count, continued_exact)
        sdss_ops = float(sdss.decision_operations(height, width) * self.filters) * ones
        return dot_s + dot_e, spet_s + spet_e, sdss_ops

    def calibrate(self, inputs):
        """Fixes SPET's channel order and the scales, from layer inputs."""
        kernel = self.kernel.numpy()
        self.spet_order.assign(spet.significance_order(kernel))
        padded = self._pad(tf.convert_to_tensor(inputs, "float32"))
        bias = self.bias.numpy() if self.use_bias else 0.0
        full = self._convolve(padded, kernel, None, self.strides).numpy() + bias
        first, _ = self._spet_channels()
        partial = self._convolve(padded, kernel, first, self.strides).numpy() + bias
        self.remainder_scale.assign(spet.remainder_scale(partial, full))
        activated = np.maximum(full, 0.0) if self.activation else full
        self.output_scale.assign(activated.reshape(-1, self.filters).std(axis=0).astype("float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "spet_margin": self.spet_margin,
                "spet_fraction": self.spet_fraction,
                "sdss_threshold": self.sdss_threshold,
                "sfma_threshold": self.sfma_threshold,
            }
        )
        return config


def _per_input(mask):
    """How many entries of `mask` are true, per input (the first axis)."""
    return tf.reduce_sum(tf.cast(mask, "float32"), axis=tf.range(1, tf.rank(mask)))

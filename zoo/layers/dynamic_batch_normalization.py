"""Batch normalization with statistics per operating point."""

import keras
import tensorflow as tf

from zoo.layers.dynamic_layer import DynamicLayer, group_ratio
from zoo.layers.point_statistics import PointStatistics
from zoo.ratio import nearest_point_index


@keras.saving.register_keras_serializable(package="zoo")
class DynamicBatchNormalization(PointStatistics, DynamicLayer):
    """Batch normalization on the first channels, with statistics per ratio.

    The mean and variance of a channel depend on how many channels fed it,
    so one set of moving statistics cannot serve every width (the failure
    slimmable networks fixed with switchable batch norm). This layer keeps a
    row of moving statistics per operating point; a ratio uses the row of
    its nearest operating point, in training (which updates that row) and at
    inference. `gamma` and `beta` are shared. `zoo.calibrate_batchnorm`
    recomputes the rows exactly from a few batches.

    Args:
        operating_points: ratios to keep statistics for (sorted on use).
        momentum: momentum of the moving statistics.
        epsilon: added to the variance.
        synchronized: batch statistics over the global batch under
            `tf.distribute` (Keras's synchronized batch norm).
        **kwargs: `channel_multiple` and standard layer arguments;
            `profile` and `cut_outputs`, which every dynamic layer takes, are
            accepted and ignored (the channels follow the input's).

    Example:
    >>> bn = DynamicBatchNormalization(operating_points=(0.25, 0.5, 1.0))
    >>> y = bn(np.ones((2, 8, 8, 64), "float32"), compute_ratio=0.5)  # 32 channels
    """

    def __init__(
        self,
        operating_points=(1.0,),
        momentum=0.99,
        epsilon=1e-3,
        synchronized=False,
        **kwargs,
    ):
        kwargs.pop("profile", None)
        kwargs.pop("cut_outputs", None)
        super().__init__(**kwargs)
        self._init_statistics(operating_points, momentum, epsilon, synchronized)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.input_channels = channels
        self.input_rank = len(input_shape)
        self._build_statistics(channels)

    def call(self, inputs, compute_ratio=None, training=False):
        context = self.context(compute_ratio)
        n = self.input_width(context, self.input_channels)
        x = self.kept_inputs_of(inputs, n)
        block = lambda weight, axis=0: self.input_block(weight, n, axis, context)
        if training:
            mean, variance = self._batch_moments(x)
            kept = None if self._input_segments is None else self.input_index(context)
            self._update_statistics(self._point_index(context), mean, variance, kept)
        elif context.is_mixed:
            index = context.sample_point_index(self.operating_points)
            shape = tf.concat([tf.shape(x)[:1], tf.ones([x.shape.rank - 2], "int32"), [n]], 0)
            mean = tf.reshape(block(tf.gather(self.moving_mean, index), 1), shape)
            variance = tf.reshape(block(tf.gather(self.moving_variance, index), 1), shape)
        else:
            # The scale and offset of every channel, then two slices: the
            # arithmetic of `tf.nn.batch_normalization` with fewer slices.
            index = self._point_index(context)
            scale = tf.math.rsqrt(self.moving_variance[index] + self.epsilon) * self.gamma
            offset = self.beta - self.moving_mean[index] * scale
            return x * tf.cast(block(scale), x.dtype) + tf.cast(block(offset), x.dtype)
        return tf.nn.batch_normalization(
            x, mean, variance, block(self.beta), block(self.gamma), self.epsilon
        )

    def _point_index(self, context):
        if context.group_ratios is not None and self._input_group is not None:
            return context.group_point_index(self._input_group, self.operating_points)
        return context.point_index(self.operating_points)

    def channel_axes(self, context):
        kept = self.kept_inputs(context, self.input_width(context, self.input_channels))
        return [(self.gamma, {0: kept}), (self.beta, {0: kept})]

    def compute_output_shape(self, input_shape):
        return input_shape

    def point_row(self, ratio):
        return nearest_point_index(group_ratio(ratio, self._input_group), self.operating_points)

    def static_layer(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        row = self.point_row(ratio)
        layer = keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, name=self.name
        )
        layer.build((None,) * (self.input_rank - 1) + (n,))
        weights = (self.gamma, self.beta, self.moving_mean[row], self.moving_variance[row])
        layer.set_weights([self.static_input_block(w.numpy(), n, 0, ratio) for w in weights])
        return layer

    def cost(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        return {"flops": 0, "params": 2 * n, "dot_products": 0}

    def get_config(self):
        config = super().get_config()
        for key in ("profile", "cut_outputs"):
            config.pop(key)
        config.update(self._statistics_config())
        return config

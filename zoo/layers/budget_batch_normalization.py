"""Batch normalization with statistics per operating point, chosen per input."""

import keras
import tensorflow as tf

from zoo.layers.point_statistics import PointStatistics


@keras.saving.register_keras_serializable(package="zoo")
class BudgetBatchNormalization(PointStatistics, keras.layers.Layer):
    """Batch normalization whose moving statistics follow each input's budget.

    When gates drop blocks and channels per input (LC-Net), what reaches a
    channel, and so its mean and variance, depends on the budget: one set
    of moving statistics, averaged over all budgets trained, fits none of
    them. This layer keeps one row of moving statistics per operating
    point, like `DynamicBatchNormalization`, but picks the row per input
    (`point_index`, one entry per input), so a batch can mix budgets.
    Training normalizes with the batch's statistics and updates the row of
    the batch's operating point (a training pass has one budget);
    `zoo.calibrate_batchnorm` recomputes the rows exactly.

    At inference, `channels` normalizes only those channels of the full
    layer (the input holds just them), for gated convolutions that compute
    a subset of their filters.

    Args:
        operating_points: the budgets to keep statistics for (sorted on use).
        momentum: momentum of the moving statistics.
        epsilon: added to the variance.
        synchronized: batch statistics over the global batch under
            `tf.distribute`.
        **kwargs: standard layer arguments.

    Example:
    >>> bn = BudgetBatchNormalization(operating_points=(0.25, 0.5, 1.0))
    >>> y = bn(x, point_index=[0, 2])  # first input at budget 0.25, second at 1.0
    """

    def __init__(
        self, operating_points=(1.0,), momentum=0.99, epsilon=1e-3, synchronized=False, **kwargs
    ):
        super().__init__(**kwargs)
        self._init_statistics(operating_points, momentum, epsilon, synchronized)

    def build(self, input_shape):
        self._build_statistics(int(input_shape[-1]))

    def point_index(self, budget):
        """Each input's operating point: the nearest to its budget."""
        points = tf.constant(self.operating_points, "float32")
        return tf.argmin(tf.abs(tf.reshape(budget, [-1, 1]) - points), axis=1, output_type=tf.int32)

    def call(self, inputs, point_index, channels=None, training=False):
        point_index = tf.convert_to_tensor(point_index, "int32")
        gamma, beta = self.gamma, self.beta
        if channels is not None:
            gamma, beta = tf.gather(gamma, channels), tf.gather(beta, channels)
        if training:
            if channels is not None:
                raise ValueError("Training normalizes every channel; `channels` is for inference.")
            mean, variance = self._batch_moments(inputs)
            self._update_statistics(point_index[0], mean, variance)
        else:
            mean, variance = (
                tf.gather(self.moving_mean, point_index),
                tf.gather(self.moving_variance, point_index),
            )
            if channels is not None:
                mean, variance = (
                    tf.gather(mean, channels, axis=1),
                    tf.gather(variance, channels, axis=1),
                )
            shape = tf.concat(
                [tf.shape(mean)[:1], tf.ones([inputs.shape.rank - 2], "int32"), tf.shape(mean)[1:]],
                0,
            )
            mean, variance = tf.reshape(mean, shape), tf.reshape(variance, shape)
        return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self._statistics_config())
        return config

"""Batch-norm weights with one row of moving statistics per operating point."""

import tensorflow as tf

from zoo.ratio import check_operating_points


class PointStatistics:
    """Mixin for batch norms that keep moving statistics per operating point.

    Holds `operating_points`, `momentum`, `epsilon` and `synchronized`
    (batch statistics over the global batch under `tf.distribute`, as
    Keras's `BatchNormalization(synchronized=True)`), creates `gamma`,
    `beta` and the `(points, channels)` moving mean and variance, and
    updates one row from a batch's moments. `zoo.calibrate_batchnorm`
    recomputes the rows of every layer with this mixin exactly.

    Example:
    >>> class MyBatchNorm(PointStatistics, keras.layers.Layer):
    ...     def __init__(self, operating_points=(1.0,), **kwargs):
    ...         super().__init__(**kwargs)
    ...         self._init_statistics(operating_points, momentum=0.99, epsilon=1e-3)
    """

    def _init_statistics(self, operating_points, momentum, epsilon, synchronized=False):
        self.operating_points = check_operating_points(operating_points)
        self.synchronized = bool(synchronized)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        # Set by `zoo.calibrate_batchnorm` while it recomputes statistics: a
        # step counter that turns the moving average into an exact mean.
        self._calibration_step = None

    def _build_statistics(self, channels):
        points = len(self.operating_points)
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(points, channels), initializer="zeros", trainable=False
        )
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(points, channels), initializer="ones", trainable=False
        )

    def _batch_moments(self, x):
        """Mean and variance of a training batch per channel: over the
        global batch under `tf.distribute` when `synchronized`."""
        axes = list(range(x.shape.rank - 1))
        if self.synchronized:
            return synchronized_moments(x, axes)
        return tf.nn.moments(x, axes=axes)

    def _update_statistics(self, index, mean, variance, channels=None):
        """Moves row `index` towards a batch's moments: of its first channels,
        or of the `channels` given as an index vector."""
        if self._calibration_step is None:
            momentum = tf.constant(self.momentum, self.variable_dtype)
        else:
            step = tf.cast(self._calibration_step, self.variable_dtype)
            momentum = step / (step + 1.0)
        for moving, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            row = moving[index]
            value = tf.cast(value, row.dtype)
            if channels is not None:
                old = tf.gather(row, channels)
                new_row = tf.tensor_scatter_nd_update(
                    row, channels[:, None], old * momentum + value * (1.0 - momentum)
                )
            else:
                n = tf.shape(value)[0]
                new_row = tf.concat([row[:n] * momentum + value * (1.0 - momentum), row[n:]], 0)
            moving.assign(tf.tensor_scatter_nd_update(moving, [[index]], new_row[tf.newaxis]))

    def _statistics_config(self):
        config = {
            "operating_points": list(self.operating_points),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }
        if self.synchronized:
            config["synchronized"] = True
        return config


def synchronized_moments(x, axes):
    """Mean and variance over `axes` of the global batch, on every replica.

    Two passes, as `tf.nn.moments` computes them (the mean, then the mean
    squared deviation from it), so that the variance keeps its precision
    when the mean is large; Keras's synchronized batch norm computes
    `E[x^2] - E[x]^2`, which loses it. On one replica this is
    `tf.nn.moments` itself.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.nn.moments(x, axes=axes)
    total = lambda value: context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    shape = tf.shape(x)
    count = total(tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype))
    mean = total(tf.reduce_sum(x, axis=axes)) / count
    variance = total(tf.reduce_sum(tf.square(x - mean), axis=axes)) / count
    return mean, variance

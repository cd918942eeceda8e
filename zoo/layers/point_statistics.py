"""Batch-norm weights with one row of moving statistics per operating point."""

import tensorflow as tf

from zoo.ratio import check_operating_points


class PointStatistics:
    """Mixin for batch norms that keep moving statistics per operating point.

    Holds `operating_points`, `momentum` and `epsilon`, creates `gamma`,
    `beta` and the `(points, channels)` moving mean and variance, and
    updates one row from a batch's moments. `zoo.calibrate_batchnorm`
    recomputes the rows of every layer with this mixin exactly.

    Example:
    >>> class MyBatchNorm(PointStatistics, keras.layers.Layer):
    ...     def __init__(self, operating_points=(1.0,), **kwargs):
    ...         super().__init__(**kwargs)
    ...         self._init_statistics(operating_points, momentum=0.99, epsilon=1e-3)
    """

    def _init_statistics(self, operating_points, momentum, epsilon):
        self.operating_points = check_operating_points(operating_points)
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

    def _update_statistics(self, index, mean, variance):
        """Moves row `index` towards a batch's moments (of its first channels)."""
        if self._calibration_step is None:
            momentum = tf.constant(self.momentum)
        else:
            step = tf.cast(self._calibration_step, "float32")
            momentum = step / (step + 1.0)
        for moving, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            row = moving[index]
            n = tf.shape(value)[0]
            new_row = tf.concat([row[:n] * momentum + value * (1.0 - momentum), row[n:]], 0)
            moving.assign(tf.tensor_scatter_nd_update(moving, [[index]], new_row[tf.newaxis]))

    def _statistics_config(self):
        return {
            "operating_points": list(self.operating_points),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }

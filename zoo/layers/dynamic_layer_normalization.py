"""Layer normalization over the channels a compute ratio keeps."""

import keras
import tensorflow as tf

from zoo.layers.dynamic_layer import DynamicLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicLayerNormalization(DynamicLayer):
    """`keras.layers.LayerNormalization(axis=-1)` on the first channels.

    At compute ratio `r` it normalizes each position over its kept channels
    only (their mean and variance), then scales and shifts them by the first
    `gamma` and `beta`: the layer normalization of the narrower network.

    Args:
        epsilon: added to the variance.
        center: whether to add `beta`.
        scale: whether to multiply by `gamma`.
        **kwargs: `channel_multiple`, `cut_inputs` and standard layer
            arguments; `profile` and `cut_outputs` are accepted and ignored
            (the channels follow the input's).

    Example:
    >>> norm = DynamicLayerNormalization()
    >>> y = norm(np.ones((2, 10, 64), "float32"), compute_ratio=0.5)  # 32 channels
    """

    def __init__(self, epsilon=1e-3, center=True, scale=True, **kwargs):
        kwargs.pop("profile", None)
        kwargs.pop("cut_outputs", None)
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    def build(self, input_shape):
        self.input_channels = int(input_shape[-1])
        self.input_rank = len(input_shape)
        shape = (self.input_channels,)
        self.gamma = (
            self.add_weight(name="gamma", shape=shape, initializer="ones") if self.scale else None
        )
        self.beta = (
            self.add_weight(name="beta", shape=shape, initializer="zeros") if self.center else None
        )

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        n = self.input_width(context, self.input_channels)
        x = self.kept_inputs_of(inputs, n)
        if context.is_mixed and self.cut_inputs:
            mean, variance = self._own_moments(x, context)
        else:
            mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        block = lambda weight: None if weight is None else self.input_block(weight, n, 0, context)
        return tf.nn.batch_normalization(
            x, mean, variance, block(self.beta), block(self.gamma), self.epsilon
        )

    def _own_moments(self, x, context):
        """Each sample's moments over its own channels, in a batch mixing ratios."""
        keep = self.keep_sample_channels(tf.ones_like(x), context, self.input_channels)
        count = tf.reduce_sum(keep, axis=-1, keepdims=True)
        mean = tf.reduce_sum(x * keep, axis=-1, keepdims=True) / count
        variance = tf.reduce_sum(tf.square(x - mean) * keep, axis=-1, keepdims=True) / count
        return mean, variance

    def channel_axes(self, context):
        kept = self.kept_inputs(context, self.input_width(context, self.input_channels))
        return [(w, {0: kept}) for w in (self.gamma, self.beta) if w is not None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def static_layer(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        layer = keras.layers.LayerNormalization(
            axis=-1, epsilon=self.epsilon, center=self.center, scale=self.scale, name=self.name
        )
        layer.build((None,) * (self.input_rank - 1) + (n,))
        weights = [w for w in (self.gamma, self.beta) if w is not None]
        layer.set_weights([self.static_input_block(w.numpy(), n, 0, ratio) for w in weights])
        return layer

    def cost(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        return {"flops": 0, "params": n * (self.center + self.scale), "dot_products": 0}

    def get_config(self):
        config = super().get_config()
        for key in ("profile", "cut_outputs"):
            config.pop(key)
        config.update(epsilon=self.epsilon, center=self.center, scale=self.scale)
        return config

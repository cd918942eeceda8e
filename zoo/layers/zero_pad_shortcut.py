"""The parameter-free shortcut of CIFAR ResNets, at any width."""

import keras
import tensorflow as tf

from zoo.layers.dynamic_layer import DynamicLayer
from zoo.layers.leading_block import first_channels


@keras.saving.register_keras_serializable(package="zoo")
class ZeroPadShortcut(DynamicLayer):
    """Subsamples by `strides` and pads channels with zeros up to `filters`.

    This is option A of He et al. (2016), the shortcut of the CIFAR
    ResNet-20, with one change that keeps widths nested: the zero channels
    are appended after the input's channels instead of split around them.
    Output channel `i` is input channel `i` at every ratio, so the residual
    addition lines up whatever width the block runs at.

    Args:
        filters: output channels at ratio 1.
        strides: spatial subsampling factor.
        **kwargs: `channel_multiple` and standard layer arguments;
            `profile`, which every dynamic layer takes, is accepted and
            ignored (nothing is summed over channels).

    Example:
    >>> shortcut = ZeroPadShortcut(32, strides=2)
    >>> y = shortcut(np.ones((1, 32, 32, 8), "float32"), compute_ratio=0.5)  # (1, 16, 16, 16)
    """

    def __init__(self, filters, strides=2, **kwargs):
        kwargs.pop("profile", None)
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        self.input_channels = int(input_shape[-1])
        self.input_spatial = tuple(input_shape[1:3])

    def call(self, inputs, compute_ratio=None):
        context = self.context(compute_ratio)
        n_in = self.input_width(context, self.input_channels)
        n_out = self.output_width(context, self.filters)
        x = inputs[:, :: self.strides, :: self.strides] if self.strides > 1 else inputs
        x = first_channels(x, n_in)
        # A narrower sample's channels past its own input width must be the
        # padding zeros, not the wider samples' channels.
        x = self.keep_sample_channels(x, context, self.input_channels)
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, n_out - n_in]])

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if d is None else -(-d // self.strides) for d in input_shape[1:3])
        return (input_shape[0],) + spatial + (self.filters,)

    def static_layer(self, ratio):
        n_in = self.static_input_width(ratio, self.input_channels)
        n_out = self.static_output_width(ratio, self.filters)
        height, width = (-(-d // self.strides) for d in self.input_spatial)
        # Standard layers only: a 1x1 max pool with a stride subsamples, and
        # ZeroPadding3D over a (height, width, channels, 1) view pads channels.
        return keras.Sequential(
            [
                keras.Input(self.input_spatial + (n_in,)),
                keras.layers.MaxPooling2D(pool_size=1, strides=self.strides),
                keras.layers.Reshape((height, width, n_in, 1)),
                keras.layers.ZeroPadding3D(((0, 0), (0, 0), (0, n_out - n_in))),
                keras.layers.Reshape((height, width, n_out)),
            ],
            name=self.name,
        )

    def cost(self, ratio):
        return {"flops": 0, "params": 0, "dot_products": 0}

    def get_config(self):
        config = super().get_config()
        config.pop("profile")
        config.update({"filters": self.filters, "strides": self.strides})
        return config

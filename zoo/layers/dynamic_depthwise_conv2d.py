"""Depthwise convolution whose width follows the compute ratio."""

import math

import keras
import tensorflow as tf

from zoo.layers.conv_utils import conv_arguments, conv_output_shape, conv_output_spatial
from zoo.layers.dynamic_layer import DynamicLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicDepthwiseConv2D(DynamicLayer):
    """`keras.layers.DepthwiseConv2D` (depth multiplier 1) on the first channels.

    A depthwise convolution filters each channel on its own, so at compute
    ratio `r` it simply runs on the first `ceil(r * C)` channels: about `r`
    of the multiply-adds. It sums over no channels, so it takes no profile
    and never needs the per-sample channel restriction of mixed batches.

    Args:
        kernel_size: int or pair.
        strides: int or pair.
        padding: `"same"` or `"valid"`.
        activation: activation applied to the outputs.
        use_bias: whether to add a bias.
        depthwise_initializer: initializer of the kernel.
        depthwise_regularizer: regularizer of the kernel.
        **kwargs: `DynamicLayer` arguments: `channel_multiple`, and
            `cut_inputs`/`cut_outputs` (equal: the channel count is kept);
            `profile` is accepted, as by every dynamic layer, and ignored
            (nothing is summed over channels); standard layer arguments.

    Example:
    >>> dw = DynamicDepthwiseConv2D(3, padding="same", use_bias=False)
    >>> y = dw(np.ones((1, 16, 16, 64), "float32"), compute_ratio=0.5)  # 32 maps
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="same",
        activation=None,
        use_bias=True,
        depthwise_initializer="he_normal",
        depthwise_regularizer=None,
        **kwargs,
    ):
        kwargs.pop("profile", None)
        kwargs.setdefault("cut_inputs", True)
        kwargs.setdefault("cut_outputs", True)
        super().__init__(**kwargs)
        if self.cut_inputs != self.cut_outputs:
            raise ValueError(
                "A depthwise convolution keeps its channel count: `cut_inputs` "
                "and `cut_outputs` must be equal."
            )
        self.kernel_size, self.strides, self.padding = conv_arguments(kernel_size, strides, padding)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer)
        self.depthwise_regularizer = keras.regularizers.get(depthwise_regularizer)

    def build(self, input_shape):
        self.input_channels = int(input_shape[-1])
        self.input_spatial = tuple(input_shape[1:3])
        self.kernel = self.add_weight(
            name="depthwise_kernel",
            shape=self.kernel_size + (self.input_channels, 1),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
        )
        self.bias = self._build_bias(self.input_channels)

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        n = self.input_width(context, self.input_channels)
        y = tf.nn.depthwise_conv2d(
            self.kept_inputs_of(inputs, n),
            self.input_block(self.kernel, n, -2, context),
            strides=(1,) + self.strides + (1,),
            padding=self.padding.upper(),
        )
        if self.use_bias:
            y = tf.nn.bias_add(y, self.input_block(self.bias, n, 0, context))
        return self.activation(y)

    def channel_axes(self, context):
        n = self.input_width(context, self.input_channels)
        kept = self.kept_inputs(context, n)
        axes = [(self.kernel, {-2: kept})]
        if self.use_bias:
            axes.append((self.bias, {0: kept}))
        return axes

    @property
    def output_spatial(self):
        return conv_output_spatial(self.input_spatial, self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        return conv_output_shape(
            input_shape, self.kernel_size, self.strides, self.padding, input_shape[-1]
        )

    def static_layer(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        weights = [self.static_input_block(self.kernel.numpy(), n, -2, ratio)]
        if self.use_bias:
            weights.append(self.static_input_block(self.bias.numpy(), n, 0, ratio))
        layer = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            activation=self.activation,
            use_bias=self.use_bias,
            name=self.name,
        )
        layer.build((None,) + self.input_spatial + (n,))
        layer.set_weights(weights)
        return layer

    def cost(self, ratio):
        n = self.static_input_width(ratio, self.input_channels)
        positions = math.prod(self.output_spatial)
        taps = math.prod(self.kernel_size)
        return {
            "flops": positions * n * taps,
            "params": taps * n + (n if self.use_bias else 0),
            "dot_products": positions * n,
        }

    def get_config(self):
        config = super().get_config()
        config.pop("profile")
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "depthwise_initializer": keras.initializers.serialize(self.depthwise_initializer),
                "depthwise_regularizer": keras.regularizers.serialize(self.depthwise_regularizer),
            }
        )
        return config

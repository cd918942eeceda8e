"""2-D convolution whose input and output widths follow the compute ratio."""

import math

import keras
import tensorflow as tf

from zoo.layers.conv_utils import conv_arguments, conv_output_shape, conv_output_spatial
from zoo.layers.dynamic_kernel_layer import DynamicKernelLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicConv2D(DynamicKernelLayer):
    """`keras.layers.Conv2D` (channels last) that computes only its first filters.

    At compute ratio `r` it convolves its first `ceil(r * C_in)` input
    channels with the matching block of its kernel and produces its first
    `ceil(r * filters)` feature maps: about `r^2` of the multiply-adds. The
    profile multiplies the kernel's input channels.

    Args:
        filters: number of output channels at ratio 1.
        kernel_size: int or pair.
        strides: int or pair.
        padding: `"same"` or `"valid"`.
        activation: activation applied to the outputs.
        use_bias: whether to add a bias (off when batch norm follows).
        kernel_initializer: initializer of the kernel.
        kernel_regularizer: regularizer of the kernel.
        **kwargs: `DynamicLayer` arguments (`cut_inputs`, `cut_outputs`,
            `channel_multiple`, `profile`) and standard layer arguments.

    Example:
    >>> conv = DynamicConv2D(64, 3, padding="same", use_bias=False)
    >>> y = conv(np.ones((1, 32, 32, 32), "float32"), compute_ratio=0.25)  # 16 maps
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(kernel_initializer=kernel_initializer, **kwargs)
        self.filters = int(filters)
        self.kernel_size, self.strides, self.padding = conv_arguments(kernel_size, strides, padding)

    @property
    def output_channels(self):
        return self.filters

    def build(self, input_shape):
        self.input_spatial = tuple(input_shape[1:3])
        self.build_kernel(self.kernel_size, input_shape[-1])

    def apply_kernel(self, inputs, kernel):
        return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper())

    @property
    def output_spatial(self):
        return conv_output_spatial(self.input_spatial, self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        return conv_output_shape(
            input_shape, self.kernel_size, self.strides, self.padding, self.filters
        )

    def static_layer(self, ratio):
        return self.static_kernel_layer(
            ratio,
            keras.layers.Conv2D,
            lambda n_in: (None,) + self.input_spatial + (n_in,),
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
        )

    def cost(self, ratio):
        n_in = self.static_input_width(ratio, self.input_channels)
        n_out = self.static_output_width(ratio, self.filters)
        positions = math.prod(self.output_spatial)
        taps = math.prod(self.kernel_size)
        return {
            "flops": positions * n_out * taps * n_in,
            "params": taps * n_in * n_out + (n_out if self.use_bias else 0),
            "dot_products": positions * n_out,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
            }
        )
        return config

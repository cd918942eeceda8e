"""1-D convolution whose input and output widths follow the compute ratio."""

import keras
import tensorflow as tf

from zoo.layers.conv_utils import conv_output_length
from zoo.layers.dynamic_kernel_layer import DynamicKernelLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicConv1D(DynamicKernelLayer):
    """`keras.layers.Conv1D` (channels last) that computes only its first filters.

    At compute ratio `r` it convolves its first `ceil(r * C_in)` input
    channels with the matching block of its kernel and produces its first
    `ceil(r * filters)` channels: about `r^2` of the multiply-adds.

    Args:
        filters: number of output channels at ratio 1.
        kernel_size: int.
        strides: int.
        padding: `"same"` or `"valid"`.
        activation: activation applied to the outputs.
        use_bias: whether to add a bias.
        kernel_initializer: initializer of the kernel.
        kernel_regularizer: regularizer of the kernel.
        **kwargs: `DynamicLayer` arguments (`cut_inputs`, `cut_outputs`,
            `channel_multiple`, `profile`) and standard layer arguments.

    Example:
    >>> conv = DynamicConv1D(64, 3)
    >>> y = conv(np.ones((1, 100, 16), "float32"), compute_ratio=0.5)  # 32 channels
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
        self.kernel_size = int(_single(kernel_size))
        self.strides = int(_single(strides))
        self.padding = str(padding).lower()
        if self.padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid'; got {padding!r}.")

    @property
    def output_channels(self):
        return self.filters

    def build(self, input_shape):
        self.input_length = input_shape[1]
        self.build_kernel((self.kernel_size,), input_shape[-1])

    def apply_kernel(self, inputs, kernel):
        return tf.nn.conv1d(inputs, kernel, stride=self.strides, padding=self.padding.upper())

    @property
    def output_length(self):
        return conv_output_length(self.input_length, self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if length is not None:
            length = conv_output_length(length, self.kernel_size, self.strides, self.padding)
        return (input_shape[0], length, self.filters)

    def static_layer(self, ratio):
        return self.static_kernel_layer(
            ratio,
            keras.layers.Conv1D,
            lambda n_in: (None, self.input_length, n_in),
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
        )

    def cost(self, ratio):
        n_in = self.static_input_width(ratio, self.input_channels)
        n_out = self.static_output_width(ratio, self.filters)
        return {
            "flops": self.output_length * n_out * self.kernel_size * n_in,
            "params": self.kernel_size * n_in * n_out + (n_out if self.use_bias else 0),
            "dot_products": self.output_length * n_out,
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


def _single(value):
    return value[0] if isinstance(value, (list, tuple)) else value

"""1-D convolution whose input and output widths follow the compute ratio."""

import math

import keras
import tensorflow as tf

from zoo.layers.conv_utils import conv_output_length
from zoo.layers.dynamic_layer import DynamicLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicConv1D(DynamicLayer):
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
        activation=None,
        use_bias=True,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(_single(kernel_size))
        self.strides = int(_single(strides))
        self.padding = str(padding).lower()
        if self.padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid'; got {padding!r}.")
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.input_channels = int(input_shape[-1])
        self.input_length = input_shape[1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.input_channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self._build_bias(self.filters)
        self._build_profile(self.input_channels)
        self._build_kernel_cache(math.prod(self.kernel.shape))

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        n_in = self.input_width(context, self.input_channels)
        n_out = self.output_width(context, self.filters)
        x = self.kept_inputs_of(inputs, n_in)
        x = self.keep_sample_channels(x, context, self.input_channels)
        kernel = self.inference_kernel(
            context,
            training,
            n_in,
            n_out,
            lambda: self.scale_input_channels(self.kernel_block(n_in, n_out, context), n_in),
        )
        y = tf.nn.conv1d(x, kernel, stride=self.strides, padding=self.padding.upper())
        return self._finish(y, n_out)

    def channel_axes(self, context):
        return self.kernel_channel_axes(context, self.filters)

    @property
    def output_length(self):
        return conv_output_length(self.input_length, self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if length is not None:
            length = conv_output_length(length, self.kernel_size, self.strides, self.padding)
        return (input_shape[0], length, self.filters)

    def static_layer(self, ratio):
        n_in, n_out, weights = self.static_kernel_weights(ratio, self.filters)
        layer = keras.layers.Conv1D(
            n_out,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            activation=self.activation,
            use_bias=self.use_bias,
            name=self.name,
        )
        layer.build((None, self.input_length, n_in))
        layer.set_weights(weights)
        return layer

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
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config


def _single(value):
    return value[0] if isinstance(value, (list, tuple)) else value

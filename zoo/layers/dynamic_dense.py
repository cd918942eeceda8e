"""Dense layer whose input and output widths follow the compute ratio."""

import math

import keras
import tensorflow as tf

from zoo.layers.dynamic_layer import DynamicLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicDense(DynamicLayer):
    """`keras.layers.Dense` that computes only its first channels.

    At compute ratio `r` it reads its first `ceil(r * C_in)` inputs and
    computes its first `ceil(r * units)` outputs with the matching block of
    its kernel, so its multiply-adds fall to about `r^2`. The profile
    multiplies the kernel's input rows (IDP's `gamma_i * W[i, o]`).

    Args:
        units: number of output channels at ratio 1.
        activation: activation applied to the outputs.
        use_bias: whether to add a bias.
        kernel_initializer: initializer of the kernel.
        kernel_regularizer: regularizer of the kernel.
        **kwargs: `DynamicLayer` arguments (`cut_inputs`, `cut_outputs`,
            `channel_multiple`, `profile`) and standard layer arguments.

    Example:
    >>> layer = DynamicDense(100, activation="relu")
    >>> y = layer(np.ones((2, 784), "float32"), compute_ratio=0.5)  # (2, 50)
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.input_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.input_channels, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self._build_bias(self.units)
        self._build_profile(self.input_channels)
        self._build_kernel_cache(math.prod(self.kernel.shape))

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        n_in = self.input_width(context, self.input_channels)
        n_out = self.output_width(context, self.units)
        x = self.kept_inputs_of(inputs, n_in)
        x = self.keep_sample_channels(x, context, self.input_channels)
        kernel = self.inference_kernel(
            context,
            training,
            n_in,
            n_out,
            lambda: self.scale_input_channels(self.kernel_block(n_in, n_out, context), n_in),
        )
        return self._finish(tf.matmul(x, kernel), n_out)

    def channel_axes(self, context):
        return self.kernel_channel_axes(context, self.units)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def static_layer(self, ratio):
        n_in, n_out, weights = self.static_kernel_weights(ratio, self.units)
        layer = keras.layers.Dense(
            n_out,
            activation=self.activation,
            use_bias=self.use_bias,
            name=self.name,
        )
        layer.build((None, n_in))
        layer.set_weights(weights)
        return layer

    def cost(self, ratio):
        n_in = self.static_input_width(ratio, self.input_channels)
        n_out = self.static_output_width(ratio, self.units)
        return {
            "flops": n_in * n_out,
            "params": n_in * n_out + (n_out if self.use_bias else 0),
            "dot_products": n_out,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

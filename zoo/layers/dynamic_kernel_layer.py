"""The shared body of the dynamic layers that multiply their inputs by one kernel."""

import math

import keras

from zoo.layers.dynamic_layer import DynamicLayer


class DynamicKernelLayer(DynamicLayer):
    """A `DynamicLayer` with one kernel whose last two axes are its input and
    output channels: dense layers and 1-D and 2-D convolutions.

    At compute ratio `r` it reads its first `ceil(r * C_in)` input channels,
    applies the matching block of its kernel (scaled by the profile along
    its input channels) and computes its first `ceil(r * C_out)` output
    channels. A subclass names its output channels (`output_channels`:
    `filters` or `units`), builds its kernel with `build_kernel`, and
    applies a kernel block to its inputs in `apply_kernel`.

    Args:
        activation: activation applied to the outputs.
        use_bias: whether to add a bias.
        kernel_initializer: initializer of the kernel.
        kernel_regularizer: regularizer of the kernel.
        **kwargs: `DynamicLayer` arguments (`cut_inputs`, `cut_outputs`,
            `channel_multiple`, `profile`) and standard layer arguments.

    Example:
    >>> class DynamicMatmul(DynamicKernelLayer):  # what DynamicDense does
    ...     output_channels = 10
    ...     def build(self, input_shape): self.build_kernel((), int(input_shape[-1]))
    ...     def apply_kernel(self, x, kernel): return tf.matmul(x, kernel)
    """

    def __init__(
        self,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build_kernel(self, spatial_shape, input_channels):
        """The kernel `spatial_shape + (input_channels, output_channels)`,
        the bias, the profile and the inference cache of kernel blocks."""
        self.input_channels = int(input_channels)
        self.kernel = self.add_weight(
            name="kernel",
            shape=tuple(spatial_shape) + (self.input_channels, self.output_channels),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self._build_bias(self.output_channels)
        self._build_profile(self.input_channels)
        self._build_kernel_cache(math.prod(self.kernel.shape))

    def apply_kernel(self, inputs, kernel):
        raise NotImplementedError

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        n_in = self.input_width(context, self.input_channels)
        n_out = self.output_width(context, self.output_channels)
        x = self.kept_inputs_of(inputs, n_in)
        x = self.keep_sample_channels(x, context, self.input_channels)
        kernel = self.inference_kernel(
            context,
            training,
            n_in,
            n_out,
            lambda: self.scale_input_channels(self.kernel_block(n_in, n_out, context), n_in),
        )
        return self._finish(self.apply_kernel(x, kernel), n_out)

    def channel_axes(self, context):
        return self.kernel_channel_axes(context, self.output_channels)

    def static_kernel_layer(self, ratio, layer_class, input_shape, **arguments):
        """The Keras `layer_class` computing this layer at `ratio`, built on
        `input_shape(n_in)` with the kernel block and bias of that width."""
        n_in, n_out, weights = self.static_kernel_weights(ratio, self.output_channels)
        layer = layer_class(
            n_out, activation=self.activation, use_bias=self.use_bias, name=self.name, **arguments
        )
        layer.build(input_shape(n_in))
        layer.set_weights(weights)
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

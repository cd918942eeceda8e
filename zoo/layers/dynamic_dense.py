"""Dense layer whose input and output widths follow the compute ratio."""

import keras
import tensorflow as tf

from zoo.layers.dynamic_kernel_layer import DynamicKernelLayer


@keras.saving.register_keras_serializable(package="zoo")
class DynamicDense(DynamicKernelLayer):
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

    def __init__(self, units, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(kernel_initializer=kernel_initializer, **kwargs)
        self.units = int(units)

    @property
    def output_channels(self):
        return self.units

    def build(self, input_shape):
        self.build_kernel((), input_shape[-1])

    def apply_kernel(self, inputs, kernel):
        return tf.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def static_layer(self, ratio):
        return self.static_kernel_layer(ratio, keras.layers.Dense, lambda n_in: (None, n_in))

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
        config["units"] = self.units
        return config

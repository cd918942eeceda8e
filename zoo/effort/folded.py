"""The stand-in for a layer folded into the one before it."""

import keras


@keras.saving.register_keras_serializable(package="zoo")
class Folded(keras.layers.Layer):
    """Stands in for a batch norm or ReLU folded into the layer before it.

    It passes its input through, and accepts the arguments the folded layer
    was called with (`training`, `mask`).

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`).

    Example:
    >>> Folded(name="bn_1")(np.ones((2, 4)), training=True)  # the input, unchanged
    """

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

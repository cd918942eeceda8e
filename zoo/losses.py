"""Losses the recipes train with."""

import keras


@keras.saving.register_keras_serializable(package="zoo")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing.

    Keras's `SparseCategoricalCrossentropy` takes integer labels but no
    `label_smoothing`; `CategoricalCrossentropy` smooths but wants one-hot
    labels. This one takes integer labels and smooths: the target puts
    `1 - label_smoothing` on the true class plus `label_smoothing / classes`
    on every class.

    Args:
        label_smoothing: in [0, 1); 0 is plain cross-entropy.
        from_logits: whether predictions are logits.
        **kwargs: `keras.losses.Loss` arguments (`name`, `reduction`).

    Example:
    >>> loss = zoo.losses.SparseCategoricalCrossentropyWithSmoothing(0.1, from_logits=True)
    >>> model.compile(optimizer="sgd", loss=loss)
    """

    def __init__(
        self,
        label_smoothing=0.0,
        from_logits=False,
        name="sparse_categorical_crossentropy_with_smoothing",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1); got {label_smoothing}.")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        one_hot = keras.ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


def classification_loss(label_smoothing=0.0):
    """The recipes' loss on logits and integer labels."""
    if label_smoothing:
        return SparseCategoricalCrossentropyWithSmoothing(label_smoothing, from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

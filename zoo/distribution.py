"""The `tf.distribute` strategy the CLI and recipes train under."""

import contextlib

import tensorflow as tf

STRATEGIES = ("none", "mirrored")


def strategy(name="none"):
    """A `tf.distribute.Strategy` by name.

    - `"none"`: TensorFlow's default strategy (one device).
    - `"mirrored"`: `MirroredStrategy` over every local GPU, or the CPU.

    `MultiWorkerMirroredStrategy` is not offered: Keras 3's `fit` fails
    under it for any model (keras-team/keras issue 20585).

    Build the model and compile it inside `strategy.scope()`. With several
    replicas, build models with batch norm with
    `synchronized_batch_norm=True` to train exactly as one device would on
    the same global batch.

    Example:
    >>> with zoo.distribution.strategy("mirrored").scope():
    ...     model = zoo.build("resnet20", synchronized_batch_norm=True)
    ...     model.compile(optimizer="sgd", loss=...)
    >>> model.fit(x, y, batch_size=256)  # the global batch, split over replicas
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown distribution strategy {name!r}; known: {list(STRATEGIES)}.")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def scope(name="none"):
    """`strategy(name).scope()`, or nothing to enter for `"none"`."""
    if name == "none":
        return contextlib.nullcontext(tf.distribute.get_strategy())
    return strategy(name).scope()

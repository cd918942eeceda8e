"""Creates what a training or test step's first trace would otherwise
create: `build_training_state`, `build_evaluation_state`."""

import keras
import numpy as np
import tensorflow as tf


def build_training_state(model, x=None, y=None):
    """Creates `model`'s optimizer slots and compiled metrics before `fit`
    traces its training step.

    Outside `tf.distribute`, Keras creates both inside the first trace of
    the step, and a `tf.function` that creates variables traces twice (once
    creating them, once more without): built first, the step traces once,
    and the first epoch is shorter by a whole trace of the step. Under a
    strategy Keras builds them before tracing, so nothing is done here.

    The metrics are built from the labels' shape, known without reading
    the data for arrays and a `tf.data.Dataset` of `(x, y[, sample_weight])`;
    for other data (a generator, a `keras.utils.PyDataset`) Keras builds
    them as usual.

    Args:
        model: a compiled `zoo.RatioModel`.
        x: `fit`'s `x`.
        y: `fit`'s `y`.

    Example:
    >>> build_training_state(model, x, y)   # `RatioModel.fit` does this
    """
    if getattr(model, "optimizer", None) is None or keras_builds_it(model):
        return
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    build_evaluation_state(model, x, y)


def build_evaluation_state(model, x=None, y=None):
    """Creates `model`'s compiled metrics before `evaluate` traces its test
    step, so that it traces once (see `build_training_state`).

    Args:
        model: a compiled `zoo.RatioModel`.
        x: `evaluate`'s `x`.
        y: `evaluate`'s `y`.

    Example:
    >>> build_evaluation_state(model, x, y)   # `RatioModel.evaluate` does this
    """
    if keras_builds_it(model) or metrics_built(model):
        return
    labels = label_spec(x, y)
    if labels is not None:
        build_metrics(model, labels)


def keras_builds_it(model):
    """Whether Keras builds the optimizer and metrics before tracing: under
    a strategy, entered here or where the model was created."""
    return (
        tf.distribute.has_strategy()
        or model.distribute_strategy is not tf.distribute.get_strategy()
    )


def metrics_built(model):
    """Whether every metric `model.metrics` holds has its variables (loss
    trackers have them from the start; compiled metrics from their first
    update)."""
    return all(getattr(metric, "built", True) for metric in model.metrics)


def build_metrics(model, labels):
    """Builds the compiled metrics on one zero example of `labels`' spec
    (and of the model's output), then clears them."""
    images = keras.KerasTensor((1, *model.image_shape), dtype=model.input_dtype)
    output = model.compute_output_spec(images)
    zeros = lambda spec: tf.zeros([1, *(d or 1 for d in spec.shape[1:])], spec.dtype)
    predictions = keras.tree.map_structure(zeros, output)
    model.compute_metrics(zeros(images), zeros(labels), predictions, None)
    model.reset_metrics()


def label_spec(x, y):
    """The labels' `tf.TensorSpec`, when `fit`'s data tells it without
    being read; else None."""
    if isinstance(x, tf.data.Dataset):
        element = x.element_spec
        if isinstance(element, tuple) and len(element) in (2, 3):
            return element[1] if isinstance(element[1], tf.TensorSpec) else None
        return None
    if isinstance(y, (np.ndarray, tf.Tensor)):
        return tf.TensorSpec(y.shape, y.dtype)
    return None

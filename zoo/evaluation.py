"""Accuracy of a dynamic model at several operating points."""

import weakref

import keras
import tensorflow as tf

from zoo.batches import as_dataset
from zoo.ratio import check_ratio


def evaluate_ratios(model, data, ratios=None, batch_size=256, progress=None, return_loss=False):
    """Top-1 accuracy at each ratio, in one pass over the data per ratio.

    Args:
        model: a `zoo.DynamicModel`.
        data: `(images, labels)` arrays or a batched `tf.data.Dataset` of
            `(images, labels)`.
        ratios: ratios to evaluate (default: the model's operating points).
        batch_size: batch size for arrays.
        progress: optional `keras.utils.Progbar`, advanced once per ratio.
        return_loss: also return `{ratio: mean loss}` (the compiled loss).

    Returns:
        `{ratio: accuracy}`, or `(accuracies, losses)`.

    Example:
    >>> zoo.evaluate_ratios(model, (x_test, y_test), [0.25, 0.5, 1.0])
    """
    ratios = list(model.operating_points if ratios is None else ratios)
    check_ratio(ratios, "ratios")
    dataset = as_dataset(data, batch_size, with_labels=True)

    step = _evaluation_step(model)
    # Traced for any batch size up front, so the last, smaller batch reuses it.
    images, labels = dataset.element_spec
    step.get_concrete_function(any_batch(images), any_batch(labels), tf.TensorSpec([], "float32"))
    results, losses = {}, {}
    for index, ratio in enumerate(ratios):
        hits = total = loss = 0.0
        for images, labels in dataset:
            h, n, l = step(images, labels, tf.constant(ratio, "float32"))
            hits, total, loss = hits + float(h), total + float(n), loss + float(l)
        results[float(ratio)] = hits / max(total, 1)
        losses[float(ratio)] = loss / max(total, 1)
        if progress is not None:
            progress.update(index + 1)
    return (results, losses) if return_loss else results


def any_batch(spec):
    """`spec` with its batch size left open."""
    if spec.shape.rank is None:
        return spec
    return tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)


_STEPS = weakref.WeakKeyDictionary()


def _evaluation_step(model):
    """One compiled step per model and loss, reused across calls and ratios."""
    loss_function = getattr(model, "loss", None)
    if isinstance(loss_function, str):
        loss_function = keras.losses.get(loss_function)
    if not callable(loss_function):
        loss_function = None
    cached = _STEPS.get(model)
    if cached is not None and cached[0] is loss_function:
        return cached[1]
    # A weak reference: the cache must not keep the model alive.
    model_ref = weakref.ref(model)

    @tf.function(reduce_retracing=True)
    def step(images, labels, ratio):
        logits = model_ref()(images, compute_ratio=ratio, training=False)
        labels = tf.cast(tf.reshape(labels, [-1]), "int32")
        predicted = tf.argmax(logits, axis=-1, output_type="int32")
        count = tf.cast(tf.size(labels), "float32")
        loss = (
            0.0
            if loss_function is None
            else tf.cast(tf.reduce_mean(loss_function(labels, logits)), "float32") * count
        )
        return tf.reduce_sum(tf.cast(predicted == labels, "float32")), count, loss

    _STEPS[model] = (loss_function, step)
    return step

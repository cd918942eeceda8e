"""Accuracy of a dynamic model at several operating points."""

import numpy as np
import tensorflow as tf

from zoo.batches import as_dataset
from zoo.ratio import check_ratio


def evaluate_ratios(model, data, ratios=None, batch_size=256, progress=None):
    """Top-1 accuracy at each ratio, in one pass over the data per ratio.

    Args:
        model: a `zoo.DynamicModel`.
        data: `(images, labels)` arrays or a batched `tf.data.Dataset` of
            `(images, labels)`.
        ratios: ratios to evaluate (default: the model's operating points).
        batch_size: batch size for arrays.
        progress: optional `keras.utils.Progbar`, advanced once per ratio.

    Returns:
        `{ratio: accuracy}`.

    Example:
    >>> zoo.evaluate_ratios(model, (x_test, y_test), [0.25, 0.5, 1.0])
    """
    ratios = list(model.operating_points if ratios is None else ratios)
    check_ratio(ratios)
    dataset = as_dataset(data, batch_size, with_labels=True)

    @tf.function(reduce_retracing=True)
    def correct(images, labels, ratio):
        logits = model(images, compute_ratio=ratio, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type="int32")
        labels = tf.cast(tf.reshape(labels, [-1]), "int32")
        return tf.reduce_sum(tf.cast(predicted == labels, "int64")), tf.size(labels)

    results = {}
    for index, ratio in enumerate(ratios):
        hits = total = 0
        for images, labels in dataset:
            h, n = correct(images, labels, tf.constant(ratio, "float32"))
            hits, total = hits + int(h), total + int(n)
        results[float(ratio)] = hits / max(total, 1)
        if progress is not None:
            progress.update(index + 1)
    return results


def average_accuracy(results):
    return float(np.mean(list(results.values())))

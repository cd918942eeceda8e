"""Turning the data users pass (arrays, tuples, datasets) into image batches."""

import numpy as np
import tensorflow as tf


def as_dataset(data, batch_size=256, with_labels=False):
    """A batched `tf.data.Dataset` of images, or of `(images, labels)`.

    Args:
        data: an array of images; a tuple `(images, labels)`; or a
            `tf.data.Dataset` (batched) of images, `(images, labels)` or
            `(images, labels, sample_weights)`, images possibly in a dict
            under `"images"`.
        batch_size: batch size for arrays.
        with_labels: yield `(images, labels)`; labels are required.
    """
    if isinstance(data, tf.data.Dataset):
        dataset = data
    elif isinstance(data, tuple):
        dataset = tf.data.Dataset.from_tensor_slices(tuple(np.asarray(d) for d in data[:2]))
        dataset = dataset.batch(batch_size)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(np.asarray(data)).batch(batch_size)
    return dataset.map(lambda *item: _select(item, with_labels))


def _select(item, with_labels):
    if len(item) == 1 and isinstance(item[0], tuple):
        item = item[0]
    images = item[0]
    if isinstance(images, dict):
        images = images["images"]
    if not with_labels:
        return images
    if len(item) < 2:
        raise ValueError("These data carry no labels; give (images, labels).")
    return images, item[1]

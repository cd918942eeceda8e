"""Recomputing batch-norm statistics for each operating point."""

import numpy as np
import tensorflow as tf

from zoo.batches import as_dataset
from zoo.layer_walk import all_layers
from zoo.layers.point_statistics import PointStatistics


def calibrate_batchnorm(model, data, ratios=None, steps=10, batch_size=256):
    """Recomputes every batch norm's statistics at each of `ratios`.

    For each ratio the statistics of its operating point are replaced by the
    exact mean, over `steps` batches of `data`, of the batch statistics at
    that width (BN calibration, as in universally slimmable networks). Only
    the moving statistics change; they are model weights, so they are saved
    with the model.

    Calibrate on the images as training saw them: after training with
    augmentation, pass the augmented pipeline (`zoo.recipes.training_dataset`,
    or `zoo.recipes.calibrate_after_training` for a recipe), not the clean
    images, whose statistics the layers were not trained on.

    Args:
        model: a `zoo.DynamicModel`.
        data: training images, as an array, `(images, labels)` or a batched
            `tf.data.Dataset` (see `zoo.batches.as_dataset`), augmented as
            in training.
        ratios: operating points to calibrate (default: all of the model's).
        steps: number of batches per ratio.
        batch_size: batch size when `data` is an array.

    Example:
    >>> zoo.calibrate_batchnorm(model, x_train[:2048], steps=8)
    """
    ratios = list(model.operating_points if ratios is None else np.atleast_1d(ratios))
    unknown = [r for r in ratios if not np.isclose(model.operating_points, r).any()]
    if unknown:
        raise ValueError(
            f"Batch norm keeps statistics only at the operating points "
            f"{list(model.operating_points)}; cannot calibrate {unknown}."
        )
    layers = all_layers(model)
    layers = [layer for layer in layers if isinstance(layer, PointStatistics)]
    if not layers:
        return model
    batches = list(as_dataset(data, batch_size).take(steps))
    if not batches:
        raise ValueError("`data` yielded no batches to calibrate batch norm with.")
    for index, images in enumerate(batches):
        if not np.all(np.isfinite(np.asarray(images))):
            # One NaN would make every later output of the model NaN.
            raise ValueError(
                f"Batch {index} of `data` holds NaN or infinite pixels; batch norm was "
                "not calibrated. Calibrate on finite images."
            )
    step = tf.Variable(0, dtype="int32", trainable=False)

    @tf.function(reduce_retracing=True)
    def collect(images, ratio):
        model(images, compute_ratio=ratio, training=True)

    for layer in layers:
        # Plain attribute, not a tracked weight: it must not enter the model.
        object.__setattr__(layer, "_calibration_step", step)
    try:
        for ratio in ratios:
            step.assign(0)
            for images in batches:
                collect(images, tf.constant(ratio, "float32"))
                step.assign_add(1)
    finally:
        for layer in layers:
            object.__setattr__(layer, "_calibration_step", None)
    return model

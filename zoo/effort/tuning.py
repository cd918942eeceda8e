"""Choosing the effort knobs of a trained model, without retraining."""

import math

import numpy as np
import tensorflow as tf

from zoo.effort.effort_conv2d import EffortConv2D
from zoo.effort.preparation import effort_layers, prepare

KNOBS = ("sdss", "spet", "sfma")
# Candidate thresholds per knob, from the most to the least aggressive.
CANDIDATES = {
    "sdss": (0.8, 0.5, 0.3, 0.2, 0.1, 0.05),
    "spet": (0.0, 0.25, 0.5, 1.0, 2.0, 3.0),
    "sfma": (0.3, 0.2, 0.1, 0.05, 0.02),
}
ATTRIBUTES = {"spet": "spet_margin", "sdss": "sdss_threshold", "sfma": "sfma_threshold"}


def tune(
    model,
    calibration_data,
    max_accuracy_drop=0.005,
    knobs=KNOBS,
    compute_ratio=1.0,
    spet_fraction=0.5,
    calibration_size=512,
    batch_size=250,
    verbose=0,
):
    """The model with DyVEDeep's effort knobs set under an accuracy budget.

    The model is copied with knob-carrying layers (`prepare`), the knobs are
    calibrated on the first `calibration_size` images, then the thresholds
    are searched layer by layer, in call order: for each layer and knob the
    most aggressive candidate whose accuracy on `calibration_data` stays
    within the budget is kept (a binary search over `CANDIDATES`), or the
    knob stays off. Step `i` of `n` may use `(i + 1) / n` of the budget, so
    the first layers cannot spend it all. No weight changes.

    Args:
        model: a trained `zoo.DynamicModel` or a functional or `Sequential`
            Keras CNN or MLP ending in logits or probabilities.
        calibration_data: `(images, labels)` arrays (not the test set).
        max_accuracy_drop: the accuracy the knobs may lose on
            `calibration_data`, a fraction in [0, 1): 0.005 is half a point.
        knobs: which knobs to use, among `"spet"`, `"sdss"` and `"sfma"`.
        compute_ratio: the ratio of a zoo model; the knobs work within it.
        spet_fraction: share of a neuron's inputs in SPET's partial sum.
        calibration_size: images used to calibrate the knobs' scales.
        batch_size: evaluation batch size.
        verbose: 1 prints each choice.

    Returns:
        The tuned functional `keras.Model` (same inputs and outputs as
        `model`); `settings(model)` lists the chosen thresholds, which are
        saved with it.

    Example:
    >>> fast = zoo.effort.tune(model, (x_val, y_val), max_accuracy_drop=0.005)
    >>> zoo.effort.report(fast, (x_test, y_test))["reduction"]
    """
    if not (isinstance(max_accuracy_drop, (int, float)) and 0.0 <= max_accuracy_drop < 1.0) or math.isnan(
        max_accuracy_drop
    ):
        raise ValueError(
            f"`max_accuracy_drop` must be a fraction in [0, 1) (0.005 is half a point); got {max_accuracy_drop!r}."
        )
    unknown = set(knobs) - set(KNOBS)
    if unknown or not knobs:
        raise ValueError(f"Unknown knobs {sorted(unknown)}; choose among {list(KNOBS)}.")
    images, labels = calibration_data
    fast = prepare(model, compute_ratio)
    steps = [(layer, knob) for layer in effort_layers(fast) for knob in knobs if _applies(layer, knob)]
    if not steps:
        raise ValueError(
            f"No layer of {model.name!r} takes the knobs {list(knobs)}: SPET needs a Conv2D or Dense layer "
            "followed by ReLU, SDSS and SFMA a Conv2D layer."
        )
    calibrate(fast, images[:calibration_size], batch_size)
    for layer in effort_layers(fast):
        layer.spet_fraction = float(spet_fraction)
    baseline = accuracy(fast, images, labels, batch_size)
    history = []
    for index, (layer, knob) in enumerate(steps):
        floor = baseline - max_accuracy_drop * (index + 1) / len(steps)
        value, measured = _most_aggressive(fast, layer, knob, floor, images, labels, batch_size)
        history.append({"layer": layer.name, "knob": knob, "threshold": value, "accuracy": measured})
        if verbose:
            print(f"{layer.name:32s} {knob}: {value!s:6s} accuracy {measured:.4f} (floor {floor:.4f})")
    fast.effort_tuning = {"baseline_accuracy": baseline, "max_accuracy_drop": max_accuracy_drop, "steps": history}
    fast.predict_function = None
    return fast


def settings(model):
    """`{layer name: {knob: threshold}}` of the knobs that are on."""
    return {
        layer.name: {knob: getattr(layer, ATTRIBUTES[knob]) for knob in layer.knobs}
        for layer in effort_layers(model)
        if layer.knobs
    }


def calibrate(model, images, batch_size=250):
    """Calibrates every knob layer on its own inputs for `images`."""
    import keras

    layers = effort_layers(model)
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    inputs = probe.predict(images, batch_size=batch_size, verbose=0)
    for layer, layer_inputs in zip(layers, inputs if len(layers) > 1 else [inputs]):
        layer.calibrate(layer_inputs)


def accuracy(model, images, labels, batch_size=250):
    """Top-1 accuracy, computed eagerly so that changed thresholds apply."""
    correct = 0
    for start in range(0, len(images), batch_size):
        outputs = model(tf.constant(images[start : start + batch_size], "float32"), training=False)
        correct += int(np.sum(np.argmax(outputs, axis=-1) == np.asarray(labels[start : start + batch_size]).ravel()))
    return correct / len(images)


def _applies(layer, knob):
    if knob == "spet":
        return layer.activation == "relu"
    return isinstance(layer, EffortConv2D) and min(layer.output_spatial) >= 2


def _most_aggressive(model, layer, knob, floor, images, labels, batch_size):
    """Binary search over the candidates, assuming accuracy grows as they get milder."""
    attribute = ATTRIBUTES[knob]
    candidates = CANDIDATES[knob]
    best, best_accuracy = None, None
    low, high = 0, len(candidates) - 1
    while low <= high:
        middle = (low + high) // 2
        setattr(layer, attribute, candidates[middle])
        measured = accuracy(model, images, labels, batch_size)
        if measured >= floor:
            best, best_accuracy = candidates[middle], measured
            high = middle - 1
        else:
            low = middle + 1
    setattr(layer, attribute, best)
    if best is None:
        best_accuracy = accuracy(model, images, labels, batch_size)
    return best, best_accuracy

"""What the effort knobs save: scalar operations, accuracy and latency."""

import math

import keras
import numpy as np
import tensorflow as tf

from zoo.effort.preparation import effort_layer_inputs, effort_layers
from zoo.effort.tuning import ATTRIBUTES, accuracy
from zoo.latency import paired_speedup, probe_images

PARTS = ("dot_products", "spet", "sdss", "sfma")


def without_knobs(model):
    """A copy of a tuned model with every knob off: the unmodified network."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in effort_layers(copy):
        for attribute in ATTRIBUTES.values():
            setattr(layer, attribute, None)
    return copy


def operations(model, images, batch_size=250):
    """Scalar operations per input and layer of a tuned model.

    Knob layers count what they did for each input (`operations`); other
    depthwise convolutions and dense layers count their multiplies and adds.
    Batch norm folded into a layer, pooling, additions and activations are
    not counted (they are the same with and without knobs).

    Returns:
        `{layer name: {"total": [N], "dot_products": [N], "spet": [N],
        "sdss": [N], "sfma": [N], "dense": int}}`.
    """
    layers = effort_layers(model)
    others = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    counts = {layer.name: {part: [] for part in ("total",) + PARTS} for layer in layers}
    for inputs in effort_layer_inputs(model, images, batch_size):
        for layer, layer_inputs in zip(layers, inputs):
            for part, value in layer.operations(layer_inputs).items():
                counts[layer.name][part].append(np.asarray(value))
    result = {}
    for layer in layers:
        result[layer.name] = {
            part: np.concatenate(values) for part, values in counts[layer.name].items()
        }
        result[layer.name]["dense"] = layer.dense_operations
    for layer in others:
        dense = 2 * math.prod(layer.kernel.shape) * math.prod(layer.output.shape[1:3])
        constant = np.full(len(images), float(dense))
        zeros = np.zeros(len(images))
        result[layer.name] = {"total": constant, "dot_products": constant, "dense": dense}
        result[layer.name].update({part: zeros for part in PARTS[1:]})
    return result


def forward_call(model, batch_size):
    """A function of no arguments: one compiled forward pass at `batch_size`."""
    forward = tf.function(lambda images: model(images, training=False))
    images = probe_images(batch_size, model.inputs[0].shape[1:])
    return lambda: forward(images)


def report(model, data, batch_sizes=(1, 64), repeats=20, batch_size=250):
    """Scalar operations per layer and knob, accuracy and latency of a tuned
    model against the same network without knobs.

    Args:
        model: a model from `zoo.effort.tune`.
        data: `(images, labels)` (accuracy included) or images.
        batch_sizes: batch sizes to time at (empty: no timing).
        repeats: timed calls per measurement.
        batch_size: batch size of the counting and accuracy passes.

    Returns:
        A dict: `"operations"` (mean per input with knobs), `"dense_operations"`
        (without), `"reduction"` (their ratio), `"spread"` (min, median and max
        per input), `"layers"` (per layer: knobs, thresholds, mean operations
        and their parts), `"accuracy"` and `"baseline_accuracy"` when labels
        are given, and `"latency"` (`{batch size: {"knobs": s, "baseline": s,
        "speedup": x, "speedup_interval": [low, high]}}`, median seconds of
        each, timed in alternation, and the speedup's 90% interval).

    Example:
    >>> zoo.effort.report(fast, (x_test, y_test))["reduction"]
    """
    images, labels = data if isinstance(data, tuple) else (data, None)
    counts = operations(model, images, batch_size)
    per_input = sum(entry["total"] for entry in counts.values())
    dense = float(sum(entry["dense"] for entry in counts.values()))
    layers = {}
    by_name = {layer.name: layer for layer in effort_layers(model)}
    for name, entry in counts.items():
        layer = by_name.get(name)
        layers[name] = {
            "knobs": {knob: getattr(layer, ATTRIBUTES[knob]) for knob in layer.knobs}
            if layer
            else {},
            "dense_operations": float(entry["dense"]),
            "operations": float(np.mean(entry["total"])),
            "parts": {part: float(np.mean(entry[part])) for part in PARTS},
        }
    result = {
        "operations": float(np.mean(per_input)),
        "dense_operations": dense,
        "reduction": dense / float(np.mean(per_input)),
        "spread": {
            q: float(np.percentile(per_input, p))
            for q, p in (("min", 0), ("median", 50), ("max", 100))
        },
        "layers": layers,
    }
    baseline = without_knobs(model)
    if labels is not None:
        result["accuracy"] = accuracy(model, images, labels, batch_size)
        result["baseline_accuracy"] = accuracy(baseline, images, labels, batch_size)
    result["latency"] = {}
    for size in batch_sizes:
        timed = paired_speedup(forward_call(baseline, size), forward_call(model, size), repeats)
        result["latency"][size] = {
            "knobs": timed["candidate"],
            "baseline": timed["reference"],
            "speedup": timed["speedup"],
            "speedup_interval": [timed["low"], timed["high"]],
        }
    return result

"""Width groups of a converted model (`zoo.dynamic`) and their reordering.

In a converted Keras graph a width group is every block of channels that is
added, subtracted or multiplied together: its **producers** (the
convolutions and dense layers that compute it, several in a residual
stage), the **per-channel** layers that run on it (batch norm, depthwise
convolution, layer norm, perhaps inside a concatenation) and its
**consumers** (the layers that read it, perhaps as one block of a
concatenated or flattened input). Reordering a group permutes all of them
alike, so the full-width model computes the same function.
"""

import numpy as np
import tensorflow as tf

from zoo.layers import (
    DynamicBatchNormalization,
    DynamicDepthwiseConv2D,
    DynamicLayerNormalization,
)
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.ratio import RatioContext

PER_CHANNEL = (DynamicBatchNormalization, DynamicDepthwiseConv2D, DynamicLayerNormalization)


class GraphWidthGroup:
    """One width group of a converted model.

    Args:
        index: the group's index (its ratio in `layer_ratios`).
        channels: its channel count at ratio 1.

    Attributes:
        producers: layers whose outputs are the group.
        readers: `(layer, starts)`: a layer reading the group's channels at
            each of `starts` along its input axis (per-channel layers and
            consumers alike).
    """

    def __init__(self, index, channels):
        self.index = index
        self.channels = channels
        self.producers = []
        self.readers = []

    def __repr__(self):
        names = [p.name for p in self.producers]
        return f"GraphWidthGroup({self.index}, {self.channels} channels, from {names})"


def graph_width_groups(model):
    """The `GraphWidthGroup`s of a `zoo.ConvertedModel`, by index."""
    groups = {}
    for layer in model.dynamic_layers:
        layout = model.graph["layouts"].get(layer.name)
        if layout is None:
            continue
        group = layout["output_group"]
        if group is not None:
            channels = layer.kernel.shape[-1]
            groups.setdefault(group, GraphWidthGroup(group, channels)).producers.append(layer)
        segments = layout["segments"]
        block = sum(size for size, _ in segments)
        offset = 0
        for size, group in segments:
            if group is not None:
                starts = [p * block + offset for p in range(layout["positions"])]
                groups.setdefault(group, GraphWidthGroup(group, size)).readers.append(
                    (layer, starts)
                )
            offset += size
    return [groups[index] for index in sorted(groups)]


def reorder_graph_channels(model, norm="l1", data=None):
    """Permutes every group of a converted model, most important channels first.

    Importance is the norm of the producers' weights that compute each
    channel (summed over producers), or with `data` the mean absolute value
    of the producers' outputs on those images at full width.

    Returns:
        `{group index: permutation}`.
    """
    groups = graph_width_groups(model)
    activity = _output_activity(model, data) if data is not None else None
    permutations = {}
    for group in groups:
        importance = sum(
            _importance(layer, norm) if activity is None else activity[layer.name]
            for layer in group.producers
        )
        order = np.argsort(-np.asarray(importance), kind="stable")
        for layer in group.producers:
            _permute(layer.kernel, order, -1, [0])
            if layer.bias is not None:
                _permute(layer.bias, order, 0, [0])
        for layer, starts in group.readers:
            _permute_reader(layer, order, starts)
        permutations[group.index] = order
    return permutations


def _importance(layer, norm):
    kernel = np.asarray(layer.kernel.numpy())
    flat = kernel.reshape(-1, kernel.shape[-1])
    return np.abs(flat).sum(0) if norm == "l1" else np.sqrt((flat**2).sum(0))


def _output_activity(model, data):
    """Mean |output| per channel of every dynamic layer, at full width."""
    images = tf.convert_to_tensor(np.asarray(data), model.compute_dtype)
    context = RatioContext.from_value(1.0)
    activity = {}

    def apply(layer, x):
        if not isinstance(layer, DynamicLayer):
            return layer(x)
        y = layer(x, compute_ratio=context)
        axes = list(range(y.shape.rank - 1))
        activity[layer.name] = tf.reduce_mean(tf.abs(y), axis=axes).numpy()
        return y

    model.forward(images, apply)
    return activity


def _permute(variable, order, axis, starts):
    """Permutes `variable` along `axis` inside each block `[s, s + len(order))`."""
    value = np.asarray(variable.numpy())
    axis = axis % value.ndim
    for start in starts:
        index = [slice(None)] * value.ndim
        index[axis] = slice(start, start + len(order))
        value[tuple(index)] = np.take(value[tuple(index)], order, axis=axis)
    variable.assign(value)


def _permute_reader(layer, order, starts):
    if isinstance(layer, DynamicBatchNormalization):
        for variable in (layer.gamma, layer.beta):
            _permute(variable, order, 0, starts)
        for variable in (layer.moving_mean, layer.moving_variance):
            _permute(variable, order, 1, starts)
    elif isinstance(layer, DynamicLayerNormalization):
        for variable in (layer.gamma, layer.beta):
            if variable is not None:
                _permute(variable, order, 0, starts)
    elif isinstance(layer, DynamicDepthwiseConv2D):
        _permute(layer.kernel, order, -2, starts)
        if layer.bias is not None:
            _permute(layer.bias, order, 0, starts)
    else:
        _permute(layer.kernel, order, -2, starts)

"""Width groups and importance reordering, for non-uniform sub-nets.

A **width group** is a set of channels that one layer produces and the next
one reads, with the per-channel layers in between (batch norm, depthwise
convolution). A uniform sub-net cuts every group to the same ratio; a
**non-uniform** sub-net gives each group its own (Yang and Fan). Channels
are kept from the first, so reordering them by importance first (the norm
of the weights that produce them) makes the kept ones the important ones.

Only chain models (each layer reads the previous one's channels: `mlp`,
`vgg16`, `mobilenet`) have independent groups; in a residual network the
additions tie the widths of whole stages together.
"""

import numpy as np

from zoo.layers.dynamic_batch_normalization import DynamicBatchNormalization
from zoo.layers.dynamic_depthwise_conv2d import DynamicDepthwiseConv2D
from zoo.layers.profile_branches import ProfileBranches

PER_CHANNEL = (DynamicBatchNormalization, DynamicDepthwiseConv2D)


class WidthGroup:
    """The producer, the per-channel members and the consumer of some channels."""

    def __init__(self, producer):
        self.producer = producer
        self.members = []
        self.consumer = None

    def __repr__(self):
        names = [self.producer.name] + [m.name for m in self.members]
        return f"WidthGroup({' -> '.join(names)} -> {getattr(self.consumer, 'name', None)})"


def width_groups(model):
    """The width groups of a chain model, in network order.

    Raises:
        ValueError: if the model is not a chain (e.g. `resnet20`).
    """
    if hasattr(model, "graph_width_groups"):
        return model.graph_width_groups()
    if not getattr(model, "is_chain", False):
        raise ValueError(
            f"{type(model).__name__} is not a chain of layers (residual additions tie "
            "widths together), so it has no independent width groups: non-uniform "
            "sub-nets need a chain model such as mlp, vgg16 or mobilenet."
        )
    groups, current = [], None
    for layer in model.dynamic_layers:
        if isinstance(layer, PER_CHANNEL) and layer.cut_inputs:
            current.members.append(layer)
            continue
        if layer.cut_inputs:
            current.consumer = layer
        if layer.cut_outputs:
            current = WidthGroup(layer)
            groups.append(current)
    return groups


def assign_groups(groups):
    """Tells each layer which group's ratio sets its input and output widths."""
    for index, group in enumerate(groups):
        for layer in _with_branches(group.producer):
            object.__setattr__(layer, "_output_group", index)
        for member in group.members:
            object.__setattr__(member, "_input_group", index)
            object.__setattr__(member, "_output_group", index)
        for layer in _with_branches(group.consumer):
            object.__setattr__(layer, "_input_group", index)


def reorder_channels(model, norm="l1", data=None):
    """Permutes every width group's channels by importance, most important first.

    A channel's importance is the norm (`"l1"` or `"l2"`) of the producer's
    weights that compute it (summed over profile branches), or with `data`
    (models made by `zoo.dynamic`) the mean absolute value of the
    producers' outputs on those images. The producer's
    outputs, the members' per-channel weights and statistics and the
    consumer's input rows move together, and the consumer's rows are
    rescaled by its profile so that `gamma_i * W[i]` moves unchanged: the
    full-width model computes exactly the same function. A compiled model's
    optimizer slots (momenta, second moments) are zeroed: they would push
    the channels in their old order.

    Args:
        model: a chain `zoo.DynamicModel`, or a model made by `zoo.dynamic`
            (any graph: residual additions and concatenations included).
        norm: `"l1"` or `"l2"`.
        data: images to measure importance on (models made by `zoo.dynamic`).

    Returns:
        The model (reordered in place).

    Example:
    >>> model = zoo.reorder_channels(model)  # then train non-uniform sub-nets
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"`norm` must be 'l1' or 'l2'; got {norm!r}.")
    if hasattr(model, "graph_width_groups"):
        from zoo.graph_width_groups import reorder_graph_channels

        reorder_graph_channels(model, norm, data)
        return _finish_reordering(model)
    if data is not None:
        raise ValueError(
            "`data` measures importance on models made by `zoo.dynamic`; the zoo's own "
            "models are reordered by weight norm (leave `data` out)."
        )
    permutations = {}
    for index, group in enumerate(width_groups(model)):
        order = np.argsort(-_importance(group.producer, norm), kind="stable")
        for layer in _expand(group.producer):
            _permute(layer.kernel, order, axis=-1)
            if layer.bias is not None:
                _permute(layer.bias, order, axis=0)
        for member in group.members:
            _permute_member(member, order)
        for layer in _expand(group.consumer):
            _permute_consumer(layer, order)
        permutations[index] = order
    return _finish_reordering(model)


def _finish_reordering(model):
    model.weights_changed()
    if getattr(model, "optimizer", None) is not None:
        model.reset_optimizer_state()
    return model


def _with_branches(layer):
    return [] if layer is None else [layer] + [b for b in _expand(layer) if b is not layer]


def _expand(layer):
    if layer is None:
        return []
    return list(layer.branches) if isinstance(layer, ProfileBranches) else [layer]


def _importance(producer, norm):
    total = 0.0
    for layer in _expand(producer):
        kernel = np.asarray(layer.kernel.numpy())
        flat = kernel.reshape(-1, kernel.shape[-1])
        total = total + (np.abs(flat).sum(0) if norm == "l1" else np.sqrt((flat**2).sum(0)))
    return total


def _permute(variable, order, axis):
    value = np.asarray(variable.numpy())
    variable.assign(np.take(value, order, axis=axis))


def _permute_member(member, order):
    if isinstance(member, DynamicBatchNormalization):
        for variable in (member.gamma, member.beta):
            _permute(variable, order, axis=0)
        for variable in (member.moving_mean, member.moving_variance):
            _permute(variable, order, axis=1)
        return
    _permute(member.kernel, order, axis=-2)
    if member.bias is not None:
        _permute(member.bias, order, axis=0)


def _permute_consumer(layer, order):
    kernel = np.take(np.asarray(layer.kernel.numpy()), order, axis=-2)
    gamma = layer.gamma_values()
    if gamma is not None:
        # The profile is positional: row j now sits where gamma_j applies.
        kernel = kernel * np.expand_dims(gamma[order] / gamma, -1)
    layer.kernel.assign(kernel)

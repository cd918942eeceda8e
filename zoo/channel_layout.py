"""Which channels of a converted model's tensors follow the compute ratio.

`zoo.dynamic` cuts every tensor of a Keras graph along its last axis. A
tensor's **layout** says how: the blocks of channels (segments) it is made
of, each produced by one convolution or dense layer and cut to its own
first channels, and how many times they repeat (a `Flatten` of several
pixels). Tensors that are added, subtracted or multiplied must keep the
same channels, so their segments join one **width group**; every group
takes one ratio (all the same in a uniform sub-net, each its own in a
non-uniform one). Groups that reach the model's output, or a layer that
needs all its channels (`Normalization`, `Softmax`), are never cut.
"""

import math

import keras

from zoo.keras_graph import tensor_refs

L = keras.layers
PRODUCERS = (L.Conv1D, L.Conv2D, L.Dense, L.SeparableConv2D)
PER_CHANNEL = (L.BatchNormalization, L.DepthwiseConv2D, L.LayerNormalization)
ELEMENTWISE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
PASSTHROUGH = (
    L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D,
    L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.Identity, L.Rescaling,
    L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D, L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D, L.Cropping2D,
    L.UpSampling1D, L.UpSampling2D, L.ActivityRegularization,
)  # fmt: skip
NEEDS_ALL_CHANNELS = (L.Normalization, L.Softmax)
# Keras operations applied to tensors directly (`x + 3.0`, `ops.relu6(x)`).
ELEMENTWISE_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum"}
UNARY_OPS = {
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "HardSwish", "Silu", "Swish",
    "Gelu", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign", "Tanh", "Negative",
    "Absolute", "Abs", "Square", "Sqrt", "Exp", "Clip", "Cast",
}  # fmt: skip
SUPPORTED = (
    "Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, BatchNormalization, "
    "LayerNormalization (last axis), activations, pooling, Add, Subtract, Multiply, "
    "Average, Maximum, Minimum, Concatenate (last axis), Reshape to (1, ..., 1, C), "
    "Flatten, Dropout, Rescaling, Normalization (on uncut inputs), ZeroPadding, Cropping, "
    "UpSampling, Identity, element-wise Keras operations ("
    + ", ".join(sorted(ELEMENTWISE_OPS | UNARY_OPS))
    + "), and any layer on channels that are never cut (the images' preprocessing)"
)


class Layout:
    """The channels of one tensor: `segments` `[(segment id, channels)]`,
    repeated `positions` times."""

    def __init__(self, segments, positions=1):
        self.segments = tuple(segments)
        self.positions = int(positions)

    @property
    def channels(self):
        return self.positions * sum(size for _, size in self.segments)


class ChannelPlan:
    """The layouts of a `zoo.keras_graph.KerasGraph` and its width groups.

    Args:
        graph: the `KerasGraph` of a model to convert.

    Raises:
        ValueError: naming the layer, its class and what is supported, for a
            layer or operation that cannot be cut along its channels.

    Example:
    >>> plan = ChannelPlan(zoo.keras_graph.read_graph(model))
    >>> plan.input_layout(node)   # [(channels, group)], positions
    """

    def __init__(self, graph):
        self.parent = {}
        self.sizes = {}
        self.uncut = set()
        self.layouts = {
            ("images", 0): Layout([(self._segment(graph.image_shape[-1]), graph.image_shape[-1])])
        }
        self.uncut.add(0)
        self.outputs_of = {}
        for node in graph.nodes:
            self._visit(node)
        for ref in tensor_refs(graph.outputs):
            self._keep_whole(self.layouts[ref.key])
        self.group_index = self._number_groups()

    # -- width groups --------------------------------------------------------

    def _segment(self, size):
        segment = len(self.parent)
        self.parent[segment] = segment
        self.sizes[segment] = int(size)
        return segment

    def _root(self, segment):
        while self.parent[segment] != segment:
            self.parent[segment] = self.parent[self.parent[segment]]
            segment = self.parent[segment]
        return segment

    def _join(self, a, b):
        a, b = self._root(a), self._root(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def _keep_whole(self, layout):
        for segment, _ in layout.segments:
            self.uncut.add(segment)

    def _number_groups(self):
        uncut = {self._root(s) for s in self.uncut}
        index = {}
        for segment in sorted(self.parent):
            root = self._root(segment)
            if root not in uncut and root not in index:
                index[root] = len(index)
        return index

    def group(self, segment):
        """The width group of `segment`, or `None` if it is never cut."""
        return self.group_index.get(self._root(segment))

    @property
    def num_groups(self):
        return len(self.group_index)

    def input_layout(self, node):
        """`([(channels, group)], positions)` of `node`'s first input tensor."""
        layout = self.layouts[node.inputs[0].key]
        return [(size, self.group(s)) for s, size in layout.segments], layout.positions

    def output_group(self, node):
        """The width group of a producer's outputs (`None`: never cut)."""
        ((segment, _),) = self.layouts[(node.name, 0)].segments
        return self.group(segment)

    # -- propagation ---------------------------------------------------------

    def _visit(self, node):
        operation = node.operation
        inputs = [self.layouts[ref.key] for ref in node.inputs]
        if not inputs:
            raise ValueError(_unsupported(node, "it reads no tensor of the graph"))
        reshapes = type(operation) in (L.Reshape, L.Flatten)
        if (reshapes or not self._is_known(operation)) and self._all_uncut(inputs):
            self.layouts[(node.name, 0)] = self._uncut_output(node)
            return
        if isinstance(operation, keras.layers.Layer):
            output = self._layer_output(node, operation, inputs)
        else:
            output = self._operation_output(node, inputs)
        self.layouts[(node.name, 0)] = output

    @staticmethod
    def _is_known(operation):
        known = PRODUCERS + PER_CHANNEL + ELEMENTWISE + PASSTHROUGH + NEEDS_ALL_CHANNELS
        if isinstance(operation, keras.layers.Layer):
            return type(operation) in known + (L.Concatenate, L.Reshape, L.Flatten)
        return type(operation).__name__ in ELEMENTWISE_OPS | UNARY_OPS

    def _all_uncut(self, inputs):
        uncut = {self._root(s) for s in self.uncut}
        return all(self._root(s) in uncut for layout in inputs for s, _ in layout.segments)

    def _uncut_output(self, node):
        """Any layer on channels that are never cut (preprocessing, random
        augmentation on the images) is kept as it is: its output is never cut."""
        shapes = node.output_shapes
        if len(shapes) != 1 or shapes[0] is None or shapes[0][-1] is None:
            raise ValueError(_unsupported(node, "its output shape is not known"))
        segment = self._segment(shapes[0][-1])
        self.uncut.add(segment)
        return Layout([(segment, shapes[0][-1])])

    def _layer_output(self, node, layer, inputs):
        kind = type(layer)
        first = inputs[0]
        if len(inputs) > 1 and not issubclass(kind, ELEMENTWISE + (L.Concatenate,)):
            raise ValueError(_unsupported(node, "it reads several tensors"))
        if issubclass(kind, PRODUCERS) and kind in PRODUCERS:
            _check_producer(node, layer)
            if first.positions > 1 and kind is not L.Dense:
                raise ValueError(_unsupported(node, "its input is flattened"))
            channels = layer.units if kind is L.Dense else layer.filters
            return Layout([(self._segment(channels), channels)])
        if kind in PER_CHANNEL:
            _check_per_channel(node, layer)
            return first
        if kind in ELEMENTWISE:
            return self._elementwise(node, inputs)
        if kind is L.Concatenate:
            rank = len(node.inputs[0].shape or ())
            if layer.axis not in (-1, rank - 1):
                raise ValueError(_unsupported(node, f"it concatenates on axis {layer.axis}"))
            if any(layout.positions > 1 for layout in inputs):
                raise ValueError(_unsupported(node, "it concatenates flattened tensors"))
            return Layout([s for layout in inputs for s in layout.segments])
        if kind in NEEDS_ALL_CHANNELS:
            self._keep_whole(first)
            return first
        if kind is L.Rescaling:
            if _is_vector(layer.scale) or _is_vector(layer.offset):
                self._keep_whole(first)
            return first
        if kind in PASSTHROUGH:
            return first
        if kind is L.Reshape:
            return self._reshape(node, layer, first)
        if kind is L.Flatten:
            shape = node.inputs[0].shape
            if first.positions > 1 or shape is None or None in shape[1:]:
                raise ValueError(_unsupported(node, "the shape it flattens is not known"))
            return Layout(first.segments, math.prod(shape[1:-1]))
        raise ValueError(_unsupported(node, "this class is not supported"))

    def _operation_output(self, node, inputs):
        name = type(node.operation).__name__
        if name in UNARY_OPS:
            return inputs[0]
        if name in ELEMENTWISE_OPS:
            return self._elementwise(node, inputs)
        raise ValueError(_unsupported(node, "this operation is not supported"))

    def _elementwise(self, node, inputs):
        """Joins the segments of tensors combined channel by channel; tensors
        of one channel broadcast and join nothing."""
        wide = [layout for layout in inputs if layout.channels > 1]
        if not wide:
            return inputs[0]
        first = wide[0]
        for other in wide[1:]:
            sizes = [size for _, size in other.segments]
            if sizes != [size for _, size in first.segments] or other.positions != first.positions:
                raise ValueError(
                    _unsupported(
                        node,
                        "it combines tensors whose channels come from differently "
                        "concatenated blocks, which cannot be cut alike",
                    )
                )
            for (a, _), (b, _) in zip(first.segments, other.segments):
                self._join(a, b)
        return first

    def _reshape(self, node, layer, layout):
        target = tuple(layer.target_shape)
        if (
            layout.positions == 1
            and all(d == 1 for d in target[:-1])
            and target[-1]
            in (
                layout.channels,
                -1,
            )
        ):
            return layout
        raise ValueError(
            _unsupported(node, f"it reshapes to {target}; only (1, ..., 1, channels) is cut")
        )


def _is_vector(value):
    return hasattr(value, "__len__") and len(value) > 1


def _check_producer(node, layer):
    if isinstance(layer, L.Dense):
        rank = len(node.inputs[0].shape or (None, None))
        if rank != 2:
            raise ValueError(_unsupported(node, f"it is applied to a rank-{rank} tensor"))
        return
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(_unsupported(node, "it is channels_first"))
    if any(d != 1 for d in getattr(layer, "dilation_rate", (1,))):
        raise ValueError(_unsupported(node, "it is dilated"))
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(_unsupported(node, "it is a grouped convolution"))
    if getattr(layer, "depth_multiplier", 1) != 1:
        raise ValueError(_unsupported(node, "its depth multiplier is not 1"))


def _check_per_channel(node, layer):
    if isinstance(layer, L.DepthwiseConv2D):
        _check_producer(node, layer)
        return
    axis = layer.axis
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    rank = len(node.inputs[0].shape or ())
    if [a % rank if rank else a for a in axes] != [rank - 1]:
        raise ValueError(_unsupported(node, f"it normalizes over axis {axis}, not the channels"))


def _unsupported(node, reason):
    return (
        f"`zoo.dynamic` cannot convert layer {node.name!r} ({type(node.operation).__name__}): "
        f"{reason}. Supported: {SUPPORTED}."
    )

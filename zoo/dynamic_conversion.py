"""`zoo.dynamic`: any Functional or Sequential Keras CNN, made dynamic-width."""

import keras
import numpy as np

from zoo.channel_layout import ChannelPlan
from zoo.converted_model import TENSOR, ConvertedModel
from zoo.keras_graph import TensorRef, read_graph
from zoo.ratio import check_operating_points
from zoo.ratio_model import DEFAULT_OPERATING_POINTS

L = keras.layers


def dynamic(model, operating_points=DEFAULT_OPERATING_POINTS, channel_multiple=1, name=None):
    """A dynamic-width copy of a built Keras model, with the same weights.

    Every convolution, dense, depthwise and normalization layer becomes its
    `zoo.layers` dynamic version; every other layer and Keras operation is
    kept as it is. At compute ratio 1.0 the result computes what `model`
    does; at a smaller ratio each layer computes only its first channels.
    Tensors that are added, subtracted or multiplied keep the same channels
    (one width group), a `Concatenate` keeps the first channels of each of
    its inputs, and the model's input channels and outputs are never cut
    (see `zoo.channel_layout`). Batch norm starts with the original's
    statistics at every operating point: calibrate them
    (`zoo.calibrate_batchnorm`) or fine-tune before using small ratios.

    The result is a `zoo.DynamicModel`: it takes `{"images", "compute_ratio"}`
    (or images alone, ratio 1.0), trains with the `callbacks` suite, answers
    `zoo.cost`, `zoo.extract_subnet`, `zoo.reorder_channels` and
    `zoo.export_litert`, and saves to `.keras`.

    Args:
        model: a built Functional or Sequential `keras.Model` with one image
            input of fixed shape; nested Functional and Sequential models
            are entered.
        operating_points: the ratios batch norm keeps statistics for and
            callbacks evaluate at.
        channel_multiple: round every width up to a multiple of this.
        name: the new model's name (default: `model.name + "_dynamic"`).

    Returns:
        A `zoo.converted_model.ConvertedModel`.

    Raises:
        ValueError: before anything is built, naming the layer, its class
            and what is supported, for a layer that cannot be cut, a layer
            called at two places or a graph the channels cannot follow.

    Example:
    >>> base = keras.applications.MobileNetV2((96, 96, 3), weights=None, classes=10)
    >>> model = zoo.dynamic(base, operating_points=[0.25, 0.5, 0.75, 1.0])
    >>> model({"images": x, "compute_ratio": np.full(len(x), 0.5, "float32")})
    """
    graph = read_graph(model)
    plan = ChannelPlan(graph)
    points = list(check_operating_points(operating_points))
    nodes, layouts, sources = [], {}, {}
    for node in graph.nodes:
        for entry, layout, source in _convert(node, plan, points, channel_multiple):
            nodes.append(entry)
            if layout is not None:
                layouts[entry["name"]] = layout
            sources[entry["name"]] = source
    spec = {"nodes": nodes, "outputs": _encode(graph.outputs), "layouts": layouts}
    output_shape = model.outputs[0].shape
    converted = ConvertedModel(
        spec,
        input_shape=graph.image_shape,
        num_classes=int(output_shape[-1]),
        operating_points=points,
        channel_multiple=channel_multiple,
        name=name or f"{model.name}_dynamic",
    )
    for entry in nodes:
        _copy_weights(sources[entry["name"]], converted.graph_layer(entry["name"]), points)
    converted.weights_changed()
    return converted


def _convert(node, plan, points, channel_multiple):
    """`[(node entry, layout or None, (original layer, part))]` for one node."""
    operation = node.operation
    args, kwargs = _encode(node.args), _encode(node.kwargs)
    if isinstance(operation, keras.layers.Layer) and any(
        v is not None for v in node.kwargs.values()
    ):
        if set(node.kwargs) - {"training", "mask"}:
            raise ValueError(
                f"`zoo.dynamic` cannot convert layer {node.name!r} ({type(operation).__name__}): "
                f"it is called with arguments {sorted(node.kwargs)}."
            )
    kind = type(operation)
    common = {"name": node.name, "args": args, "kwargs": {}}
    if kind not in (L.Conv1D, L.Conv2D, L.Dense, L.SeparableConv2D, L.DepthwiseConv2D,
                    L.BatchNormalization, L.LayerNormalization):  # fmt: skip
        layer = keras.saving.serialize_keras_object(operation)
        layer.pop("build_config", None)
        if kind is L.Reshape:
            layer["config"]["target_shape"] = list(operation.target_shape[:-1]) + [-1]
        if not isinstance(operation, keras.layers.Layer):
            common["kwargs"] = kwargs
        return [(dict(common, layer=layer), None, (operation, None))]
    segments, positions = plan.input_layout(node)
    cut_inputs = any(group is not None for _, group in segments)
    layout = {"segments": [list(s) for s in segments], "positions": positions}
    dynamic = {"channel_multiple": channel_multiple, "cut_inputs": cut_inputs, "name": node.name}
    if kind in (L.BatchNormalization, L.LayerNormalization, L.DepthwiseConv2D):
        layout["output_group"] = None
        layer = _per_channel_layer(operation, dynamic, points)
        return [(dict(common, layer=_serialize(layer)), layout, (operation, None))]
    output_group = plan.output_group(node)
    layout["output_group"] = output_group
    dynamic["cut_outputs"] = output_group is not None
    if kind is L.SeparableConv2D:
        depthwise_name = f"{node.name}_depthwise"
        depthwise = _zoo_layers().DynamicDepthwiseConv2D(
            operation.kernel_size, operation.strides, operation.padding, use_bias=False,
            **dict(dynamic, name=depthwise_name, cut_outputs=cut_inputs),
        )  # fmt: skip
        pointwise = _zoo_layers().DynamicConv2D(
            operation.filters, 1, activation=operation.activation, use_bias=operation.use_bias,
            **dynamic,
        )  # fmt: skip
        first = dict(layout, output_group=None)
        return [
            (dict(common, name=depthwise_name, layer=_serialize(depthwise)), first, (operation, "depthwise")),
            ({"name": node.name, "args": [{TENSOR: [depthwise_name, 0]}], "kwargs": {},
              "layer": _serialize(pointwise)}, layout, (operation, "pointwise")),
        ]  # fmt: skip
    layer = _producer_layer(operation, dynamic)
    return [(dict(common, layer=_serialize(layer)), layout, (operation, None))]


def _zoo_layers():
    from zoo import layers

    return layers


def _producer_layer(layer, dynamic):
    zoo_layers = _zoo_layers()
    shared = {
        "activation": layer.activation,
        "use_bias": layer.use_bias,
        "kernel_initializer": layer.kernel_initializer,
        "kernel_regularizer": layer.kernel_regularizer,
    }
    if isinstance(layer, L.Dense):
        return zoo_layers.DynamicDense(layer.units, **shared, **dynamic)
    if isinstance(layer, L.Conv1D):
        if layer.padding not in ("same", "valid"):
            raise ValueError(
                f"`zoo.dynamic` cannot convert layer {layer.name!r} (Conv1D): padding "
                f"{layer.padding!r}; 'same' and 'valid' are supported."
            )
        return zoo_layers.DynamicConv1D(
            layer.filters, layer.kernel_size, layer.strides, layer.padding, **shared, **dynamic
        )
    return zoo_layers.DynamicConv2D(
        layer.filters, layer.kernel_size, layer.strides, layer.padding, **shared, **dynamic
    )


def _per_channel_layer(layer, dynamic, points):
    zoo_layers = _zoo_layers()
    if isinstance(layer, L.DepthwiseConv2D):
        return zoo_layers.DynamicDepthwiseConv2D(
            layer.kernel_size,
            layer.strides,
            layer.padding,
            activation=layer.activation,
            use_bias=layer.use_bias,
            cut_outputs=dynamic["cut_inputs"],
            **dynamic,
        )
    if isinstance(layer, L.LayerNormalization):
        return zoo_layers.DynamicLayerNormalization(
            epsilon=layer.epsilon, center=layer.center, scale=layer.scale, **dynamic
        )
    return zoo_layers.DynamicBatchNormalization(
        operating_points=points, momentum=layer.momentum, epsilon=layer.epsilon, **dynamic
    )


def _serialize(layer):
    return keras.saving.serialize_keras_object(layer)


def _copy_weights(source, target, points):
    original, part = source
    if not getattr(original, "weights", None):
        return
    if isinstance(original, L.BatchNormalization):
        channels = original.moving_mean.shape[0]
        gamma = original.gamma.numpy() if original.scale else np.ones(channels, "float32")
        beta = original.beta.numpy() if original.center else np.zeros(channels, "float32")
        rows = len(points)
        target.gamma.assign(gamma)
        target.beta.assign(beta)
        target.moving_mean.assign(np.tile(original.moving_mean.numpy(), (rows, 1)))
        target.moving_variance.assign(np.tile(original.moving_variance.numpy(), (rows, 1)))
        return
    if isinstance(original, L.SeparableConv2D):
        if part == "depthwise":
            target.kernel.assign(original.depthwise_kernel.numpy())
        else:
            target.kernel.assign(original.pointwise_kernel.numpy())
            if original.use_bias:
                target.bias.assign(original.bias.numpy())
        return
    if isinstance(original, L.DepthwiseConv2D):
        target.kernel.assign(original.kernel.numpy())
        if original.use_bias:
            target.bias.assign(original.bias.numpy())
        return
    if isinstance(original, (L.Conv1D, L.Conv2D, L.Dense)):
        target.kernel.assign(original.kernel.numpy())
        if original.use_bias:
            target.bias.assign(original.bias.numpy())
        return
    if isinstance(original, L.LayerNormalization):
        for name in ("gamma", "beta"):
            if getattr(original, name, None) is not None:
                getattr(target, name).assign(getattr(original, name).numpy())
        return
    target.set_weights(original.get_weights())


def _encode(structure):
    if isinstance(structure, TensorRef):
        return {TENSOR: [structure.node, structure.index]}
    if isinstance(structure, dict):
        return {key: _encode(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_encode(item) for item in structure]
    if isinstance(structure, np.generic):
        return structure.item()
    return structure

"""Turning a trained model into one whose layers carry effort knobs."""

import keras
import numpy as np

from zoo.dynamic_model import DynamicModel
from zoo.effort.effort_conv2d import EffortConv2D
from zoo.effort.effort_dense import EffortDense
from zoo.effort.folded import Folded
from zoo.ratio import check_ratio
from zoo.subnet import extract_subnet


def effort_layers(model):
    """The layers of `model` that carry knobs, in call order."""
    return [layer for layer in model.layers if isinstance(layer, (EffortConv2D, EffortDense))]


def effort_layer_inputs(model, images, batch_size=250):
    """Yields, per batch of `images`, the list of what each knob layer
    receives (in `effort_layers` order), computed eagerly: a `predict` per
    call would trace a new function each time."""
    layers = effort_layers(model)
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    for start in range(0, len(images), batch_size):
        batch = keras.ops.convert_to_tensor(images[start : start + batch_size], "float32")
        inputs = probe(batch, training=False)
        yield inputs if len(layers) > 1 else [inputs]


def prepare(model, compute_ratio=1.0):
    """A functional copy of `model` with every convolution and dense layer
    replaced by its effort-knob version, all knobs off.

    A zoo model is first reduced to its static sub-net at `compute_ratio`,
    so the knobs work within the channels that the ratio keeps. Batch norm
    right after a convolution (or dense layer) is folded into its kernel and
    bias, and a ReLU right after is taken in, because SPET predicts the
    ReLU's saturation. With every knob off the copy computes the same
    function as `model`.

    Args:
        model: a `zoo.DynamicModel`, or a functional or `Sequential` Keras
            model of `Conv2D`, `Dense` and other standard layers.
        compute_ratio: the ratio of a zoo model (ignored otherwise).

    Returns:
        A functional `keras.Model`.
    """
    check_ratio(compute_ratio)
    if isinstance(model, DynamicModel):
        model = extract_subnet(model, compute_ratio)
    if not model.built:
        raise ValueError(
            "Build the model (call it once or give an Input) before tuning its effort."
        )
    chains = _foldable_chains(model)
    replaced = {chain[0].name: chain for chain in chains}
    absorbed = {layer.name for chain in chains for layer in chain[1:] if layer is not None}

    def clone(layer):
        if layer.name in replaced:
            return _effort_layer(*replaced[layer.name])
        if layer.name in absorbed:
            return Folded(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name in absorbed or not layer.weights:
            continue
        target = copy.get_layer(layer.name)
        if layer.name in replaced:
            kernel, bias = _folded_weights(*replaced[layer.name])
            target.kernel.assign(kernel)
            target.bias.assign(bias)
        else:
            target.set_weights(layer.get_weights())
    return copy


def _foldable_chains(model):
    """`(linear, batch_norm or None, relu or None)` for each Conv2D/Dense."""
    consumers = {}
    for layer in model.layers:
        for tensor in keras.tree.flatten(_inputs_of(layer)):
            consumers.setdefault(id(tensor), []).append(layer)
    chains = []
    for layer in model.layers:
        if not _is_knobbable(layer):
            continue
        batch_norm = relu = None
        activation = keras.activations.serialize(layer.activation)
        tail = layer
        if activation == "linear":
            following = consumers.get(id(layer.output), [])
            if len(following) == 1 and _is_foldable_batch_norm(following[0]):
                batch_norm = tail = following[0]
            following = consumers.get(id(tail.output), [])
            if len(following) == 1 and _is_relu(following[0]):
                relu = following[0]
        elif activation != "relu":
            continue
        chains.append((layer, batch_norm, relu))
    return chains


def _inputs_of(layer):
    try:
        return layer.input
    except (AttributeError, ValueError):
        return []


def _is_knobbable(layer):
    if type(layer) is keras.layers.Conv2D:
        config = layer.get_config()
        return (
            config["groups"] == 1
            and tuple(config["dilation_rate"]) == (1, 1)
            and config["data_format"] == "channels_last"
            and config["padding"] in ("same", "valid")
        )
    return type(layer) is keras.layers.Dense and len(layer.input.shape) == 2


def _is_foldable_batch_norm(layer):
    return (
        isinstance(layer, keras.layers.BatchNormalization)
        and layer.axis in (-1, [-1], [3], 3, [1], 1)
        and (layer.axis in (-1, [-1]) or len(layer.input.shape) - 1 in np.atleast_1d(layer.axis))
    )


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (
            config["max_value"] is None and not config["negative_slope"] and not config["threshold"]
        )
    if isinstance(layer, keras.layers.Activation):
        return keras.activations.serialize(layer.activation) == "relu"
    return False


def _effort_layer(linear, batch_norm, relu):
    activation = (
        "relu"
        if relu is not None or keras.activations.serialize(linear.activation) == "relu"
        else None
    )
    if isinstance(linear, keras.layers.Dense):
        return EffortDense(linear.units, activation=activation, name=linear.name)
    return EffortConv2D(
        linear.filters,
        linear.kernel_size,
        strides=linear.strides,
        padding=linear.padding,
        activation=activation,
        name=linear.name,
    )


def _folded_weights(linear, batch_norm, relu):
    kernel = np.asarray(linear.kernel)
    bias = np.asarray(linear.bias) if linear.use_bias else np.zeros(kernel.shape[-1], "float32")
    if batch_norm is None:
        return kernel, bias
    scale = np.asarray(batch_norm.moving_variance) + batch_norm.epsilon
    scale = 1.0 / np.sqrt(scale)
    if batch_norm.scale:
        scale = scale * np.asarray(batch_norm.gamma)
    offset = np.asarray(batch_norm.beta) if batch_norm.center else 0.0
    return (kernel * scale).astype("float32"), (
        (bias - np.asarray(batch_norm.moving_mean)) * scale + offset
    ).astype("float32")

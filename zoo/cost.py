"""Cost of a model at an operating point: multiply-adds, parameters, dot products.

Conventions (those of the IDP, TESLA and ResNet papers):
- `flops` counts multiply-adds (one multiply and one add is one operation) of
  the dense, convolution and depthwise-convolution layers for one input.
  Batch norm, activations, pooling and additions are not counted (batch norm
  folds into the preceding convolution when deployed).
- `params` counts the weights a forward pass at that ratio reads: sliced
  kernels, biases, batch norm's scale and offset (not its moving statistics,
  not the profile, which folds into the kernels).
- `dot_products` counts the dot products computed for one input, one per
  output value of a dense, convolution or depthwise layer; their terms
  together are the multiply-adds.
"""

import math

import keras

from zoo.ratio import check_ratio

KEYS = ("flops", "params", "dot_products")


def cost(model, compute_ratio=None, per_layer=False, layer_ratios=None, data=None):
    """Cost of a zoo model at `compute_ratio`.

    Args:
        model: a zoo model (`zoo.RatioModel`): it answers `model.cost`.
        compute_ratio: float in (0, 1]; default 1.0.
        per_layer: also return `"layers"`: each dynamic layer's own counts.
        layer_ratios: a non-uniform sub-net instead: one ratio per width
            group (chain models, see `zoo.width_groups`); not with
            `compute_ratio`.
        data: images, for models whose cost depends on the input (LC-Net,
            `model.cost_depends_on_data`): then the result is the mean over
            them, with `"per_input"`.

    Returns:
        `{"flops": int, "params": int, "dot_products": int}` (and `"layers"`),
        or for an input-dependent model `{"flops": mean multiply-adds,
        "per_input": array, "backbone_flops": int}`.

    Example:
    >>> zoo.cost(model, compute_ratio=0.5)["flops"]
    >>> zoo.cost(lcnet, compute_ratio=0.5, data=x_test[:1000])["per_input"]
    """
    from zoo.ratio_model import RatioModel

    if not isinstance(model, RatioModel):
        raise ValueError(
            f"`zoo.cost` counts zoo models (built by `zoo.build` or `zoo.load`); got "
            f"{type(model).__name__}. For a model of standard Keras layers use `zoo.static_cost`."
        )
    if compute_ratio is not None and layer_ratios is not None:
        raise ValueError(
            "Give `compute_ratio` (one ratio for every layer) or `layer_ratios` "
            "(one per width group), not both."
        )
    compute_ratio = 1.0 if compute_ratio is None else compute_ratio
    check_ratio(compute_ratio)
    if model.cost_depends_on_data:
        return model.cost(float(compute_ratio), data=data)
    return model.cost(float(compute_ratio), per_layer=per_layer, layer_ratios=layer_ratios)


def layer_cost(model, compute_ratio=1.0, per_layer=False, layer_ratios=None):
    """The counts of a `zoo.DynamicModel`, layer by layer (its `cost`)."""
    if layer_ratios is not None:
        layer_ratios = [float(r) for r in layer_ratios]
        check_ratio(layer_ratios, "layer_ratios")
        if len(layer_ratios) != model.num_width_groups:
            raise ValueError(
                f"`layer_ratios` needs one ratio per width group: {model.num_width_groups} "
                f"for {model.name}; got {len(layer_ratios)}."
            )
    totals = dict.fromkeys(KEYS, 0)
    layers = {}
    for layer in model.dynamic_layers:
        counts = layer.cost(layer_ratios if layer_ratios is not None else float(compute_ratio))
        layers[layer.name] = counts
        for key in KEYS:
            totals[key] += counts[key]
    if per_layer:
        totals["layers"] = layers
    return totals


def static_cost(model):
    """The same counts for a model of standard Keras layers (e.g. a sub-net).

    Counts `Dense`, `Conv1D`, `Conv2D` and `DepthwiseConv2D` multiply-adds
    from the layers' input and output shapes, and their, `BatchNormalization`'s
    and `LayerNormalization`'s trainable parameters, entering nested models.
    """
    totals = dict.fromkeys(KEYS, 0)
    for layer in _leaf_layers(model):
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
            totals["params"] += sum(math.prod(w.shape) for w in layer.trainable_weights)
            continue
        if not isinstance(
            layer,
            (
                keras.layers.Dense,
                keras.layers.Conv1D,
                keras.layers.Conv2D,
                keras.layers.DepthwiseConv2D,
            ),
        ):
            continue
        out_shape = layer.output.shape[1:]
        kernel = layer.kernel.shape
        outputs = math.prod(out_shape)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            terms = kernel[0] * kernel[1]
        else:
            terms = math.prod(kernel[:-1])
        totals["flops"] += outputs * terms
        totals["dot_products"] += outputs
        totals["params"] += sum(math.prod(w.shape) for w in layer.trainable_weights)
    return totals


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaf_layers(layer)
        else:
            yield layer

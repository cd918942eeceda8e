"""Extraction of the static sub-net a dynamic model runs at one ratio."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.ratio import check_ratio


def _clone(layer):
    clone = layer.__class__.from_config(layer.get_config())
    return clone


def _image_dtype(dtype):
    accepted = ("float32", "uint8")
    name = keras.backend.standardize_dtype(dtype)
    if name not in accepted:
        raise ValueError(f"`input_dtype` must be one of {accepted}; got {dtype!r}.")
    return name


def extract_subnet(model, compute_ratio, input_dtype="float32"):
    """A model of standard Keras layers equal to `model` at `compute_ratio`.

    Weights are sliced to the ratio's widths, each layer's profile is folded
    into its kernel and batch norm takes the statistics of the nearest
    operating point. The result depends on no `zoo` code: it saves as
    `.keras` and exports with `model.export()` for serving.

    Args:
        model: a `zoo.DynamicModel`.
        compute_ratio: float in (0, 1].
        input_dtype: dtype of the images the sub-net takes, and so of an
            exported serving signature. `"uint8"` serves the raw images of
            `zoo.datasets` directly; they are cast to float32 inside.

    Returns:
        A functional `keras.Model` taking raw images.

    Example:
    >>> small = zoo.extract_subnet(model, compute_ratio=0.5)
    >>> small.export("resnet20_r050")  # a SavedModel taking float32 images
    >>> zoo.extract_subnet(model, 0.5, input_dtype="uint8").export("r050_uint8")
    """
    if not isinstance(model, DynamicModel):
        raise ValueError(
            "`zoo.extract_subnet` slices a zoo dynamic model (built by `zoo.build` or "
            f"`zoo.load`, not LC-Net); got {type(model).__name__}."
        )
    check_ratio(compute_ratio)
    ratio = float(compute_ratio)
    images = keras.Input(model.image_shape, dtype=_image_dtype(input_dtype), name="images")

    def apply(layer, x):
        if isinstance(layer, DynamicLayer):
            return layer.static_layer(ratio)(x)
        clone = _clone(layer)
        y = clone(x)
        if layer.weights:
            clone.set_weights(layer.get_weights())
        return y

    x = images if images.dtype == "float32" else keras.ops.cast(images, "float32")
    outputs = model.forward(x, apply)
    name = f"{model.name}_r{round(ratio * 1000):04d}"
    return keras.Model(images, outputs, name=name)

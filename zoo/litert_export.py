"""One LiteRT (`.tflite`) file serving every operating point of a model."""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from zoo.dynamic_model import DynamicModel
from zoo.ratio import check_ratio_list
from zoo.subnet import extract_subnet

QUANTIZATIONS = (None, "dynamic", "int8")


def signature_name(ratio):
    """The signature of `ratio` in the exported file: `ratio_050` for 0.5."""
    return f"ratio_{round(100 * ratio):03d}"


def export_litert(model, path, ratios=None, quantize=None, representative_data=None):
    """Writes one `.tflite` file with a signature per operating point.

    Each signature (`signature_name(r)`: `ratio_100`, `ratio_050`, ...) takes
    `images` (float32, raw 0 to 255, as the model takes them) and returns
    `logits`; it runs the static sub-net of its ratio
    (`zoo.extract_subnet`), so a device picks its operating point by
    signature and computes only that width. Only LiteRT's builtin operators
    are used (no TF Select).

    Args:
        model: a zoo dynamic model (`zoo.build`, `zoo.load`).
        path: the `.tflite` file to write.
        ratios: the operating points to export (default: the model's).
        quantize: None (float32), `"dynamic"` (dynamic-range: int8 weights)
            or `"int8"` (full-integer, calibrated on `representative_data`).
        representative_data: images for `"int8"` calibration, as the model
            takes them (for an augmented preset, as training fed them);
            a few hundred are enough.

    Returns:
        `{signature name: ratio}`.

    Example:
    >>> zoo.export_litert(zoo.load("resnet20_cifar10"), "resnet20.tflite")
    >>> runner = Interpreter("resnet20.tflite").get_signature_runner("ratio_050")
    >>> runner(images=x.astype("float32"))["logits"]
    """
    if not isinstance(model, DynamicModel):
        raise ValueError(
            "`zoo.export_litert` exports a width-sliced zoo model (built by `zoo.build` or "
            f"`zoo.load`) through its static sub-nets; got {type(model).__name__}, which has "
            "none (LC-Net's gates choose blocks per input)."
        )
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            '`quantize="int8"` calibrates on images: pass `representative_data` (a few hundred '
            "images as the model takes them)."
        )
    ratios = check_ratio_list(ratios if ratios is not None else model.operating_points, "ratios")
    names = {signature_name(r): r for r in ratios}
    if len(names) != len(ratios):
        raise ValueError(f"`ratios` {ratios} round to the same signature names {sorted(names)}.")
    archive = keras.export.ExportArchive()
    spec = tf.TensorSpec((None, *model.image_shape), tf.float32, name="images")
    for name, ratio in names.items():
        subnet = extract_subnet(model, ratio)
        archive.track(subnet)
        archive.add_endpoint(name=name, fn=logits_of(subnet), input_signature=[spec])
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(names))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            converter.representative_dataset = representative_batches(representative_data, names)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        flatbuffer = converter.convert()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as file:
        file.write(flatbuffer)
    return names


def logits_of(subnet):
    """The endpoint of one sub-net: images in, `{"logits": ...}` out."""

    def serve(images):
        return {"logits": subnet(images, training=False)}

    return serve


def representative_batches(images, names):
    """The converter's calibration data: each image, for every signature."""
    images = np.asarray(images, "float32")

    def batches():
        for name in names:
            for image in images[:500]:
                yield name, {"images": image[np.newaxis]}

    return batches

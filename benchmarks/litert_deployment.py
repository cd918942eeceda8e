"""The CIFAR-10 presets on LiteRT: file sizes, accuracy and batch-1 latency
of float and int8 files against the Keras dynamic model and its static sub-net.

For each trained CIFAR-10 preset, in one run: `zoo.export_litert` writes a
float32 file and a full-integer int8 file (calibrated on 300 training images
as the preset's augmented pipeline fed them), each with a signature per
operating point. Accuracy is measured on the held-out test slice
(`test[:20%]`, 2,000 images) at every ratio; latency is the median of
repeated batch-1 calls on one image (LiteRT with XNNPACK on one thread; the
Keras models as compiled `tf.function`s), as are the sizes of the files.

Usage: `python benchmarks/litert_deployment.py [--quick]` (not `litert.py`: TensorFlow imports a module of that name)
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from zoo.latency import inference_function, time_call  # noqa: E402
from zoo.litert_export import signature_name  # noqa: E402
from zoo.preset_training import HELD_OUT_SPLIT  # noqa: E402

PRESETS = ("resnet20_cifar10", "mobilenet_cifar10", "vgg16_cifar10")
THREADS = 1


def representative_images(preset, count=300):
    recipe = zoo.presets.get_preset(preset)["recipe"]
    train = zoo.datasets.load_arrays("cifar10", "train[:2000]")
    batches = zoo.recipes.training_dataset(train, recipe, seed=0)
    images = []
    for batch, _ in batches:
        images.append(batch.numpy())
        if sum(len(b) for b in images) >= count:
            break
    return np.concatenate(images)[:count]


def litert_results(path, ratios, images, labels, repeats):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(path, num_threads=THREADS)
    results = {}
    for ratio in ratios:
        run = interpreter.get_signature_runner(signature_name(ratio))
        logits = np.concatenate(
            [run(images=images[i : i + 100])["logits"] for i in range(0, len(images), 100)]
        )
        seconds = time_call(fetched_logits, run, images[:1], repeats=repeats)
        results[ratio] = {
            "accuracy": float(np.mean(np.argmax(logits, -1) == labels)),
            "latency_ms": 1000 * seconds,
        }
    return results


def fetched_logits(run, images):
    """One LiteRT call, as a tensor for `time_call` to fetch."""
    return tf.constant(run(images=images)["logits"])


def keras_latency(model, ratio, repeats):
    one = tf.constant(np.zeros((1, *model.image_shape), "float32"))
    forward = inference_function(model)
    dynamic = time_call(forward, one, tf.fill([1], ratio), repeats=repeats)
    subnet = zoo.extract_subnet(model, ratio)
    static = time_call(tf.function(lambda x: subnet(x, training=False)), one, repeats=repeats)
    return 1000 * dynamic, 1000 * static


def preset_results(preset, quick):
    model = zoo.load(preset)
    ratios = sorted(model.operating_points, reverse=True)
    split = "test[:200]" if quick else HELD_OUT_SPLIT
    images, labels = zoo.datasets.load_arrays("cifar10", split)
    images = images.astype("float32")
    repeats = 20 if quick else 200
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        float_path = os.path.join(folder, "float.tflite")
        int8_path = os.path.join(folder, "int8.tflite")
        zoo.export_litert(model, float_path)
        zoo.export_litert(
            model, int8_path, quantize="int8", representative_data=representative_images(preset)
        )
        sizes = {"float": os.path.getsize(float_path), "int8": os.path.getsize(int8_path)}
        for ratio in ratios:
            one_file = os.path.join(folder, f"{signature_name(ratio)}.tflite")
            zoo.export_litert(model, one_file, ratios=[ratio])
            sizes[f"float_ratio_{ratio:g}"] = os.path.getsize(one_file)
        float_results = litert_results(float_path, ratios, images, labels, repeats)
        int8_results = litert_results(int8_path, ratios, images, labels, repeats)
    keras_accuracy = zoo.evaluate_ratios(model, (images, labels), ratios)
    for ratio in ratios:
        dynamic_ms, static_ms = keras_latency(model, ratio, repeats)
        rows[f"{ratio:g}"] = {
            "keras_accuracy": keras_accuracy[ratio],
            "float_accuracy": float_results[ratio]["accuracy"],
            "int8_accuracy": int8_results[ratio]["accuracy"],
            "keras_dynamic_ms": dynamic_ms,
            "keras_static_ms": static_ms,
            "litert_float_ms": float_results[ratio]["latency_ms"],
            "litert_int8_ms": int8_results[ratio]["latency_ms"],
        }
    return {
        "ratios": rows,
        "file_bytes": sizes,
        "test_images": len(labels),
        "load_average": os.getloadavg()[0],
    }


def markdown(results):
    lines = [
        f"Batch-1 latency (median, ms) with LiteRT's XNNPACK on {results['threads']} thread, "
        "against the Keras dynamic model and its static sub-net; accuracy (%) on "
        f"{results['test_images']} held-out test images.",
        "",
        "| preset | ratio | Keras acc. | float acc. | int8 acc. | Keras dynamic | Keras static | LiteRT float | LiteRT int8 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for preset, result in results["presets"].items():
        for ratio, row in result["ratios"].items():
            lines.append(
                f"| `{preset}` | {ratio} | {100 * row['keras_accuracy']:.2f} | "
                f"{100 * row['float_accuracy']:.2f} | {100 * row['int8_accuracy']:.2f} | "
                f"{row['keras_dynamic_ms']:.2f} | {row['keras_static_ms']:.2f} | "
                f"{row['litert_float_ms']:.2f} | {row['litert_int8_ms']:.2f} |"
            )
    lines += [
        "",
        "| preset | float file (all ratios) | one float file at 1.0 | against it | "
        "one float file per ratio, summed | against them | int8 file (all ratios) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for preset, result in results["presets"].items():
        sizes = result["file_bytes"]
        full = sizes["float_ratio_1"]
        separate = sum(sizes[f"float_ratio_{ratio}"] for ratio in result["ratios"])
        lines.append(
            f"| `{preset}` | {sizes['float'] / 1e6:.2f} MB | {full / 1e6:.2f} MB | "
            f"{sizes['float'] / full:.2f}x | {separate / 1e6:.2f} MB | "
            f"{sizes['float'] / separate:.2f}x | {sizes['int8'] / 1e6:.2f} MB |"
        )
    loads = ", ".join(f"{result['load_average']:.2f}" for result in results["presets"].values())
    lines += ["", f"One-minute load average after each preset's measurements: {loads} (2 cores)."]
    return "\n".join(lines) + "\n"


def main(quick=False):
    presets = PRESETS[:1] if quick else PRESETS
    results = {"threads": THREADS, "machine": machine(), "presets": {}}
    for preset in presets:
        results["presets"][preset] = preset_results(preset, quick)
        print(preset, results["presets"][preset], flush=True)
    results["test_images"] = next(iter(results["presets"].values()))["test_images"]
    name = "litert_deployment_quick" if quick else "litert_deployment"
    write_results(name, results, markdown(results), readme=not quick)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one preset, 200 test images")
    main(parser.parse_args().quick)

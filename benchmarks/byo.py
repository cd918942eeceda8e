"""What `zoo.dynamic` is worth on a model of the user's kind: MobileNetV2 on CIFAR-10.

A Keras user has a small static CNN (here `keras.applications.MobileNetV2`
with `alpha=0.35` at 32x32, behind a `Rescaling` to [-1, 1], logits out)
trained on CIFAR-10 for a short budget. This script trains it, then:

1. converts it with `zoo.dynamic` and cuts it to 0.75, 0.5 and 0.25 as it
   is (batch norm calibrated at each ratio, nothing else);
2. reorders every width group's channels by their mean activation on 1,000
   training images (`zoo.reorder_channels(model, data=...)`), cuts again;
3. fine-tunes with the sandwich rule (`callbacks.SubnetSampler`, 3 ratios
   per step, in-place distillation) for a few epochs, then calibrates.

It reports the test accuracy (10,000 CIFAR-10 test images) of each step at
each ratio against the static model, multiply-adds per ratio, training
speed (images per second), and the latency of the converted model against
the extracted static sub-net at batch 64 (median of paired calls).

Results: `benchmarks/results/byo.{json,md}` and `byo.png`.

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/byo.py [--static-epochs 15] [--tune-epochs 5] [--quick]
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import callbacks  # noqa: E402
import zoo  # noqa: E402
from benchmarks.common import RESULTS, machine, new_figure, save_figure, write_results  # noqa: E402
from zoo.recipes import make_optimizer, training_dataset  # noqa: E402

RATIOS = [1.0, 0.75, 0.5, 0.25]
RECIPE = {
    "batch_size": 128,
    "optimizer": "sgd",
    "schedule": "cosine",
    "warmup_epochs": 1,
    "weight_decay": 5e-3,
    "augment": True,
}


def users_model():
    """The static CNN a user would bring: MobileNetV2-0.35 for 32x32 images."""
    images = keras.Input((32, 32, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10, classifier_activation=None
    )
    return keras.Model(images, backbone(x), name="users_mobilenetv2")


def fit(model, train, epochs, learning_rate, extra_callbacks=()):
    recipe = dict(RECIPE, epochs=epochs, learning_rate=learning_rate)
    steps = math.ceil(len(train[0]) / recipe["batch_size"])
    model.compile(
        optimizer=make_optimizer(recipe, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(
        training_dataset(train, recipe, seed=0),
        steps_per_epoch=steps,
        epochs=epochs,
        callbacks=list(extra_callbacks),
        verbose=2,
    )
    seconds = time.time() - start
    return {
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "images_per_second": round(epochs * len(train[0]) / seconds, 1),
    }


def accuracy(model, test, ratio=None):
    x, y = test
    if ratio is None:
        logits = model.predict(x, batch_size=500, verbose=0)
    else:
        inputs = {"images": x, "compute_ratio": np.full(len(x), ratio, "float32")}
        logits = model.predict(inputs, batch_size=500, verbose=0)
    return round(100.0 * float(np.mean(np.argmax(logits, -1) == y)), 2)


def calibrated_accuracies(model, train, test):
    recipe = dict(RECIPE, epochs=1)
    zoo.calibrate_batchnorm(model, training_dataset(train, recipe, seed=1), steps=20)
    return {str(r): accuracy(model, test, r) for r in RATIOS}


def latency(model, x, repeats=60):
    """Median ms of the converted model and of its extracted sub-net at batch
    64, timed in alternation (`zoo.latency.paired_speedup`), and their ratio
    with a 90% interval."""
    import tensorflow as tf

    from zoo.latency import inference_function, paired_speedup

    forward = inference_function(model)
    images = tf.constant(x[:64])
    rows = {}
    for ratio in RATIOS:
        subnet = zoo.extract_subnet(model, ratio)
        static = tf.function(lambda batch, subnet=subnet: subnet(batch, training=False))
        ratios = tf.fill([64], ratio)
        timing = paired_speedup(
            lambda ratios=ratios: forward(images, ratios),
            lambda static=static: static(images),
            repeats=repeats,
            warmup=10,
        )
        rows[str(ratio)] = {
            "converted_ms": round(1000 * timing["reference"], 2),
            "subnet_ms": round(1000 * timing["candidate"], 2),
            "ratio": round(timing["speedup"], 3),
            "interval": [round(timing["low"], 3), round(timing["high"], 3)],
        }
    return rows


def markdown(results):
    static = results["static"]["accuracy"]
    lines = [
        "| step | " + " | ".join(f"ratio {r}" for r in RATIOS) + " |",
        "| --- |" + " --- |" * len(RATIOS),
        f"| static model as trained ({results['static']['training']['epochs']} epochs) | {static} | | | |",
        "| static model, batch norm recalibrated (the converted model at 1.0) | "
        f"{results['cut']['accuracy']['1.0']} | | | |",
    ]
    names = {
        "cut": "converted and cut, batch norm calibrated",
        "reordered": "channels reordered by activation, calibrated",
        "fine_tuned": f"sandwich fine-tuning, {results['fine_tuned']['training']['epochs']} epochs",
    }
    for key, name in names.items():
        row = results[key]["accuracy"]
        lines.append(f"| {name} | " + " | ".join(f"{row[str(r)]:.2f}" for r in RATIOS) + " |")
    flops = results["multiply_adds"]
    lines.append(
        "| multiply-adds (M) | " + " | ".join(f"{flops[str(r)] / 1e6:.1f}" for r in RATIOS) + " |"
    )
    speed = results["latency_batch_64"]
    lines.append(
        "| latency, batch 64: converted / extracted sub-net (ms) | "
        + " | ".join(
            f"{speed[str(r)]['converted_ms']} / {speed[str(r)]['subnet_ms']} ({speed[str(r)]['ratio']}x)"
            for r in RATIOS
        )
        + " |"
    )
    lines += [
        "",
        f"`keras.applications.MobileNetV2(alpha=0.35)` at 32x32 behind a `Rescaling`, trained "
        f"statically on 45,000 CIFAR-10 images ({results['static']['training']['images_per_second']} "
        f"images/s), then `zoo.dynamic`; fine-tuning at {results['fine_tuned']['training']['images_per_second']} "
        "images/s (three sub-nets a step). Test accuracy (%) on the 10,000 test images. "
        "Every number comes from one run of `benchmarks/byo.py` with the machine to itself. "
        "Batch norm is calibrated on 20 batches of the augmented training pipeline at each ratio, "
        "for every converted row; the static model as trained uses the moving statistics Keras "
        "kept (momentum 0.999 in `keras.applications.MobileNetV2`, which lag a 15-epoch run).",
    ]
    return "\n".join(lines) + "\n"


def plot(results, path):
    figure, axis = new_figure(figsize=(6.4, 4.2))
    flops = [results["multiply_adds"][str(r)] / 1e6 for r in RATIOS]
    styles = {
        "cut": ("cut", "tab:gray", "s"),
        "reordered": ("reordered", "tab:orange", "^"),
        "fine_tuned": ("fine-tuned", "tab:blue", "o"),
    }
    for key, (label, colour, marker) in styles.items():
        row = [results[key]["accuracy"][str(r)] for r in RATIOS]
        axis.plot(flops, row, marker=marker, color=colour, label=label)
    static = results["cut"]["accuracy"]["1.0"]
    axis.scatter(
        [flops[0]],
        [static],
        color="black",
        marker="*",
        s=120,
        label="static model (recalibrated)",
        zorder=3,
    )
    axis.set_xlabel("multiply-adds per image (millions)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("Your own MobileNetV2, made dynamic")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    save_figure(figure, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static-epochs", type=int, default=15)
    parser.add_argument("--tune-epochs", type=int, default=5)
    parser.add_argument(
        "--quick", action="store_true", help="a few hundred images, to check the script"
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="rewrite the table and plot from byo.json"
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="measure the latency again (on a fresh conversion: weights do not change it)",
    )
    args = parser.parse_args()
    if args.tables_only or args.latency_only:
        with open(os.path.join(RESULTS, "byo.json")) as file:
            results = json.load(file)
        if args.latency_only:
            model = zoo.dynamic(users_model(), operating_points=RATIOS)
            images = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 3)).astype("float32")
            results["latency_batch_64"] = latency(model, images)
        write_results("byo", results, markdown(results))
        plot(results, os.path.join(RESULTS, "byo.png"))
        return
    train = zoo.datasets.load_arrays("cifar10", "train")
    test = zoo.datasets.load_arrays("cifar10", "test")
    train = (train[0][:45000], train[1][:45000])
    if args.quick:
        train, test = (train[0][:512], train[1][:512]), (test[0][:500], test[1][:500])
    keras.utils.set_random_seed(0)
    base = users_model()
    results = {
        "machine": machine(),
        "static": {"training": fit(base, train, args.static_epochs, 0.1)},
    }
    results["static"]["accuracy"] = accuracy(base, test)
    model = zoo.dynamic(base, operating_points=RATIOS)
    results["multiply_adds"] = {str(r): zoo.cost(model, r)["flops"] for r in RATIOS}
    results["cut"] = {"accuracy": calibrated_accuracies(model, train, test)}
    zoo.reorder_channels(model, data=train[0][:1000])
    results["reordered"] = {"accuracy": calibrated_accuracies(model, train, test)}
    sampler = callbacks.SubnetSampler(ratios=RATIOS, sandwich=True, num_ratios=3)
    training = fit(model, train, args.tune_epochs, 0.02, [sampler])
    results["fine_tuned"] = {
        "training": training,
        "accuracy": calibrated_accuracies(model, train, test),
    }
    results["latency_batch_64"] = latency(model, test[0])
    print(markdown(results))
    if args.quick:
        return
    write_results("byo", results, markdown(results))
    plot(results, os.path.join(RESULTS, "byo.png"))


if __name__ == "__main__":
    main()

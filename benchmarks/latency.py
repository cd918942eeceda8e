"""Latency of dynamic width against its static limit and naive masking.

For `mlp`, `vgg16`, `resnet20` and `mobilenet` (untrained; latency does not
depend on the weights), at ratios 1.0, 0.75, 0.5, 0.25 and batch sizes 1 and
64, in one run on this CPU:

- **dynamic**: the zoo model, ratio given as a tensor input (one compiled
  function serves every ratio);
- **static**: `zoo.extract_subnet` at that ratio, a plain Keras model with
  sliced weights: the limit slicing can reach;
- **masked**: the naive approach: the full-width network whose cut channels
  are multiplied by zero after every layer.

Each time is the median of repeated calls of a `tf.function` (after warm-up),
result fetched. The dynamic model and the static sub-net are timed in
alternation (`zoo.latency.paired_speedup`), so their ratio comes with a 90%
bootstrap interval and a slow spell of the machine slows both alike.
Usage: `python benchmarks/latency.py [--quick]`.
"""

import argparse
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import RESULTS, machine, write_results  # noqa: E402
from zoo.latency import inference_function, paired_speedup, probe_images, time_call  # noqa: E402
from zoo.layers import DynamicLayer  # noqa: E402
from zoo.ratio import RatioContext  # noqa: E402

MODELS = {"mlp": dict(), "vgg16": dict(), "resnet20": dict(), "mobilenet": dict()}
RATIOS = (1.0, 0.75, 0.5, 0.25)
BATCHES = (1, 64)


def masked_function(model):
    """Full-width forward pass with the channels beyond the ratio zeroed."""

    def apply(layer, x):
        if not isinstance(layer, DynamicLayer):
            return layer(x)
        y = layer(x, compute_ratio=1.0)
        if not layer.cut_outputs:
            return y
        channels = y.shape[-1]
        width = RatioContext(apply.ratio).width(channels, layer.channel_multiple)
        keep = tf.cast(tf.range(channels) < width, y.dtype)
        return y * keep

    @tf.function
    def forward(images, ratio):
        apply.ratio = ratio[0]
        return model.forward(images, apply)

    return forward


def repeats_for(seconds_per_call):
    return int(np.clip(2.0 / max(seconds_per_call, 1e-4), 10, 200))


def measure(function, *args):
    first = time_call(function, *args, repeats=3, warmup=2)
    return time_call(function, *args, repeats=repeats_for(first), warmup=2)


def measure_against_static(dynamic, static):
    """Times `dynamic()` and `static()` in alternation; their ratio with its interval."""
    first = time_call(dynamic, repeats=3, warmup=2)
    paired = paired_speedup(dynamic, static, repeats=repeats_for(first), warmup=2)
    return {
        "dynamic_ms": 1000 * paired["reference"],
        "static_ms": 1000 * paired["candidate"],
        "dynamic_over_static": paired["speedup"],
        "dynamic_over_static_interval": [paired["low"], paired["high"]],
    }


def benchmark_model(name, kwargs, ratios, batches):
    model = zoo.build(name, **kwargs)
    dynamic, masked = inference_function(model), masked_function(model)
    rows = []
    for batch in batches:
        images = probe_images(batch, model.image_shape)
        for ratio in ratios:
            subnet = zoo.extract_subnet(model, ratio)
            static = tf.function(lambda x, subnet=subnet: subnet(x, training=False))
            ratio_tensor = tf.fill([batch], float(ratio))
            row = {
                "model": name,
                "batch": batch,
                "ratio": ratio,
                "flops": zoo.cost(model, ratio)["flops"],
                **measure_against_static(
                    functools.partial(dynamic, images, ratio_tensor),
                    functools.partial(static, images),
                ),
                "masked_ms": 1000 * measure(masked, images, ratio_tensor),
            }
            rows.append(row)
            print(
                f"{name:>9} b={batch:<3} r={ratio:<4} dynamic {row['dynamic_ms']:8.3f} ms  "
                f"static {row['static_ms']:8.3f} ms  masked {row['masked_ms']:8.3f} ms",
                flush=True,
            )
    for row in rows:
        full = next(r for r in rows if r["batch"] == row["batch"] and r["ratio"] == 1.0)
        row["dynamic_vs_full"] = row["dynamic_ms"] / full["dynamic_ms"]
    return rows


def overhead(row):
    low, high = row["dynamic_over_static_interval"]
    return f"{row['dynamic_over_static']:.2f}x ({low:.2f} to {high:.2f})"


def markdown(rows):
    lines = [
        "| model | batch | ratio | mult-adds | dynamic (ms) | static sub-net (ms) | masked (ms) | dynamic / static | dynamic vs ratio 1.0 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['ratio']:.2f} | {r['flops'] / 1e6:.2f}M | "
            f"{r['dynamic_ms']:.3f} | {r['static_ms']:.3f} | {r['masked_ms']:.3f} | "
            f"{overhead(r)} | {r['dynamic_vs_full']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="batch 1 and ratio 1.0, 0.5 only; nothing written"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to time (default: all); the committed rows of the others are kept",
    )
    args = parser.parse_args()
    ratios, batches = ((1.0, 0.5), (1,)) if args.quick else (RATIOS, BATCHES)
    rows = []
    for name in args.models:
        rows += benchmark_model(name, MODELS[name], ratios, batches)
    if args.quick:
        return
    rows = sorted(
        rows + committed_rows(without=args.models), key=lambda r: list(MODELS).index(r["model"])
    )
    data = {"benchmark": "latency", "machine": machine(), "rows": rows}
    write_results("latency", data, markdown(rows))


def committed_rows(without):
    """The rows of `results/latency.json` for models not in `without`."""
    path = os.path.join(RESULTS, "latency.json")
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [r for r in json.load(file)["rows"] if r["model"] not in without]


if __name__ == "__main__":
    main()

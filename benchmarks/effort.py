"""DyVEDeep's effort knobs on the pretrained presets, without retraining.

For each model (the MNIST MLP and the CIFAR-10 presets that are trained),
the knobs are tuned on validation images (the last 10% of the training
split, never trained on) under an accuracy budget of half a point at 90%
confidence (the upper 90% bound of the drop, a paired bound over those
images, must be within half a point), once per knob alone and once with
all three, at compute ratio 1.0. Then on the test set: scalar operations
per input (mean, and the reduction against the unmodified network),
accuracy against the unmodified network, and the latency of one compiled
forward pass at batch 1 and 64 on this CPU, all in one run. Each row also
keeps its tuning (`tuning`): the tolerances chosen, every setting tried with
its validation accuracy and drop bound, and each layer's smallest
candidate error per knob.

Results go to `benchmarks/results/effort.{json,md}` and the README.

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/effort.py [--models mlp_mnist resnet20_cifar10] [--settings all] [--quick]

Offline, in a checkout: add ZOO_WEIGHTS_URL=saved_models to load the presets
from the repository's own saved_models/ instead of downloading them.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import RESULTS, machine, write_results  # noqa: E402

MODELS = ("mlp_mnist", "resnet20_cifar10", "mobilenet_cifar10", "vgg16_cifar10")
SETTINGS = {
    "spet": ("spet",),
    "sdss": ("sdss",),
    "sfma": ("sfma",),
    "all": ("sdss", "spet", "sfma"),
}
BUDGET = 0.005
CONFIDENCE = 0.9
VALIDATION_FRACTION = 0.1
PUBLISHED = (
    "2.47x to 5.15x fewer scalar operations, 1.94x to 2.23x faster on a Xeon server (DyVEDeep)"
)


def load_data(dataset, quick):
    x, y = zoo.datasets.load_arrays(dataset, "train")
    x_test, y_test = zoo.datasets.load_arrays(dataset, "test")
    calibration = 500 if quick else int(len(x) * VALIDATION_FRACTION)
    validation = (x[-calibration:].astype("float32"), y[-calibration:])
    test_size = 500 if quick else len(x_test)
    return validation, (x_test[:test_size].astype("float32"), y_test[:test_size])


def run_model(name, quick, settings, rows):
    preset = zoo.presets.get_preset(name)
    model = zoo.load(name, pretrained=True)
    validation, test = load_data(preset["dataset"], quick)
    for setting in settings:
        knobs = SETTINGS[setting]
        start = time.perf_counter()
        try:
            fast = zoo.effort.tune(
                model, validation, max_accuracy_drop=BUDGET, knobs=knobs, confidence=CONFIDENCE
            )
        except ValueError as error:  # no layer takes this knob (an MLP has no feature maps)
            rows[setting] = {"not_applicable": str(error)}
            continue
        seconds = time.perf_counter() - start
        result = zoo.effort.report(fast, test, batch_sizes=(1, 64), repeats=5 if quick else 30)
        rows[setting] = {
            "settings": zoo.effort.settings(fast),
            "calibration_images": len(validation[0]),
            "tuning_seconds": seconds,
            "tuning": fast.effort_tuning,
            **result,
        }
        print(
            f"  {setting}: {result['reduction']:.2f}x fewer operations, accuracy "
            f"{100 * result['accuracy']:.2f} vs {100 * result['baseline_accuracy']:.2f}, speedup "
            f"{result['latency'][1]['speedup']:.2f}x (batch 1), {result['latency'][64]['speedup']:.2f}x (batch 64)",
            flush=True,
        )
    return {"dataset": preset["dataset"], "settings": {s: rows[s] for s in SETTINGS if s in rows}}


def speedup(latency):
    """`1.20x`, with its interval when the run measured one."""
    interval = latency.get("speedup_interval")
    text = f"{latency['speedup']:.2f}x"
    return f"{text} ({interval[0]:.2f} to {interval[1]:.2f})" if interval else text


def markdown(results):
    lines = [
        "| model | knobs | scalar ops (M) without | with | reduction | accuracy without | with | "
        "speedup batch 1 | speedup batch 64 |",
        "| --- " * 9 + "|",
    ]
    for name, entry in results["models"].items():
        for setting, row in entry["settings"].items():
            if "not_applicable" in row:
                lines.append(f"| {name} | {setting} | not applicable | | | | | | |")
                continue
            latency = row["latency"]
            lines.append(
                f"| {name} | {setting} | {row['dense_operations'] / 1e6:.2f} | {row['operations'] / 1e6:.2f} | "
                f"**{row['reduction']:.2f}x** | {100 * row['baseline_accuracy']:.2f} | {100 * row['accuracy']:.2f} | "
                f"{speedup(latency['1'])} | {speedup(latency['64'])} |"
            )
    lines += [
        "",
        f"Budget: at most {100 * BUDGET:.1f} points of accuracy lost at {100 * CONFIDENCE:.0f}% confidence "
        "on the validation images (the last 10% of the training split, the tuning data); the accuracies "
        "above are on the test set. Scalar operations count multiplies, "
        "adds and the knobs' own comparisons in convolutions and dense layers, per input, as a scalar "
        "implementation would do them. Speedup: latency of the unmodified network over the tuned one, "
        "compiled, on this CPU, the two timed in alternation: the median of the per-turn ratios, with "
        f"its {100 * CONFIDENCE:.0f}% bootstrap interval where measured. Published anchor: {PUBLISHED}.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--settings",
        nargs="*",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="rows to (re)compute",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small calibration and test sets (smoke test)"
    )
    args = parser.parse_args()
    name = "effort_quick" if args.quick else "effort"
    path = os.path.join(RESULTS, f"{name}.json")
    results = {"models": {}}
    if os.path.exists(path):
        with open(path) as file:
            results = json.load(file)
    trained = {p["name"] for p in zoo.list_presets() if p["trained"]}
    for model in args.models:
        if model not in trained:
            print(f"{model}: not trained yet, skipped")
            continue
        print(f"{model}...", flush=True)
        rows = results["models"].get(model, {}).get("settings", {})
        result = run_model(model, args.quick, args.settings, rows)
        results["models"][model] = json.loads(json.dumps(result, default=_plain))
        results["models"] = {m: results["models"][m] for m in MODELS if m in results["models"]}
        results.update(
            {"budget": BUDGET, "confidence": CONFIDENCE, "quick": args.quick, "machine": machine()}
        )
        write_results(name, results, markdown(results), readme=not args.quick)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Not JSON serializable: {type(value)}")


if __name__ == "__main__":
    main()

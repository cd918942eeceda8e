"""Which recipe trains ResNet-20 best in a short schedule: one change at a time.

The CIFAR-10 presets trail static networks of the same size trained for
longer. Before retraining them, this study measures recipe changes on the
cheapest model that tells: ResNet-20 trained alone at ratio 1.0 (the
individually trained network of `benchmarks/cifar10.py`), for the same
epoch budget, in the same setup (first 45,000 training images, augmented
crops and flips, seed 0), one change against the baseline per run:

- `baseline`: the presets' recipe (SGD with Nesterov momentum 0.9,
  learning rate 0.1, one warm-up epoch, cosine decay to zero, decoupled
  weight decay 5e-3 on kernels, batch 128);
- label smoothing 0.1; weight decay 2.5e-3 and 1e-2; linear decay to zero;
  a one-cycle learning rate (warm-up over 30% of the budget, then linear to
  zero, peak 0.2); batch 256 at learning rate 0.2; an exponential moving
  average of the weights (momentum 0.999).

There is no run combining the changes that helped: none gained more than
0.13 points over the baseline (`results/recipe_study.md`), within seed
noise (not measured), so the combination would be the baseline.

Every run is evaluated twice on the 10,000 test images: as is, and with
test-time flips (the mean of the logits of each image and its mirror
image), which costs a second forward pass and no training.

Each run records its images per second and CPU seconds per epoch and the
load average (`benchmarks/training_clock.py`); run it alone, or pinned to
one core while other work uses the other (see `benchmarks/README.md`).
Runs resume from their checkpoints under `ZOO_RUNS_DIR` and each result is
written as soon as it is done, so the study spans sessions.

Results go to `benchmarks/results/recipe_study.{json,md}`.

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/recipe_study.py [--only baseline ...] [--epochs 30] [--quick]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from benchmarks import cifar10  # noqa: E402
from benchmarks.common import RESULTS, machine, write_results  # noqa: E402

BASELINE = {
    **cifar10.COMMON,
    "method": "idp",
    "weight_decay": 5e-3,
}
# Each variant: (what it changes, the keys it sets on the baseline).
VARIANTS = {
    "baseline": ("the presets' recipe", {}),
    "label_smoothing": ("label smoothing 0.1", {"label_smoothing": 0.1}),
    "ema": ("moving average of the weights, momentum 0.999", {"ema": 0.999}),
    "one_cycle": (
        "one-cycle: warm-up over 30% of the epochs to 0.2, then linear to zero",
        {"schedule": "linear", "learning_rate": 0.2, "warmup_epochs": "30%"},
    ),
    "decay_2.5e-3": ("weight decay 2.5e-3", {"weight_decay": 2.5e-3}),
    "decay_1e-2": ("weight decay 1e-2", {"weight_decay": 1e-2}),
    "linear": ("linear decay to zero", {"schedule": "linear"}),
    "batch_256": ("batch 256, learning rate 0.2", {"batch_size": 256, "learning_rate": 0.2}),
}
ARCHITECTURE = "resnet20"


def recipe_for(name, epochs):
    recipe = {**BASELINE, **VARIANTS[name][1], "epochs": epochs}
    if recipe["warmup_epochs"] == "30%":
        recipe["warmup_epochs"] = round(0.3 * epochs, 1)
    return recipe


def flipped_accuracy(model, test, batch_size=500):
    """Test accuracy (%) of the mean logits of each image and its mirror."""
    hits = 0
    for start in range(0, len(test[0]), batch_size):
        images = tf.constant(test[0][start : start + batch_size], "float32")
        logits = model(images, training=False) + model(tf.reverse(images, [2]), training=False)
        hits += int(np.sum(np.argmax(logits, -1) == test[1][start : start + batch_size]))
    return 100.0 * hits / len(test[0])


def run(name, epochs, data, quick):
    recipe = recipe_for(name, epochs)
    arguments = cifar10.arguments_for(ARCHITECTURE, "individual")
    arguments["operating_points"] = [1.0]
    model, training = cifar10.train(ARCHITECTURE, arguments, recipe, data)
    test = data[2]
    return {
        "change": VARIANTS[name][0],
        "accuracy": 100.0 * zoo.evaluate_ratios(model, test, [1.0], batch_size=500)[1.0],
        "accuracy_flipped": flipped_accuracy(model, test),
        **cifar10.timing(training),
        "recipe": recipe,
        "quick": quick,
    }


def stored():
    path = os.path.join(RESULTS, "recipe_study.json")
    if not os.path.exists(path):
        return {"runs": {}}
    with open(path) as file:
        return json.load(file)


def markdown(results):
    runs = results["runs"]
    base = runs.get("baseline", {}).get("accuracy")
    lines = [
        "| run | change | test accuracy (%) | with test-time flips | against baseline | images/s | CPU s/epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in runs.items():
        delta = "" if base is None else f"{row['accuracy'] - base:+.2f}"
        lines.append(
            f"| {name} | {row['change']} | {row['accuracy']:.2f} | {row['accuracy_flipped']:.2f} "
            f"| {delta} | {row.get('images_per_second', float('nan')):.0f} "
            f"| {row.get('cpu_seconds_per_epoch', float('nan')):.0f} |"
        )
    lines += [
        "",
        f"ResNet-20 trained alone at ratio 1.0, {results['epochs']} epochs, on 45,000 CIFAR-10 "
        "training images (JPEG copy), seed 0; accuracy on the 10,000 test images after batch norm "
        "is calibrated on the augmented pipeline. Images/s and CPU seconds: medians over the "
        "run's epochs (`epoch_images_per_second` and `load_average` in the JSON give each epoch).",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", nargs="+", choices=sorted(VARIANTS), help="runs to do (default: all)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default: 30)")
    parser.add_argument(
        "--quick", action="store_true", help="1 epoch on 2,000 images: a smoke test"
    )
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    data = cifar10.load_data(args.quick)
    results = {"runs": {}} if args.quick else stored()
    results.update(epochs=epochs, machine=machine())
    for name in args.only or list(VARIANTS):
        row = results["runs"].get(name)
        if row and row["recipe"] == recipe_for(name, epochs):
            continue
        results["runs"][name] = run(name, epochs, data, args.quick)
        print(name, results["runs"][name]["accuracy"], flush=True)
        suffix = "_quick" if args.quick else ""
        write_results(f"recipe_study{suffix}", results, markdown(results), readme=False)


if __name__ == "__main__":
    main()

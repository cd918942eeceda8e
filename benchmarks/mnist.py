"""MNIST reproduction: the IDP / TESLA table, side by side with successors.

MLP 784-100-100-10 on the real MNIST (60,000 training images: the first
54,000 train, the last 6,000 are the validation split that early stopping
and TESLA's rounds read; the 10,000 test images are read once at the end).
Every method trains under a stated budget (epochs, or TESLA's rounds capped
by epochs) with Adam (learning rate 1e-3, batch 128; one IDP row uses SGD,
to show how the optimizer changes what a fixed profile does), fixed seeds,
then its test accuracy is measured at the 19 ratios 0.10, 0.15, ..., 1.00.

Methods (see `METHODS`): original IDP (linear profile, full-width training),
IDP multi-profile, TESLA and R-TESLA with and without a trainable profile
(ATP), single-path sampling, the sandwich rule with in-place distillation,
and 19 individually trained networks (one per width).

Each run records its seconds and, from `TrainingClock`, its median images
per second and CPU seconds per epoch. Results go to
`benchmarks/results/mnist.{json,md,png}` and the README.
Each method's result is written as soon as it is done, so an interrupted
run resumes where it stopped (`--force` recomputes).

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/mnist.py [--quick] [--only NAME ...] [--seeds 1]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS,
    distinct_styles,
    machine,
    new_figure,
    save_figure,
    write_results,
)
from benchmarks.training_clock import TrainingClock, throughput  # noqa: E402
from zoo.recipes import train_recipe  # noqa: E402

RATIOS = [round(0.10 + 0.05 * i, 2) for i in range(19)]
TASKS = [round(1.0 - 0.1 * i, 1) for i in range(10)]  # TESLA's 100%, 90%, ..., 10%
PUBLISHED = {
    "individual": 96.16,
    "r_tesla_atp": 95.47,
    "r_tesla": 95.15,
    "tesla": 94.67,
    "tesla_atp": 94.03,
    "idp": 88.37,
    "idp_sgd": 88.37,
    "idp_one_layer": 88.37,
    "idp_one_layer_harmonic": 88.37,
    "idp_one_layer_short": 88.37,
    "idp_one_layer_harmonic_short": 88.37,
}
BATCH = 128
LEARNING_RATE = 1e-3


def build(seed, **arguments):
    keras.utils.set_random_seed(seed)
    return zoo.build("mlp", num_classes=10, **arguments)


def train(arguments, recipe, data, seed, records=None):
    """One model by `zoo.recipes`: the same code as `python -m zoo train --preset`.

    With `records`, its training's clock (`TrainingClock.record`) is appended to it.
    """
    train_data, validation = data
    clock = TrainingClock(images_per_epoch=len(train_data[0]))
    model = build(seed, **arguments)
    train_recipe(model, recipe, train_data, validation, seed=seed, verbose=0, callbacks=[clock])
    if records is not None:
        records.append(clock.record)
    return model


def evaluate_single(model, test):
    accuracies = zoo.evaluate_ratios(model, test, RATIOS, batch_size=1000)
    return {f"{r:.2f}": 100.0 * accuracies[r] for r in RATIOS}


def run_individual(data, recipe, seed, records):
    """19 networks, network `r` with `ceil(100 r)` hidden units, trained at full width."""
    _, _, test = data
    result = {}
    for ratio in RATIOS:
        units = zoo.ratio.channel_width(ratio, 100)
        model = train({"hidden_units": (units, units)}, recipe, data[:2], seed, records)
        result[f"{ratio:.2f}"] = (
            100.0 * zoo.evaluate_ratios(model, test, [1.0], batch_size=1000)[1.0]
        )
    return result


COMMON = {"batch_size": BATCH, "learning_rate": LEARNING_RATE}
TESLA = {**COMMON, "ratios": TASKS, "epochs": 60, "round": 200, "patience": 3}
LINEAR = {"profile": "linear"}
TRAINABLE_LINEAR = {"profile": {"name": "linear", "trainable": True}}
# Each method: (description, model arguments, recipe of `zoo.recipes`).
METHODS = {
    "idp": (
        "Original IDP (linear profile, full-width training)",
        LINEAR,
        {**COMMON, "method": "idp", "epochs": 20},
    ),
    "idp_one_layer": (
        "Original IDP as its authors' code cuts it (linear; only layer 2's inputs)",
        {**LINEAR, "cut_hidden": (True, False)},
        {**COMMON, "method": "idp", "epochs": 20},
    ),
    "idp_one_layer_harmonic": (
        "Original IDP as its authors' code cuts it, harmonic profile",
        {"profile": "harmonic", "cut_hidden": (True, False)},
        {**COMMON, "method": "idp", "epochs": 20},
    ),
    "idp_one_layer_short": (
        "Original IDP cut as its authors' code, their budget (batch 28, 2 epochs: about 4,000 steps)",
        {**LINEAR, "cut_hidden": (True, False)},
        {**COMMON, "method": "idp", "epochs": 2, "batch_size": 28},
    ),
    "idp_one_layer_harmonic_short": (
        "Original IDP cut as its authors' code, harmonic profile, their budget",
        {"profile": "harmonic", "cut_hidden": (True, False)},
        {**COMMON, "method": "idp", "epochs": 2, "batch_size": 28},
    ),
    "idp_sgd": (
        "Original IDP, SGD (Nesterov momentum 0.9, learning rate 0.01)",
        LINEAR,
        {**COMMON, "method": "idp", "epochs": 20, "optimizer": "sgd", "learning_rate": 0.01},
    ),
    "idp_multi_profile": (
        "IDP multi-profile (linear; profiles (0, 0.3] and (0.3, 1], stage by stage)",
        {**LINEAR, "profile_boundaries": (0.3,)},
        {**COMMON, "method": "idp_multi_profile", "epochs": 20, "boundaries": [0.3]},
    ),
    "tesla": (
        "TESLA (linear profile, alpha 0.5, descending tasks)",
        LINEAR,
        {**TESLA, "method": "tesla"},
    ),
    "tesla_atp": (
        "TESLA + trainable profile (ATP)",
        TRAINABLE_LINEAR,
        {**TESLA, "method": "tesla", "atp": True},
    ),
    "r_tesla": ("R-TESLA (uniformly random tasks)", LINEAR, {**TESLA, "method": "r_tesla"}),
    "r_tesla_atp": (
        "R-TESLA + trainable profile (ATP)",
        TRAINABLE_LINEAR,
        {**TESLA, "method": "r_tesla", "atp": True},
    ),
    "single_path": (
        "Single-path sampling (one of the 19 ratios per batch)",
        {},
        {**COMMON, "method": "single_path", "epochs": 20, "ratios": RATIOS},
    ),
    "sandwich": (
        "Sandwich rule (4 ratios per step from [0.1, 1]) + in-place distillation",
        {},
        {**COMMON, "method": "sandwich", "epochs": 20, "ratio_range": [0.1, 1.0], "num_ratios": 4},
    ),
    "sandwich_40": (
        "Sandwich rule, as above, 40 epochs",
        {},
        {**COMMON, "method": "sandwich", "epochs": 40, "ratio_range": [0.1, 1.0], "num_ratios": 4},
    ),
    "sandwich_grid": (
        "Sandwich rule, random ratios from the 19 evaluated ones, 40 epochs",
        {},
        {**COMMON, "method": "sandwich", "epochs": 40, "ratios": RATIOS, "num_ratios": 4},
    ),
    "sandwich_grid_6": (
        "Sandwich rule, 6 ratios per step from the 19 evaluated ones, 30 epochs",
        {},
        {**COMMON, "method": "sandwich", "epochs": 30, "ratios": RATIOS, "num_ratios": 6},
    ),
    "individual": (
        "19 individually trained networks (one per width)",
        {},
        {**COMMON, "method": "idp", "epochs": 20},
    ),
}
SINGLE_MODELS = [name for name in METHODS if name != "individual"]
BUDGET_KEYS = ("epochs", "round", "patience")


def load_data(quick):
    x, y = zoo.datasets.load_arrays("mnist", "train")
    x_test, y_test = zoo.datasets.load_arrays("mnist", "test")
    if quick:
        x, y, x_test, y_test = x[:6000], y[:6000], x_test[:1000], y_test[:1000]
    return (*zoo.datasets.train_validation_split(x, y), (x_test, y_test))


def shrink(recipe, quick):
    if not quick:
        return dict(recipe)
    small = dict(recipe)
    small["epochs"] = max(2, recipe["epochs"] // 10)
    if "round" in small:
        small["round"], small["patience"] = 20, 1
    return small


def run_method(name, data, seeds, quick):
    description, arguments, recipe = METHODS[name]
    recipe = shrink(recipe, quick)
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        records = []
        if name == "individual":
            accuracy = run_individual(data, recipe, seed, records)
        else:
            model = train(arguments, recipe, data[:2], seed, records)
            accuracy = evaluate_single(model, data[2])
        seconds = time.perf_counter() - start
        runs.append({"seed": seed, "accuracy": accuracy, "seconds": seconds, **throughput(records)})
    mean = {r: float(np.mean([run["accuracy"][r] for run in runs])) for r in runs[0]["accuracy"]}
    return {
        "description": description,
        "budget": {k: recipe[k] for k in BUDGET_KEYS if k in recipe},
        "runs": runs,
        "accuracy": mean,
        "average": float(np.mean(list(mean.values()))),
        "published_average": PUBLISHED.get(name),
    }


def markdown(results):
    names = [n for n in METHODS if n in results["methods"]]
    lines = [
        "| method | average (19 ratios) | published | 0.10 | 0.25 | 0.50 | 0.75 | 1.00 | budget | seeds "
        "| train time | images/s | CPU s/epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        method = results["methods"][name]
        accuracy = method["accuracy"]
        published = method["published_average"]
        budget = ", ".join(f"{k} {v}" for k, v in method["budget"].items())
        seconds = np.mean([run["seconds"] for run in method["runs"]])
        clocks = [
            (mean_of(method["runs"], key), style)
            for key, style in (("images_per_second", ",.0f"), ("cpu_seconds_per_epoch", ".1f"))
        ]
        lines.append(
            f"| {method['description']} | **{method['average']:.2f}** | "
            f"{'' if published is None else f'{published:.2f}'} | "
            + " | ".join(f"{accuracy[r]:.2f}" for r in ("0.10", "0.25", "0.50", "0.75", "1.00"))
            + f" | {budget} | {len(method['runs'])} | {seconds:.0f} s | "
            + " | ".join("" if value is None else format(value, style) for value, style in clocks)
            + " |"
        )
    lines.append("")
    lines.append(
        "Test accuracy (%) of the MLP 784-100-100-10 on MNIST; the average is over the 19 ratios "
        "0.10, 0.15, ..., 1.00 (all 19 per method are in `benchmarks/results/mnist.json`). "
        "Published: TESLA's README. Budgets: `epochs` caps training; TESLA's rounds are `round` "
        "batches of 128, a task ends after `patience` rounds without gain. The 19 individual networks "
        "train 20 epochs each (380 in all). Train time is per seed and includes evaluation; "
        "images/s and CPU s/epoch are the medians over the epochs trained, averaged over seeds."
    )
    check = target_check(results)
    if check:
        lines += ["", check]
    return "\n".join(lines) + "\n"


def mean_of(runs, key):
    """`key`'s mean over the runs, or None if a run lacks it (timed before clocks)."""
    values = [run.get(key) for run in runs]
    return None if None in values else float(np.mean(values))


def target_check(results):
    """The target: the best single model's average at least the individual networks'."""
    methods = results["methods"]
    singles = [n for n in SINGLE_MODELS if n in methods]
    if "individual" not in methods or not singles:
        return ""
    best = max(singles, key=lambda n: methods[n]["average"])
    gap = methods[best]["average"] - methods["individual"]["average"]
    verdict = "met" if gap >= 0 else "missed"
    return (
        f"Target (best single model's average at least the individual networks'): **{verdict}**, "
        f"{methods[best]['description']} {methods[best]['average']:.2f} against "
        f"{methods['individual']['average']:.2f} ({gap:+.2f})."
    )


def plot(results, path):
    figure, axis = new_figure(figsize=(8, 5))
    methods = results["methods"]
    for (name, method), (colour, marker) in zip(methods.items(), distinct_styles(len(methods))):
        ratios = [float(r) for r in method["accuracy"]]
        axis.plot(
            ratios,
            list(method["accuracy"].values()),
            color=colour,
            marker=marker,
            markersize=3,
            label=f"{name} ({method['average']:.2f})",
        )
    axis.set_xlabel("compute ratio")
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title("MNIST MLP 784-100-100-10: accuracy against compute ratio")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    save_figure(figure, path)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the data and budgets (smoke test)"
    )
    parser.add_argument("--only", nargs="*", choices=list(METHODS), help="methods to run")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per method")
    parser.add_argument(
        "--force", action="store_true", help="recompute the methods run even if in the results"
    )
    parser.add_argument(
        "--name", help="results file name (default mnist, or mnist_quick with --quick)"
    )
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="results files (names) whose methods to merge in, then report",
    )
    args = parser.parse_args()
    args.name = args.name or ("mnist_quick" if args.quick else "mnist")

    path = os.path.join(RESULTS, f"{args.name}.json")
    results = {"methods": {}}
    if os.path.exists(path):
        with open(path) as file:
            results = json.load(file)
    for other in args.merge:
        with open(os.path.join(RESULTS, f"{other}.json")) as file:
            results["methods"].update(json.load(file)["methods"])
    if args.merge:
        results["methods"] = {n: results["methods"][n] for n in METHODS if n in results["methods"]}
        write_results(args.name, results, markdown(results), readme=not args.quick)
        plot(results, os.path.join(RESULTS, f"{args.name}.png"))
        return
    data = load_data(args.quick)
    for name in args.only or list(METHODS):
        if name in results["methods"] and not args.force:
            continue
        print(f"{name}...", flush=True)
        results["methods"][name] = run_method(name, data, list(range(args.seeds)), args.quick)
        print(f"  average {results['methods'][name]['average']:.2f}", flush=True)
        results.update({"ratios": RATIOS, "quick": args.quick, "machine": machine()})
        ordered = {n: results["methods"][n] for n in METHODS if n in results["methods"]}
        results["methods"] = ordered
        write_results(args.name, results, markdown(results), readme=not args.quick)
    plot(results, os.path.join(RESULTS, f"{args.name}.png"))


if __name__ == "__main__":
    main()

"""CIFAR-10, side by side: original IDP, TESLA, the sandwich rule, individual networks.

Every method trains the same architecture in the same setup, that of the
CIFAR-10 presets: the first 45,000 training images (the last 5,000 are the
validation split TESLA's rounds read), random 4-pixel-shift crops and
horizontal flips, SGD with Nesterov momentum 0.9, learning rate 0.1 with
one warm-up epoch and cosine decay, weight decay on kernels, batch 128,
the architecture's epoch budget and weight decay (`ARCHITECTURES`), seed 0.
The decay is Keras's decoupled one: the 5e-3 of every architecture is the
papers' coupled 5e-4 under this momentum (see `zoo.recipes`); `mobilenet`'s
rows were trained with a tenth of that, 5e-4, and are marked so until it
is trained again. Batch norm
is calibrated at each operating point on training images, then test
accuracy (10,000 images) is measured at the ratios 0.25, 0.5, 0.75 and 1.0,
with the multiply-adds of each.

Methods (see `METHODS`):
- `idp`: original IDP, linear profile, full-width training.
- `tesla`: TESLA, linear profile, tasks 1.0, 0.75, 0.5, 0.25 in descending
  order, alpha 0.5, rounds of half an epoch, patience 2, each task capped
  at its share of the epoch budget (`max_rounds_per_task`) so that all
  tasks get trained: under the cosine schedule accuracy keeps creeping up,
  and patience alone kept the first task running for the whole budget.
- `sandwich`: the sandwich rule (widest, narrowest and one random ratio
  from [0.25, 1] each step) with in-place distillation, the best sub-net
  sampling method of the MNIST benchmark, and the recipe of the
  `mobilenet` and `vgg16` presets. Whenever the preset `<arch>_cifar10`
  was trained with a method's very recipe, its published weights are
  evaluated instead of training it again.
- `sandwich_points`: the sandwich rule training every operating point at
  every step (the ratios above, drawn without replacement), as slimmable
  networks train their fixed widths; on mobilenet 1.3 times the training
  time of `sandwich_middle_points` (5,911 s against 4,459 s, the rows'
  `seconds` in results/cifar10.json).
- `sandwich_middle_points`: the sandwich rule with its one random middle
  ratio drawn from the inner operating points (0.5 and 0.75 of the four
  above) instead of the continuous range, so each middle width, where the
  gap to the individual networks lies, is trained every other step; the
  cost of `sandwich`. The `resnet20_cifar10` preset was trained so.
- `individual`: one network per ratio, built at that width and trained at
  full width.

Results go to `benchmarks/results/cifar10.{json,md,png}` and the README.
Each (architecture, method) result is written as soon as it is done, so an
interrupted run resumes where it stopped (`--force` recomputes), the
individual networks one by one (each network's result goes to the results
file under `individual_networks`, so a row can span sessions and
machines), and the training itself resumes from a checkpoint under
`KERAS_HOME/zoo/runs`, or under `ZOO_RUNS_DIR` when it is set: a training
longer than a session on a fresh machine sets it to `benchmarks/runs` and
commits the checkpoint there (see `benchmarks/runs/README.md`). A stored
result of another recipe than its method's current one (`COMMON` changed,
say) or of another batch-norm calibration is stale: marked in the table,
left out of the gap target, and trained again by the next run.

Usage:
    ZOO_DATA_DIR=../shared/data [ZOO_RUNS_DIR=benchmarks/runs] python benchmarks/cifar10.py [--archs resnet20 mobilenet] [--only idp ...] [--quick]

Offline, in a checkout: add ZOO_WEIGHTS_URL=saved_models to load the presets
from the repository's own saved_models/ instead of downloading them.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS,
    cached_training,
    machine,
    new_figure,
    save_figure,
    write_results,
)
from benchmarks.training_clock import throughput  # noqa: E402
from zoo import paths, presets  # noqa: E402
from zoo.recipes import calibrate_after_training  # noqa: E402

RATIOS = [0.25, 0.5, 0.75, 1.0]
# Epochs per model: what this 2-core CPU affords (each row's `seconds`, and
# for runs timed epoch by epoch its `epoch_seconds`, in results/cifar10.json).
# Weight decay: see the module docstring.
ARCHITECTURES = {
    # 150 epochs: the budget at which a static ResNet-20 nears its published
    # accuracy (He et al. train 164); rows of earlier budgets keep theirs
    # (the table's epochs column) and are marked stale.
    "resnet20": {"ratios": RATIOS, "arguments": {}, "epochs": 150, "weight_decay": 5e-3},
    # 40 epochs: where the network alone at 1.0 passes 85% (`epoch_budget.py`).
    "mobilenet": {"ratios": RATIOS, "arguments": {}, "epochs": 40, "weight_decay": 5e-3},
    # Half width keeps the weights under 20 MB (3.7M parameters). 64 epochs:
    # what `epoch_budget.py` estimates ratio 0.2 needs for 80%. Decay 5e-3:
    # the papers' coupled 5e-4 in Keras's decoupled form, as for resnet20.
    "vgg16": {
        "ratios": [0.2] + RATIOS,
        "arguments": {"width": 0.5},
        "epochs": 64,
        "weight_decay": 5e-3,
    },
}
COMMON = {
    "batch_size": 128,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "schedule": "cosine",
    "warmup_epochs": 1,
    "augment": True,
}
LINEAR = {"profile": "linear"}
ROUND_STEPS = 176  # TESLA's rounds: half an epoch of 45,000 images in batches of 128
ROUNDS_PER_EPOCH = 2
# Each method: (description, model arguments, recipe of `zoo.recipes`).
METHODS = {
    "idp": (
        "Original IDP (linear profile, full-width training)",
        LINEAR,
        {**COMMON, "method": "idp"},
    ),
    "tesla": (
        "TESLA (linear profile, descending tasks, alpha 0.5)",
        LINEAR,
        {**COMMON, "method": "tesla", "round": ROUND_STEPS, "patience": 2},
    ),
    "sandwich": (
        "Sandwich rule (3 ratios per step) + in-place distillation",
        {},
        {**COMMON, "method": "sandwich", "num_ratios": 3},
    ),
    "sandwich_points": (
        "Sandwich rule (every operating point each step) + in-place distillation",
        {},
        {**COMMON, "method": "sandwich", "replace": False},
    ),
    "sandwich_middle_points": (
        "Sandwich rule (3 ratios per step, middle one an operating point) + in-place distillation",
        {},
        {**COMMON, "method": "sandwich", "num_ratios": 3, "replace": False},
    ),
    "individual": (
        "Individually trained networks (one per ratio)",
        {},
        {**COMMON, "method": "idp"},
    ),
}
# How batch norm was calibrated after training; results of another
# calibration are stale and recomputed. Before it, calibration used the clean
# training images, which cost the presets as first published 1.0 to 7.2
# points (`accuracy` in zoo/presets.json before and after commit bb6e643).
CALIBRATION = "augmented training pipeline"
STALE_CALIBRATION = "†"
STALE_RECIPE = "‡"
# What a single model must reach, per architecture and ratio: the accuracy of
# the static networks a user would otherwise pick (issue 45's goals).
TARGETS = {
    "resnet20": {"1.00": 90.0, "0.25": 80.0},
    "vgg16": {"1.00": 88.0, "0.20": 80.0},
    "mobilenet": {"1.00": 85.0},
}
# The largest gap to the individual networks at any ratio, in points.
GAP_TO_INDIVIDUAL = {"resnet20": 1.0, "mobilenet": 1.0}


def staleness(row, recipe):
    """The marks of what makes `row` stale: another calibration of batch norm
    (`STALE_CALIBRATION`), another recipe than `recipe` (`STALE_RECIPE`)."""
    marks = STALE_CALIBRATION if row.get("calibration") != CALIBRATION else ""
    return marks + (STALE_RECIPE if row.get("recipe") != recipe else "")


def recipe_for(architecture, name, quick):
    _, _, recipe = METHODS[name]
    budget = ARCHITECTURES[architecture]
    recipe = {**recipe, "epochs": budget["epochs"], "weight_decay": budget["weight_decay"]}
    ratios = budget["ratios"]
    if name == "tesla":
        recipe["ratios"] = sorted(ratios, reverse=True)
        rounds = recipe["epochs"] * ROUNDS_PER_EPOCH
        recipe["max_rounds_per_task"] = rounds // len(ratios)
    if name == "sandwich":
        recipe["ratio_range"] = [min(ratios), 1.0]
    if name == "sandwich_points":
        recipe["ratios"], recipe["num_ratios"] = sorted(ratios, reverse=True), len(ratios)
    if name == "sandwich_middle_points":
        recipe["ratios"] = sorted(ratios, reverse=True)
    if quick:
        recipe["epochs"] = 1
        if "round" in recipe:
            recipe["round"], recipe["patience"], recipe["max_rounds_per_task"] = 5, 1, 1
    return recipe


def arguments_for(architecture, name, width=1.0):
    base = ARCHITECTURES[architecture]
    arguments = {
        "num_classes": 10,
        "operating_points": base["ratios"],
        **base["arguments"],
        **METHODS[name][1],
    }
    if width != 1.0:
        arguments["width"] = arguments.get("width", 1.0) * width
        arguments["operating_points"] = [1.0]
    return arguments


def checkpoint_dir(architecture, arguments, recipe, seed):
    return paths.run_directory("cifar10-bench", [architecture, arguments, recipe, seed])


def train(architecture, arguments, recipe, data, seed=0):
    """Trains a model once, then calibrates its batch norm; returns it and
    its training record (seconds, epochs, each epoch's seconds:
    `benchmarks.training_clock.TrainingClock`).

    The trained weights (and the time) are kept beside the checkpoint, so
    that a later run redoes calibration and evaluation without training.
    """
    train_data, validation, _ = data
    model, training = cached_training(
        checkpoint_dir(architecture, arguments, recipe, seed),
        lambda: zoo.build(architecture, **arguments),
        recipe,
        train_data,
        validation,
        seed,
    )
    calibrate_after_training(model, train_data, recipe, seed)
    return model, training


def timing(training):
    """A result's training time: seconds in all, and, where they were timed,
    the epochs trained (fewer than the recipe's when early stopping ended
    the run), each timed epoch's wall-clock and CPU seconds, images per
    second, load average and share of the cores other processes used, and
    the medians of images per second and CPU
    seconds per epoch (a run begun before epochs were timed has its later
    epochs' only)."""
    if training is None:
        return {"seconds": None}
    result = {"seconds": training["seconds"]}
    if training.get("epochs"):
        result["epochs_trained"] = training["epochs"]
    for key in ("epoch_seconds", "epoch_cpu_seconds"):
        if training.get(key):
            result[key] = training[key]
    result.update(throughput([training]))
    for field in ("images_per_second", "load_average", "others_cpu_share"):
        if training.get(field):
            result[f"epoch_{field}"] = training[field]
    return result


def published_preset(architecture, arguments, recipe):
    """The trained preset `<architecture>_cifar10`, if this is its recipe."""
    name = f"{architecture}_cifar10"
    try:
        preset = presets.get_preset(name)
    except ValueError:
        return None
    if not preset.get("sha256") or preset["recipe"] != recipe or preset["arguments"] != arguments:
        return None
    return name


def run_single_model(architecture, name, data, quick):
    recipe = recipe_for(architecture, name, quick)
    arguments = arguments_for(architecture, name)
    ratios = ARCHITECTURES[architecture]["ratios"]
    source = None if quick else published_preset(architecture, arguments, recipe)
    if source:
        model, training = zoo.load(source, pretrained=True), None
    else:
        model, training = train(architecture, arguments, recipe, data)
    accuracy = zoo.evaluate_ratios(model, data[2], ratios, batch_size=500)
    return {
        "accuracy": {f"{r:.2f}": 100.0 * accuracy[r] for r in ratios},
        "mult_adds": {f"{r:.2f}": zoo.cost(model, r)["flops"] for r in ratios},
        **timing(training),
        "source": f"preset {source}" if source else "trained by this script",
        "calibration": CALIBRATION,
        "recipe": recipe,
    }


def run_individual(architecture, data, quick, force=False):
    recipe = recipe_for(architecture, "individual", quick)
    result = {
        "accuracy": {},
        "mult_adds": {},
        "seconds": 0.0,
        "source": "trained by this script",
        "calibration": CALIBRATION,
        "recipe": recipe,
    }
    for ratio in ARCHITECTURES[architecture]["ratios"]:
        key = f"{ratio:.2f}"
        network = individual_network(architecture, ratio, recipe, data, quick, force)
        result["accuracy"][key] = network["accuracy"]
        result["mult_adds"][key] = network["mult_adds"]
        result["seconds"] += network["seconds"]
        if network.get("images_per_second"):
            result.setdefault("networks_images_per_second", {})[key] = network["images_per_second"]
    return result


def individual_network(architecture, ratio, recipe, data, quick, force):
    """One individually trained network's result. Each is written to the
    results file as soon as it is done, so that a row spanning several
    sessions (or machines) resumes after the networks already trained."""
    arguments = arguments_for(architecture, "individual", ratio)
    key = f"{ratio:.2f}"
    entry = stored_results("cifar10")["architectures"].get(architecture, {})
    network = entry.get("individual_networks", {}).get(key)
    if network and not staleness(network, recipe) and not (quick or force):
        return network
    model, training = train(architecture, arguments, recipe, data)
    network = {
        "accuracy": 100.0 * zoo.evaluate_ratios(model, data[2], [1.0], batch_size=500)[1.0],
        "mult_adds": zoo.cost(model, 1.0)["flops"],
        **timing(training),
        "calibration": CALIBRATION,
        "recipe": recipe,
    }
    if not quick:
        store_network(architecture, key, network)
    return network


def load_data(quick):
    x, y = zoo.datasets.load_arrays("cifar10", "train")
    test = zoo.datasets.load_arrays("cifar10", "test")
    if quick:
        x, y, test = x[:2000], y[:2000], (test[0][:500], test[1][:500])
    return (*zoo.datasets.train_validation_split(x, y), test)


def target_checks(architecture, methods, quick=False):
    """Each target that applies to `architecture`: (text, met), met `None`
    while the rows it compares are not comparable yet."""
    singles = {n: m for n, m in methods.items() if n != "individual"}
    if not singles:
        return []
    checks = []
    for ratio, target in TARGETS.get(architecture, {}).items():
        value = max(m["accuracy"][ratio] for m in singles.values() if ratio in m["accuracy"])
        checks.append(
            (f"{architecture} at ratio {ratio} >= {target:.0f}%: {value:.2f}", value >= target)
        )
    best = max(singles, key=lambda n: np.mean(list(singles[n]["accuracy"].values())))
    if "individual" in methods:
        pair = ("individual", best)
        stale = {m for n in pair for m in staleness(methods[n], recipe_for(architecture, n, quick))}
        limit = GAP_TO_INDIVIDUAL.get(architecture, 1.5)
        checks.append(
            gap_check(methods["individual"], best, singles[best], "".join(sorted(stale)), limit)
        )
    return checks


def gap_check(individual, best, single, stale, limit):
    """The gap target; `stale` holds the staleness marks of either row."""
    text = f"best single model ({best}) within {limit} points of the individual networks at every ratio"
    if stale:
        return f"{text}: not comparable until both are in the current setup ({stale})", None
    gaps = {r: individual["accuracy"][r] - single["accuracy"][r] for r in single["accuracy"]}
    worst = max(gaps, key=gaps.get)
    return f"{text}: largest gap {gaps[worst]:.2f} at {worst}", gaps[worst] <= limit


FOOTNOTES = {
    STALE_CALIBRATION: "Batch norm calibrated on the clean training images, not on the augmented "
    "training pipeline: recalibrating the presets as first published that way gained them "
    "1.0 to 7.2 points (`zoo/presets.json` before and after commit `bb6e643`), "
    "so these rows understate their method until they are trained again.",
    STALE_RECIPE: "Trained with another recipe than the method's current one (the row's "
    "`recipe` in `cifar10.json` gives it): not in the same setup as the other rows until "
    "it is trained again, which the next run of the script does.",
}


def markdown(results):
    lines, marks = [], set()
    quick = results.get("quick", False)
    for architecture, entry in results["architectures"].items():
        if entry["methods"]:
            table, used = architecture_table(architecture, entry["methods"], quick)
            lines += table
            marks.update(used)
    lines.append(
        "Test accuracy (%) on the 10,000 CIFAR-10 test images, each model trained on "
        "45,000 images (SGD, cosine schedule, augmentation; see `benchmarks/cifar10.py`), one seed, "
        "on a 2-core CPU. The multiply-adds are those of the dynamic model at each ratio; an "
        "individual network of the same width costs the same."
    )
    lines += [f"\n{mark} {FOOTNOTES[mark]}" for mark in FOOTNOTES if mark in marks]
    return "\n".join(lines) + "\n"


def architecture_table(architecture, methods, quick):
    """The Markdown lines of one architecture's table and targets, and the
    staleness marks they use."""
    ratios = [f"{r:.2f}" for r in ARCHITECTURES[architecture]["ratios"]]
    lines, marks = [f"**{architecture}**", ""], set()
    lines.append(
        "| method | " + " | ".join(ratios) + " | epochs | train time | images/s | source |"
    )
    lines.append("| --- " * (len(ratios) + 5) + "|")
    for name in (n for n in METHODS if n in methods):
        method, seconds = methods[name], methods[name]["seconds"]
        stale = staleness(method, recipe_for(architecture, name, quick))
        marks.update(stale)
        lines.append(
            f"| {METHODS[name][0]}{' ' + stale if stale else ''} | "
            + " | ".join(f"{method['accuracy'][r]:.2f}" for r in ratios)
            + f" | {method['recipe']['epochs']}"
            + f" | {'' if seconds is None else f'{seconds / 60:.0f} min'}"
            + f" | {images_per_second(method)} | {method['source']} |"
        )
    any_method = next(iter(methods.values()))
    lines.append(
        "| multiply-adds (millions) | "
        + " | ".join(f"{any_method['mult_adds'][r] / 1e6:.1f}" for r in ratios)
        + " | | | | |"
    )
    budget = ARCHITECTURES[architecture]
    decay = f"{budget['weight_decay']:.0e}".replace("e-0", "e-")
    lines.append(f"\nBudget: {budget['epochs']} epochs per model, weight decay {decay}.\n")
    for text, met in target_checks(architecture, methods, quick):
        status = "pending" if met is None else "met" if met else "**missed**"
        lines.append(f"- {status}: {text}")
    return lines + [""], marks


def images_per_second(row):
    """A row's median images per second, or its individual networks' range."""
    if row.get("images_per_second"):
        return f"{row['images_per_second']:.0f}"
    rates = list(row.get("networks_images_per_second", {}).values())
    return f"{min(rates):.0f}-{max(rates):.0f}" if rates else ""


def plot(results, path):
    architectures = list(results["architectures"])
    figure, axes = new_figure(
        1, len(architectures), figsize=(6 * len(architectures), 4.5), squeeze=False
    )
    for axis, architecture in zip(axes[0], architectures):
        for name, method in results["architectures"][architecture]["methods"].items():
            flops = [v / 1e6 for v in method["mult_adds"].values()]
            axis.plot(flops, list(method["accuracy"].values()), marker="o", label=name)
        axis.set_xscale("log")
        axis.minorticks_off()
        methods = results["architectures"][architecture]["methods"].values()
        ticks = sorted({v / 1e6 for method in methods for v in method["mult_adds"].values()})
        axis.set_xticks(ticks, [f"{v:.1f}" for v in ticks])
        axis.set_xlabel("multiply-adds (millions)")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(f"CIFAR-10 {architecture}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    save_figure(figure, path)


def stored_results(name):
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return {"architectures": {}}
    with open(path) as file:
        return json.load(file)


def store_row(name, architecture, method, row, quick):
    """Writes one result, re-reading the file first: rows that another run
    wrote meanwhile (training takes hours) are kept."""
    results = stored_results(name)
    entry = results["architectures"].setdefault(architecture, {"methods": {}})
    entry["methods"][method] = row
    entry["methods"] = {n: entry["methods"][n] for n in METHODS if n in entry["methods"]}
    results.update({"epochs": current_epochs(results), "quick": quick, "machine": machine()})
    write_results(name, results, markdown(results), readme=not quick)


def store_network(architecture, key, network):
    """Writes one individually trained network's result (re-reading first)."""
    results = stored_results("cifar10")
    entry = results["architectures"].setdefault(architecture, {"methods": {}})
    entry.setdefault("individual_networks", {})[key] = network
    results["epochs"] = current_epochs(results)
    write_results("cifar10", results, markdown(results), readme=True)


def current_epochs(results):
    """Each stored architecture's epoch budget as `ARCHITECTURES` sets it now."""
    return {a: ARCHITECTURES[a]["epochs"] for a in results["architectures"]}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--archs", nargs="*", choices=list(ARCHITECTURES), default=["resnet20", "mobilenet"]
    )
    parser.add_argument("--only", nargs="*", choices=list(METHODS), help="methods to run")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 images and one epoch (smoke test)"
    )
    parser.add_argument("--force", action="store_true", help="recompute results already present")
    parser.add_argument("--report", action="store_true", help="only rewrite the report and plot")
    args = parser.parse_args()

    name = "cifar10_quick" if args.quick else "cifar10"
    data = None if args.report else load_data(args.quick)
    for architecture in [] if args.report else args.archs:
        for method in args.only or list(METHODS):
            done = stored_results(name)["architectures"].get(architecture, {"methods": {}})
            recipe = recipe_for(architecture, method, args.quick)
            if not staleness(done["methods"].get(method, {}), recipe) and not args.force:
                continue
            print(f"{architecture} / {method}...", flush=True)
            if method == "individual":
                row = run_individual(architecture, data, args.quick, args.force)
            else:
                row = run_single_model(architecture, method, data, args.quick)
            print(f"  {row['accuracy']}", flush=True)
            store_row(name, architecture, method, row, args.quick)
    results = stored_results(name)
    write_results(name, results, markdown(results), readme=not args.quick)
    plot(results, os.path.join(RESULTS, f"{name}.png"))


if __name__ == "__main__":
    main()

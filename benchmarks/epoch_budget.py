"""How many epochs a missed CIFAR-10 target needs: one network per epoch budget.

`benchmarks/cifar10.py` trains each model for the epochs this CPU affords,
and two targets miss at those budgets. How accuracy at a width grows with
epochs is measured most cheaply on the network trained alone at that width,
which the single dynamic model tracks (the gap target: within 1.0 point for
`resnet20` and `mobilenet`, 1.5 for `vgg16`; with in-place distillation it
can be ahead at narrow ratios). This script
trains the individually trained network of `benchmarks/cifar10.py`, in its
very setup (data, augmentation, SGD, cosine schedule, weight decay, seed),
at one ratio for several epoch budgets, each a run of its own since the
cosine schedule depends on the budget, and reports test accuracy against
epochs beside the target and the best single model of the CIFAR-10 results
(its accuracy at the ratio and the epochs it trained for).

Checkpoints are those of `benchmarks/cifar10.py` (same directory, same key),
so an interrupted run resumes, and a budget the benchmark's own `individual`
network was trained for in this very recipe is taken from its stored results
rather than trained again.

Results go to `benchmarks/results/epoch_budget.{json,md}` and the README.

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/epoch_budget.py [--target vgg16_0.20] [--epochs 12 24 48]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from benchmarks import cifar10  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402

# Each target: (architecture, ratio, accuracy to reach in %).
TARGETS = {
    f"{architecture}_{ratio}": (architecture, float(ratio), accuracy)
    for architecture, targets in cifar10.TARGETS.items()
    for ratio, accuracy in targets.items()
}


def recipe_for(architecture, epochs):
    return dict(cifar10.recipe_for(architecture, "individual", quick=False), epochs=epochs)


def train_for(architecture, ratio, epochs, data):
    """Test accuracy (%) and training seconds of the individual network at
    `ratio` trained for `epochs` in the benchmark's setup."""
    recipe = recipe_for(architecture, epochs)
    arguments = cifar10.arguments_for(architecture, "individual", ratio)
    model, training = cifar10.train(architecture, arguments, recipe, data)
    accuracy = zoo.evaluate_ratios(model, data[2], [1.0], batch_size=500)[1.0]
    return {"accuracy": 100.0 * accuracy, **cifar10.timing(training), "recipe": recipe}


def benchmark_run(architecture, ratio, epochs):
    """The run of `benchmarks/cifar10.py`'s individual network at `ratio`, if
    it was trained for `epochs` in this recipe; else None."""
    stored = cifar10.stored_results("cifar10")["architectures"].get(architecture, {})
    network = stored.get("individual_networks", {}).get(f"{ratio:.2f}", {})
    if network.get("recipe") != recipe_for(architecture, epochs):
        return None
    keys = ("accuracy", "seconds", "recipe", "images_per_second", "cpu_seconds_per_epoch")
    return {key: network[key] for key in keys if key in network}


def stored_targets():
    return cifar10.stored_results("epoch_budget").get("targets", {})


def stored_run(target, epochs):
    return stored_targets().get(target, {}).get("runs", {}).get(str(epochs), {})


def single_model_accuracy(architecture, ratio):
    """The best single model in the CIFAR-10 results at `ratio`: its method,
    accuracy there, and the epochs and weight decay it was trained with;
    None if no single model has a result there."""
    key = f"{ratio:.2f}"
    architectures = cifar10.stored_results("cifar10").get("architectures", {})
    methods = architectures.get(architecture, {}).get("methods", {})
    singles = {n: m for n, m in methods.items() if n != "individual" and key in m["accuracy"]}
    if not singles:
        return None
    best = max(singles, key=lambda n: singles[n]["accuracy"][key])
    recipe = singles[best]["recipe"]
    return best, singles[best]["accuracy"][key], recipe["epochs"], recipe["weight_decay"]


def markdown(results):
    lines = [
        "| target | epochs | weight decay | individual network (%) | train time | images/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for entry in results["targets"].values():
        for epochs, run in sorted(entry["runs"].items(), key=lambda item: int(item[0])):
            minutes = f"{run['seconds'] / 60:.0f} min"
            rate = f"{run['images_per_second']:.0f}" if run.get("images_per_second") else ""
            decay = run["recipe"]["weight_decay"]
            lines.append(
                f"| {entry['text']} | {epochs} | {decay:g} | {run['accuracy']:.2f} "
                f"| {minutes} | {rate} |"
            )
        if entry.get("single_model"):
            best, accuracy, epochs, decay = entry["single_model"]
            notes.append(
                f"- {entry['text']}: the single model ({best}) reaches {accuracy:.2f} "
                f"in {epochs} epochs at weight decay {decay:g}."
            )
    caption = (
        "\nTest accuracy of the individually trained network at the target's ratio "
        "(the benchmark's `individual` setup, one seed), each epoch budget a run of its own "
        "with its own cosine schedule, on a 2-core CPU.\n"
    )
    return "\n".join(lines) + "\n" + caption + "\n" + "\n".join(notes) + "\n"


def store(target, runs):
    """Adds `runs` to the target's stored ones and refreshes every target's
    single-model figure, which a newer CIFAR-10 result may have changed."""
    stored = cifar10.stored_results("epoch_budget")
    results = {"targets": stored.get("targets", {}), "machine": stored.get("machine")}
    if runs or not results["machine"]:
        results["machine"] = machine()
    earlier = results["targets"].get(target, {}).get("runs", {})
    results["targets"][target] = {"runs": {**earlier, **runs}}
    # A target no longer in the benchmark's list keeps its entry as it was.
    for name in set(results["targets"]) & set(TARGETS):
        architecture, ratio, accuracy = TARGETS[name]
        results["targets"][name].update(
            text=f"{architecture} at ratio {ratio:.2f} >= {accuracy:.0f}%",
            single_model=single_model_accuracy(architecture, ratio),
        )
    write_results("epoch_budget", results, markdown(results))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=list(TARGETS), default="vgg16_0.20")
    parser.add_argument("--epochs", nargs="+", type=int, default=[12, 24, 48])
    args = parser.parse_args()

    architecture, ratio, _ = TARGETS[args.target]
    data = None
    for epochs in args.epochs:
        if stored_run(args.target, epochs).get("recipe") == recipe_for(architecture, epochs):
            continue
        run = benchmark_run(architecture, ratio, epochs)
        if run is None:
            print(f"{args.target}: {epochs} epochs...", flush=True)
            data = data or cifar10.load_data(quick=False)
            run = train_for(architecture, ratio, epochs, data)
        print(f"  {run['accuracy']:.2f}%", flush=True)
        store(args.target, {str(epochs): run})
    store(args.target, {})


if __name__ == "__main__":
    main()

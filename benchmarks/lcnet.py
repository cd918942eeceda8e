"""LC-Net ResNet-20 against the uniform-width dynamic ResNet-20 on CIFAR-10.

LC-Net starts from the `resnet20_cifar10` preset's weights (`load_backbone`:
the uniform-width model below, trained by the preset's recipe) and fine-tunes backbone
and gates jointly for `FINE_TUNE_EPOCHS` epochs in the setup of the CIFAR-10
presets (45,000 training images, augmentation, SGD with cosine decay from
`FINE_TUNE_LEARNING_RATE`), with budgets from the uniform preset's sandwich
sampler (budget 1 is the teacher of in-place distillation) and the budget
penalty; then batch norm (at each budget, on the augmented training
pipeline, as for the presets) and each operating point's budget shift (on
training images) are calibrated in turn, twice, so that batch norm's
statistics are taken near the shifted budgets
(`zoo.recipes.calibrate_gates_after_training`).
Both ways of gating channels are trained and reported: each inner
channel on its own (`"subset"`) and a width per block keeping the first
channels (`"prefix"`).
The uniform-width model is the `resnet20_cifar10` preset (the best method
of `benchmarks/cifar10.py`); LC-Net thus gets
`FINE_TUNE_EPOCHS` more epochs of training than it, hence the second,
equally trained uniform reference below.

For budgets 0.25, 0.5, 0.75 and 1.0, on the 10,000 test images: LC-Net's
accuracy and the mean, spread (standard deviation, min, max) of its
per-input multiply-adds (gates included); the uniform model's accuracy at
the same mean multiply-adds (linear interpolation of its accuracy against
multiply-adds between its operating points), and that of the uniform model
trained `FINE_TUNE_EPOCHS` more epochs by LC-Net's recipe without gates (so
that both have had the same training); the latency of both at batch 1 and 64
on this CPU; what the gates chose: per block, the share of inputs that run
it and of its inner channels they keep; and the budget the gates read after
calibration (`gate_budget`). Training clocks (seconds, images per second,
CPU seconds per epoch): each LC-Net's (`training`) and the uniform
fine-tuning's (`uniform_fine_tuned_training`).

Results go to `benchmarks/results/lcnet.{json,md,png}` and the README.

Usage:
    ZOO_DATA_DIR=../shared/data python benchmarks/lcnet.py [--quick] [--report]

Offline, in a checkout: add ZOO_WEIGHTS_URL=saved_models to load the presets
from the repository's own saved_models/ instead of downloading them.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from benchmarks.cifar10 import load_data, timing  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS,
    cached_training,
    machine,
    new_figure,
    save_figure,
    write_results,
)
from zoo import paths  # noqa: E402
from zoo.latency import measure_latency, probe_images, time_call  # noqa: E402
from zoo.presets import get_preset  # noqa: E402
from zoo.recipes import calibrate_after_training, calibrate_gates_after_training  # noqa: E402

BUDGETS = [0.25, 0.5, 0.75, 1.0]
# Each variant: its name in the tables, and its `lcnet_resnet20` arguments.
VARIANTS = {
    "subset": {"channel_gating": "subset"},
    "prefix": {"channel_gating": "prefix"},
    "subset, 1 skip per stage": {"channel_gating": "subset", "max_skips_per_stage": 1},
    "subset, skips charged half": {"channel_gating": "subset", "block_skip_charge": 0.5},
}
# How the results were calibrated after training; rows without it
# calibrated batch norm once, before the budget shift.
CALIBRATION = "batch norm and budget shift in turn, twice"
FINE_TUNE_EPOCHS = 12
FINE_TUNE_LEARNING_RATE = 0.02
UNIFORM = "resnet20_cifar10"
# The uniform preset's own recipe (its sampler, optimizer and weight decay),
# continued at a lower learning rate without warm-up.
RECIPE = {
    **get_preset(UNIFORM)["recipe"],
    "learning_rate": FINE_TUNE_LEARNING_RATE,
    "warmup_epochs": 0,
    "epochs": FINE_TUNE_EPOCHS,
}


def train_lcnet(data, uniform, quick, variant):
    recipe = dict(RECIPE, epochs=1 if quick else FINE_TUNE_EPOCHS)
    arguments = {"num_classes": 10, "operating_points": BUDGETS, **variant}

    def build():
        model = zoo.build("lcnet_resnet20", **arguments)
        model.load_backbone(uniform)
        return model

    train, validation, _ = data
    checkpoint = paths.run_directory("lcnet-bench", [arguments, recipe, UNIFORM])
    model, training = cached_training(checkpoint, build, recipe, train, validation)
    # Calibration and results are redone on every run, from the saved model.
    achieved = calibrate_gates_after_training(model, train, recipe, train[0][:5000])
    return model, training, achieved


def fine_tune_uniform(data, quick):
    """The uniform preset trained by LC-Net's recipe: the same extra epochs, no
    gates; the model and its training record."""
    recipe = dict(RECIPE, epochs=1 if quick else FINE_TUNE_EPOCHS)
    train, validation, _ = data
    model, training = cached_training(
        paths.run_directory("lcnet-bench-uniform", [recipe, UNIFORM]),
        lambda: zoo.load(UNIFORM, pretrained=True),
        recipe,
        train,
        validation,
    )
    # Calibrated like LC-Net and the presets.
    return calibrate_after_training(model, train, recipe), training


def accuracy_points(model, test):
    """`(multiply-adds, accuracy %)` of a uniform-width model at its operating points."""
    accuracy = zoo.evaluate_ratios(model, test, model.operating_points, batch_size=500)
    return [(zoo.cost(model, r)["flops"], 100 * accuracy[r]) for r in model.operating_points]


def block_usage(model, images, budget):
    """Per block: the fraction of inputs that run it, and of its inner
    channels kept by those that do."""
    usage = []
    for block in model.decisions(images, budget):
        run = block["run"]
        kept = block["channels"][run].mean() if run.any() else 0.0
        usage.append({"block": block["name"], "run": float(run.mean()), "kept": float(kept)})
    return usage


def lcnet_latency(model, batch_size, budget):
    forward = tf.function(lambda images, ratio: model.hard_forward(images, ratio)[0])
    images = probe_images(batch_size, model.image_shape)
    return time_call(forward, images, tf.fill([batch_size], float(budget)), repeats=20)


def interpolate(flops, points):
    """Accuracy of the uniform model at `flops`, from its `(flops, accuracy)` points."""
    xs, ys = zip(*sorted(points))
    return float(np.interp(flops, xs, ys)), flops < xs[0]


def run(quick):
    data = load_data(quick)
    uniform = zoo.load(UNIFORM, pretrained=True)
    fine_tuned, fine_tuning = fine_tune_uniform(data, quick)
    references = {
        "preset": accuracy_points(uniform, data[2]),
        "fine_tuned": accuracy_points(fine_tuned, data[2]),
    }
    variants = {}
    for name, variant in VARIANTS.items():
        model, training, achieved = train_lcnet(data, uniform, quick, variant)
        variants[name] = {
            "budgets": evaluate_lcnet(model, achieved, uniform, data[2], references),
            "training": timing(training),
            "backbone_mult_adds": model.backbone_cost,  # gates included: they differ in size
        }
    return {
        "variants": variants,
        "uniform_points": [{"mult_adds": f, "accuracy": a} for f, a in references["preset"]],
        "uniform_fine_tuned_points": [
            {"mult_adds": f, "accuracy": a} for f, a in references["fine_tuned"]
        ],
        "uniform_fine_tuned_training": timing(fine_tuning),
        "recipe": dict(RECIPE, epochs=1 if quick else FINE_TUNE_EPOCHS),
        "uniform_epochs": get_preset(UNIFORM)["recipe"]["epochs"],
        "calibration": CALIBRATION,
    }


def evaluate_lcnet(model, achieved, uniform, test, references):
    rows = {}
    for budget in BUDGETS:
        per_input = zoo.cost(model, budget, data=test[0])["per_input"]
        logits = np.concatenate(
            [
                model({"images": test[0][i : i + 500], "compute_ratio": budget}).numpy()
                for i in range(0, len(test[0]), 500)
            ]
        )
        accuracy = 100 * float(np.mean(np.argmax(logits, -1) == test[1]))
        matched, extrapolated = interpolate(per_input.mean(), references["preset"])
        matched_fine_tuned, _ = interpolate(per_input.mean(), references["fine_tuned"])
        rows[f"{budget:.2f}"] = {
            "accuracy": accuracy,
            "mult_adds": {
                "mean": float(per_input.mean()),
                "std": float(per_input.std()),
                "min": float(per_input.min()),
                "max": float(per_input.max()),
            },
            "calibrated_mean_fraction": achieved[budget],
            "gate_budget": float(model.gate_budget(budget)),
            "uniform_accuracy_at_same_mult_adds": matched,
            "uniform_extrapolated": bool(extrapolated),
            "uniform_fine_tuned_accuracy_at_same_mult_adds": matched_fine_tuned,
            "blocks": block_usage(model, test[0][:2000], budget),
            "latency_ms": {
                str(b): {
                    "lcnet": 1000 * lcnet_latency(model, b, budget),
                    "uniform": 1000
                    * measure_latency(uniform, [budget], batch_size=b, repeats=20)[budget],
                }
                for b in (1, 64)
            },
        }
        print(
            f"{model.name} {model.channel_gating} budget {budget}: {rows[f'{budget:.2f}']}",
            flush=True,
        )
    return rows


def recipe_note(results):
    """A line saying how the results' recipe differs from the script's current one, if it does."""
    current = dict(RECIPE, epochs=results["recipe"]["epochs"])
    changed = sorted(set(current) | set(results["recipe"]))
    changed = [k for k in changed if current.get(k) != results["recipe"].get(k)]
    if not changed:
        return []
    differences = "; ".join(
        f"`{k}` {results['recipe'].get(k)!r} (now {current.get(k)!r})" for k in changed
    )
    return [
        f"Trained with an earlier recipe than the script's current one: {differences}. "
        "Rerun `benchmarks/lcnet.py` to bring these rows to it.",
        "",
    ]


def calibration_note(results):
    """A line saying the results were calibrated otherwise than the script now does, if so."""
    if results.get("calibration") == CALIBRATION:
        return []
    return [
        "Calibrated batch norm once, before the budget shift moved the budget the gates read; "
        "rerun `benchmarks/lcnet.py` to calibrate the two in turn.",
        "",
    ]


def markdown(results):
    epochs = results["recipe"]["epochs"]
    lines = [
        "| budget | C-Net gating | LC-Net accuracy | uniform accuracy at the same mean multiply-adds "
        f"| uniform +{epochs} epochs, same multiply-adds "
        "| mean multiply-adds (M) | std / min / max (M) | latency batch 1 LC-Net / uniform (ms) "
        "| batch 64 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for budget, gating, row in budget_rows(results):
        m = row["mult_adds"]
        latency = row["latency_ms"]
        lines.append(
            f"| {budget} | {gating} | **{row['accuracy']:.2f}** | "
            f"{row['uniform_accuracy_at_same_mult_adds']:.2f}"
            f"{' (extrapolated)' if row['uniform_extrapolated'] else ''} | "
            f"{row['uniform_fine_tuned_accuracy_at_same_mult_adds']:.2f} | {m['mean'] / 1e6:.2f} | "
            f"{m['std'] / 1e6:.2f} / {m['min'] / 1e6:.2f} / {m['max'] / 1e6:.2f} | "
            f"{latency['1']['lcnet']:.2f} / {latency['1']['uniform']:.2f} | "
            f"{latency['64']['lcnet']:.1f} / {latency['64']['uniform']:.1f} |"
        )
    lines += [
        "",
        f"CIFAR-10 test set. Uniform: the `{UNIFORM}` preset ({results['uniform_epochs']} epochs); "
        f"uniform +{epochs} epochs: that preset trained by LC-Net's fine-tuning recipe without gates, "
        "so that both have had the same training. "
        f"LC-Net: that preset's weights fine-tuned {epochs} more epochs with the gates "
        f"(learning rate {results['recipe']['learning_rate']}, cosine), {sampled_budgets(results['recipe'])}, budget penalty, "
        "batch-norm statistics per budget, gates' budget shift calibrated on training images. "
        "Every model's batch norm is calibrated on the augmented training pipeline. "
        "C-Net gating: `subset` gates each inner channel on its own, `prefix` predicts a width per "
        "block and keeps its first channels; `1 skip per stage`: at most one block of each "
        "stage skipped per input (`max_skips_per_stage`), so that no stage is skipped whole; "
        "`skips charged half`: the budget penalty charges a skipped block half its cost "
        "(`block_skip_charge`), so that the gates thin blocks before skipping them. "
        "Anchor: LC-Net reports up to 11.9x fewer FLOPs and up to 3.3 points more accuracy than other "
        "dynamic methods on CIFAR-10.",
        "",
        *recipe_note(results),
        *calibration_note(results),
        target_check(results),
        "",
        clock_line(results),
        "",
        "What the gates chose (2,000 test images): per residual block, the share of inputs "
        "that run it / the share of its inner channels they keep (%).",
        "",
    ]
    return "\n".join(lines + usage_table(results)) + "\n"


def sampled_budgets(recipe):
    """How the recipe's sandwich sampler draws its budgets, in words."""
    if "ratios" in recipe:
        return f"sandwich budgets drawn from {', '.join(map(str, recipe['ratios']))}"
    low, high = recipe["ratio_range"]
    return f"sandwich budgets in [{low}, {high}]"


def budget_rows(results):
    rows = [
        (budget, gating, variant["budgets"][budget])
        for gating, variant in results["variants"].items()
        for budget in variant["budgets"]
    ]
    return sorted(rows, key=lambda r: r[0])


def usage_table(results):
    rows = budget_rows(results)
    names = [b["block"] for b in rows[0][2]["blocks"]]
    lines = [
        "| budget | C-Net gating | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for budget, gating, row in rows:
        if budget == "1.00":
            continue
        cells = [f"{100 * b['run']:.0f} / {100 * b['kept']:.0f}" for b in row["blocks"]]
        lines.append(f"| {budget} | {gating} | " + " | ".join(cells) + " |")
    return lines


def clock_line(results):
    """Each training's seconds, median images per second and CPU seconds per
    epoch, as far as its record has them."""
    # Results from before the clock kept the seconds only (`train_seconds`).
    trainings = {
        name: v.get("training") or {"seconds": v.get("train_seconds")}
        for name, v in results["variants"].items()
    }
    trainings["uniform +epochs"] = results.get("uniform_fine_tuned_training", {})
    parts = []
    for name, clock in trainings.items():
        if not clock.get("seconds"):
            parts.append(f"{name}: not timed")
            continue
        part = f"{name}: {clock['seconds'] / 3600:.1f} h"
        if clock.get("images_per_second"):
            part += (
                f", {clock['images_per_second']:.0f} images/s, "
                f"{clock['cpu_seconds_per_epoch']:.0f} CPU s/epoch"
            )
        parts.append(part)
    return "Training (medians over epochs): " + "; ".join(parts) + "."


def target_check(results):
    """The target: at budgets 0.25 and 0.5, LC-Net beats uniform width at equal mean multiply-adds."""
    verdicts, met = [], False
    for gating, variant in results["variants"].items():
        rows = {b: r for b, r in variant["budgets"].items() if b in ("0.25", "0.50")}
        gaps = {b: r["accuracy"] - r["uniform_accuracy_at_same_mult_adds"] for b, r in rows.items()}
        met = met or all(gap > 0 for gap in gaps.values())
        details = ", ".join(
            f"{gap:+.2f} points at {budget} "
            f"({rows[budget]['accuracy'] - rows[budget]['uniform_fine_tuned_accuracy_at_same_mult_adds']:+.2f}"
            " against the equally trained uniform model)"
            for budget, gap in gaps.items()
        )
        verdicts.append(f"{gating} {details}")
    verdict = "met" if met else "missed"
    return (
        "Target (LC-Net more accurate than uniform width at budgets 0.25 and 0.5): "
        f"**{verdict}** ({'; '.join(verdicts)})."
    )


def plot(results, path):
    figure, axis = new_figure(figsize=(6, 4))
    uniform = results["uniform_points"]
    axis.plot(
        [p["mult_adds"] / 1e6 for p in uniform],
        [p["accuracy"] for p in uniform],
        "o-",
        label="uniform width",
    )
    tuned = results["uniform_fine_tuned_points"]
    axis.plot(
        [p["mult_adds"] / 1e6 for p in tuned],
        [p["accuracy"] for p in tuned],
        "o--",
        label=f"uniform width, +{results['recipe']['epochs']} epochs",
    )
    for gating, variant in results["variants"].items():
        rows = variant["budgets"].values()
        axis.errorbar(
            [r["mult_adds"]["mean"] / 1e6 for r in rows],
            [r["accuracy"] for r in rows],
            xerr=[r["mult_adds"]["std"] / 1e6 for r in rows],
            fmt="s-",
            capsize=2,
            label=f"LC-Net, {gating} C-Net (mean, std of per-input cost)",
        )
    axis.set_xlabel("multiply-adds (millions)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 images, one epoch (smoke test)")
    parser.add_argument(
        "--report", action="store_true", help="rewrite the table and plot from the results"
    )
    args = parser.parse_args()
    name = "lcnet_quick" if args.quick else "lcnet"
    if args.report:
        with open(os.path.join(RESULTS, f"{name}.json")) as file:
            results = json.load(file)
    else:
        results = run(args.quick)
        results.update({"quick": args.quick, "machine": machine()})
    write_results(name, results, markdown(results), readme=not args.quick)
    plot(results, os.path.join(RESULTS, f"{name}.png"))


if __name__ == "__main__":
    main()

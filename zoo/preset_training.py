"""Reproducing a preset: `python -m zoo train --preset NAME`."""

import json
import os

import keras

from zoo import atomic_files, datasets, paths, presets, weights_download
from zoo.cost import cost
from zoo.evaluation import evaluate_ratios
from zoo.models import build
from zoo.recipes import calibrate_after_training, train_recipe

# Balanced for every preset dataset (CIFAR-10 slices alternate the classes).
HELD_OUT_SPLIT = "test[:20%]"


def train_preset(name, data_dir=None, weights_dir=None, checkpoint_dir=None, seed=0):
    """Trains preset `name` from its recipe, then publishes its weights.

    Trains on the first 90% of the training split (the last 10% is the
    validation data the recipe's callbacks read), then `publish_preset`.
    """
    preset = presets.get_preset(name)
    recipe = preset["recipe"]
    train, validation = datasets.train_validation_split(
        *datasets.load_arrays(preset["dataset"], "train", data_dir)
    )
    model = build(preset["architecture"], **preset["arguments"])
    checkpoint_dir = checkpoint_dir or paths.run_directory(
        name, [preset["arguments"], recipe, seed]
    )
    print(f"Training preset {name} ({recipe['method']}), checkpoints in {checkpoint_dir}")
    train_recipe(
        model,
        recipe,
        train,
        validation,
        checkpoint_dir,
        seed,
        verbose=2,
    )
    return publish_preset(name, model, data_dir, weights_dir, seed)


def recalibrate_preset(name, data_dir=None, weights_dir=None, seed=0):
    """Publishes trained preset `name` again with batch norm calibrated anew.

    No training: the published weights are loaded, their batch-norm
    statistics recomputed by `calibrate_after_training`, and the preset's
    weights, sha256 and accuracy rewritten as `train_preset` would.
    """
    model = presets.load(name, pretrained=True)
    return publish_preset(name, model, data_dir, weights_dir, seed)


def publish_trained_weights(name, weights_path, data_dir=None, weights_dir=None, seed=0):
    """Publishes weights trained elsewhere by preset `name`'s recipe.

    For a training run outside `train_preset`, such as a benchmark's
    (`benchmarks/runs/<run>.weights.h5`): the weights are loaded into the
    preset's architecture, then `publish_preset`. The preset's `recipe` in
    the registry must be the one they were trained by.
    """
    model = presets.load(name, pretrained=False)
    try:
        model.load_weights(weights_path)
    except (ValueError, KeyError) as error:
        preset = presets.get_preset(name)
        raise ValueError(
            f"{weights_path} does not hold weights of preset {name!r} "
            f"({preset['architecture']} with {preset['arguments']}): {error}"
        ) from None
    return publish_preset(name, model, data_dir, weights_dir, seed)


def publish_preset(name, model, data_dir=None, weights_dir=None, seed=0):
    """Calibrates a trained preset's batch norm, measures it and publishes it.

    Calibrates on the training pipeline (the first 90% of the training
    split), measures test accuracy at every operating point (on the whole
    test set, and on `HELD_OUT_SPLIT` for quick checks), writes
    `weights_dir/NAME.weights.h5`, records its sha256 in
    `weights_dir/manifest.json`, and rewrites the preset's registry entry.
    `weights_dir` defaults to the project's `saved_models/`.
    """
    weights_dir = weights_dir or presets.SAVED_MODELS
    preset = presets.get_preset(name)
    train, _ = datasets.train_validation_split(
        *datasets.load_arrays(preset["dataset"], "train", data_dir)
    )
    test = datasets.load_arrays(preset["dataset"], "test", data_dir)
    calibrate_after_training(model, train, preset["recipe"], seed)
    accuracy = evaluate_ratios(model, test, model.operating_points)
    held_out = held_out_accuracy(model, preset["dataset"], data_dir)
    os.makedirs(weights_dir, exist_ok=True)
    path = os.path.join(weights_dir, preset["weights"])
    save_weights_without_optimizer(model, path)
    digest = weights_download.sha256(path)
    _update_manifest(weights_dir, preset["weights"], digest, os.path.getsize(path))
    presets.update_preset(
        name,
        sha256=digest,
        weights_bytes=os.path.getsize(path),
        accuracy=_percent(accuracy),
        held_out=held_out,
        mult_adds={f"{r:.2f}": cost(model, r)["flops"] for r in model.operating_points},
    )
    print(f"Wrote {path} (sha256 {digest})")
    for ratio, value in accuracy.items():
        print(f"  ratio {ratio:.2f}: {100 * value:.2f}%")
    return model


def held_out_accuracy(model, dataset, data_dir=None):
    """Test accuracy at every operating point on the fixed slice `HELD_OUT_SPLIT`.

    The registry records it beside the full test set's, so a quick check
    of published weights (the preset tests) reads a fifth of the images
    and still compares like with like.
    """
    images = datasets.load_arrays(dataset, HELD_OUT_SPLIT, data_dir)
    accuracy = evaluate_ratios(model, images, model.operating_points)
    return {"split": HELD_OUT_SPLIT, "accuracy": _percent(accuracy)}


def _percent(accuracy):
    return {f"{r:.2f}": round(100 * a, 2) for r, a in accuracy.items()}


def save_weights_without_optimizer(model, path):
    """Writes `model`'s trained weights, without what only training needs, to `path`.

    `Model.save_weights` also stores a compiled model's optimizer
    variables: SGD's momentum doubles the file, which a user loading the
    preset for inference does not need. An uncompiled copy of the model,
    given the same weights, writes the weights alone; it also leaves out
    the callbacks' progress (`training_state`), so the file loads as a freshly built model with
    trained weights. The file is written beside `path` and then moved
    there, so an interrupted save never leaves a half-written file where a
    cache or a later run would read it.
    """
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.training_state.assign(keras.ops.zeros_like(copy.training_state))
    with atomic_files.atomic_path(path, ".weights.h5") as partial:
        copy.save_weights(partial)


def _update_manifest(weights_dir, filename, digest, size):
    path = os.path.join(weights_dir, "manifest.json")
    manifest = {}
    if os.path.exists(path):
        with open(path) as file:
            manifest = json.load(file)
    manifest[filename] = {"sha256": digest, "bytes": size}
    atomic_files.write_json(path, manifest)

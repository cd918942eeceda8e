"""Helpers shared by the benchmark scripts: results files and the README."""

import json
import os
import platform
import re

import keras
import tensorflow as tf

from benchmarks.training_clock import TrainingClock
from zoo import atomic_files
from zoo.preset_training import save_weights_without_optimizer
from zoo.recipes import train_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def cached_training(checkpoint, build, recipe, train, validation, seed=0):
    """Trains `build()` by `recipe` once; later runs load the trained weights.

    The training checkpoints in the folder `checkpoint` (resumed after an
    interruption); once it ends, the weights without optimizer state go to
    `<checkpoint>.weights.h5` and the training record to `<checkpoint>.json`.
    Both are written atomically, the `.json` first, so the weights file,
    once there, always has its record beside it.

    Returns:
        The model and its training record: `TrainingClock.record`, the
        seconds trained, epochs done and each epoch's seconds (a record
        kept before epochs were timed has the seconds only).
    """
    trained = checkpoint + ".weights.h5"
    path = checkpoint + ".json"
    keras.utils.set_random_seed(seed)
    model = build()
    if os.path.exists(trained):
        model.load_weights(trained)
        with open(path) as file:
            record = json.load(file)
        return model, {"seconds": record.pop("train_seconds"), **record}
    clock = TrainingClock(os.path.join(checkpoint, "train_seconds.json"), len(train[0]))
    train_recipe(model, recipe, train, validation, checkpoint, seed, verbose=2, callbacks=[clock])
    record = dict(clock.record)
    atomic_files.write_json(path, {"train_seconds": record.pop("seconds"), **record})
    save_weights_without_optimizer(model, trained)
    return model, clock.record


def new_figure(*args, **kwargs):
    """`plt.subplots(*args, **kwargs)`, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def distinct_styles(count):
    """`count` (colour, marker) pairs no two of which are alike: the 20
    colours of matplotlib's `tab20`, each ten with their own marker."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # dark shades first, then light ones
    markers = "o^sDvP"
    return [(colours[order[i % 20]], markers[(i // 10) % len(markers)]) for i in range(count)]


def save_figure(figure, path):
    """Writes `figure` as the benchmark plots are written, then closes it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def machine():
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_results(name, data, markdown, readme=True):
    """Writes `results/<name>.json` and `results/<name>.md`, then the README."""
    os.makedirs(RESULTS, exist_ok=True)
    atomic_files.write_json(os.path.join(RESULTS, f"{name}.json"), data, sort_keys=False)
    with atomic_files.atomic_open(os.path.join(RESULTS, f"{name}.md")) as file:
        file.write(markdown)
    if readme:
        embed_in_readme(name, markdown)


BENCHMARKS_README = os.path.join(ROOT, "benchmarks", "README.md")


def embed_in_readme(name, markdown, path=BENCHMARKS_README):
    """Replaces the `<!-- NAME table -->` section of a README (the
    benchmarks' by default) with `markdown`."""
    with open(path) as file:
        readme = file.read()
    start, end = f"<!-- {name} table -->", f"<!-- end {name} table -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?(" + re.escape(end) + r"|$)", re.S)
    if start in readme:
        updated = pattern.sub(lambda _: block, readme, count=1)
    else:
        updated = readme.rstrip() + "\n\n" + block + "\n"
    if updated != readme:
        with atomic_files.atomic_open(path) as file:
            file.write(updated)

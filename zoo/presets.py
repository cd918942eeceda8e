"""Pretrained presets: a registry of trained zoo models and their weights.

Each preset records its architecture and arguments, the data and recipe it
was trained with (`python -m zoo train --preset NAME` reproduces it), its
test accuracy at each operating point (on the whole test set, and on the
fixed slice `held_out` names, for quick checks), and its weights file in
`saved_models/` with that file's sha256. The registry is `presets.json`
next to this file; training a preset rewrites its entry.

```python
zoo.list_presets()
model = zoo.load("mlp_mnist", pretrained=True)
```
"""

import json
import os

from zoo import atomic_files, weights_download
from zoo.models import build

REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets.json")
# The project's published weights, which the registry's hashes describe.
SAVED_MODELS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models"
)


def _registry():
    with open(REGISTRY) as file:
        return json.load(file)


def list_presets():
    """Every preset: name, architecture, dataset, accuracy per ratio, size.

    Returns:
        A list of dicts, sorted by name, with the keys `name`,
        `architecture`, `dataset`, `description`, `accuracy`
        (`{ratio: test accuracy}`), `mult_adds` (`{ratio: multiply-adds}`),
        `weights_bytes` and `trained` (whether weights are published yet).
    """
    rows = PresetTable()
    for name, entry in sorted(_registry().items()):
        rows.append(
            {
                "name": name,
                "architecture": entry["architecture"],
                "dataset": entry["dataset"],
                "description": entry["description"],
                "accuracy": entry.get("accuracy", {}),
                "mult_adds": entry.get("mult_adds", {}),
                "weights_bytes": entry.get("weights_bytes"),
                "trained": bool(entry.get("sha256")),
            }
        )
    return rows


class PresetTable(list):
    """The list `list_presets()` returns, shown as a table at the prompt
    and in a notebook."""

    COLUMNS = ("name", "architecture", "dataset", "accuracy at 1.0", "at 0.25", "weights")

    def rows(self):
        for preset in self:
            accuracy = preset["accuracy"]
            size = preset["weights_bytes"]
            yield (
                preset["name"],
                preset["architecture"],
                preset["dataset"],
                _percent(accuracy.get("1.00")),
                _percent(accuracy.get("0.25")),
                f"{size / 1e6:.1f} MB" if size and preset["trained"] else "not published",
            )

    def __str__(self):
        table = [self.COLUMNS, *self.rows()]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.COLUMNS))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in table
        )

    __repr__ = __str__

    def _repr_html_(self):
        head = "".join(f"<th>{column}</th>" for column in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in self.rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


def _percent(value):
    """A registry accuracy (in percent) as shown in the table."""
    return "-" if value is None else f"{value:.2f}%"


def get_preset(name):
    """The registry entry of preset `name` (a dict), or a clear error."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"Unknown preset {name!r}. Known presets: {sorted(registry)}.")
    return dict(registry[name], name=name)


def load(name, pretrained=True, num_classes=None, input_shape=None):
    """Builds preset `name`, with its trained weights when `pretrained`.

    With `num_classes` (and, for an architecture that allows it, another
    `input_shape`), the model is rebuilt for a new dataset: every weight
    whose shape does not change (the whole body of a convolutional network
    with global pooling) keeps its pretrained value, and the rest (the
    classifier, and the first layer when the image channels change) starts
    from Keras's initializers, ready to fine-tune.

    Weights are downloaded once from the project's `saved_models/` (or
    `$ZOO_WEIGHTS_URL`: a mirror URL or a local folder), verified against
    the registry's sha256 and cached under `KERAS_HOME/zoo/weights`; later
    calls read the cache without network. In a source checkout without
    `$ZOO_WEIGHTS_URL` the checkout's own `saved_models/` is used as it is. A server silent for
    `$ZOO_DOWNLOAD_TIMEOUT` seconds (default 60) fails an attempt; two more
    follow before a `ConnectionError` naming the URL.

    Args:
        name: a preset name from `list_presets()`.
        pretrained: load the trained weights (else the untrained model).
        num_classes: classes of a new classifier (default: the preset's).
        input_shape: shape of one image for a new dataset (default: the preset's).

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a
            preset whose weights are not published yet.
        zoo.weights_download.WeightsIntegrityError: a corrupt or tampered
            download (nothing is cached).

    Example:
    >>> model = zoo.load("mlp_mnist")
    >>> model(x, compute_ratio=0.25)
    >>> cifar100 = zoo.load("resnet20_cifar10", num_classes=100)  # new classifier
    >>> cifar100.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    """
    preset = get_preset(name)
    arguments = dict(preset["arguments"])
    model = build(preset["architecture"], **arguments)
    if pretrained:
        if not preset.get("sha256"):
            raise ValueError(
                f"Preset {name!r} has no published weights yet; train it with "
                f"`python -m zoo train --preset {name}`, or pass pretrained=False."
            )
        path = weights_download.fetch(preset["weights"], preset["sha256"])
        model.load_weights(path)
    if num_classes is not None:
        arguments["num_classes"] = num_classes
    if input_shape is not None:
        arguments["input_shape"] = tuple(input_shape)
    if arguments == preset["arguments"]:
        return model
    adapted = build(preset["architecture"], **arguments)
    transfer_weights(model, adapted)
    return adapted


def transfer_weights(source, target):
    """Copies each weight of `source` into the same weight of `target` when
    their shapes agree; returns the paths of `target`'s weights left as
    initialized."""
    if len(source.weights) != len(target.weights):
        raise ValueError(
            f"{target.name} has another structure than {source.name}: cannot transfer weights."
        )
    fresh = []
    for old, new in zip(source.weights, target.weights):
        if tuple(old.shape) == tuple(new.shape):
            new.assign(old)
        else:
            fresh.append(new.path)
    target.weights_changed()
    return fresh


def update_preset(name, **fields):
    """Rewrites preset `name`'s registry entry with `fields` (used by training)."""
    registry = _registry()
    registry[name].update(fields)
    atomic_files.write_json(REGISTRY, registry)

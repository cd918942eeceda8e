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
    rows = []
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


def get_preset(name):
    """The registry entry of preset `name` (a dict), or a clear error."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"Unknown preset {name!r}. Known presets: {sorted(registry)}.")
    return dict(registry[name], name=name)


def load(name, pretrained=True):
    """Builds preset `name`, with its trained weights when `pretrained`.

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

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a
            preset whose weights are not published yet.
        zoo.weights_download.WeightsIntegrityError: a corrupt or tampered
            download (nothing is cached).

    Example:
    >>> model = zoo.load("mlp_mnist")
    >>> model(x, compute_ratio=0.25)
    """
    preset = get_preset(name)
    model = build(preset["architecture"], **preset["arguments"])
    if pretrained:
        if not preset.get("sha256"):
            raise ValueError(
                f"Preset {name!r} has no published weights yet; train it with "
                f"`python -m zoo train --preset {name}`, or pass pretrained=False."
            )
        path = weights_download.fetch(preset["weights"], preset["sha256"])
        model.load_weights(path)
    return model


def update_preset(name, **fields):
    """Rewrites preset `name`'s registry entry with `fields` (used by training)."""
    registry = _registry()
    registry[name].update(fields)
    atomic_files.write_json(REGISTRY, registry)

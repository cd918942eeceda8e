"""Where the zoo keeps files: the Keras home, its caches and training runs."""

import hashlib
import json
import os
import tempfile


def keras_home():
    """`KERAS_HOME` (default `~/.keras`); like `keras.utils.get_file`, `/tmp/.keras`
    when that cannot be written."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    existing = home
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        return os.path.join(tempfile.gettempdir(), ".keras")
    return home


def zoo_cache(kind):
    """`KERAS_HOME/zoo/<kind>`: the cache of `weights`, `datasets`, ..."""
    return os.path.join(keras_home(), "zoo", kind)


def runs_dir():
    """Where training checkpoints go: `ZOO_RUNS_DIR`, else `KERAS_HOME/zoo/runs`."""
    return os.environ.get("ZOO_RUNS_DIR") or zoo_cache("runs")


def run_directory(name, key_parts):
    """`runs_dir()/<name>-<key>`, the key a digest of `key_parts` (JSON).

    Keyed by everything that shapes the training (recipe, arguments, seed):
    a checkpoint of another recipe must never be resumed.

    Example:
    >>> run_directory("mlp_mnist", [arguments, recipe, seed])
    '.../zoo/runs/mlp_mnist-3f2a9c1b0d4e'
    """
    text = json.dumps(key_parts, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return os.path.join(runs_dir(), f"{name}-{key}")

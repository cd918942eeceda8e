"""`.npz` array files: read with a clear error, written atomically."""

import zipfile

import numpy as np

from zoo import atomic_files


def read_npz(path, keys):
    """`{key: array}` of `keys` from the `.npz` file `path`.

    Raises:
        ValueError: the file is damaged or lacks one of `keys` (the message
            names the file and what is missing).
    """
    try:
        with np.load(path) as data:
            files, arrays = data.files, {k: data[k] for k in keys if k in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"Malformed dataset file {path}: {error}") from error
    missing = [k for k in keys if k not in files]
    if missing:
        raise ValueError(
            f"Malformed dataset file {path}: missing arrays {missing}; expected {list(keys)}."
        )
    return arrays


def save_npz(path, arrays):
    """Writes `arrays` to `path` atomically: readers see no partial file."""
    with atomic_files.atomic_open(path, "wb") as file:
        np.savez(file, **arrays)

"""Writing a file all at once: readers see the old file or the new, never half."""

import contextlib
import json
import os
import threading


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a partial path beside `path` that replaces `path` on success.

    If the block raises (or the process dies), `path` keeps its old content
    and the partial file is removed, so no half-written file is ever read.

    Args:
        path: the file to write.
        suffix: an ending the partial path must keep too (Keras insists on
            `.weights.h5`, for example).

    Example:
    >>> with atomic_path("model.weights.h5", ".weights.h5") as partial:
    ...     model.save_weights(partial)
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    # Unique per thread too: two threads may write the same file at once.
    writer = f"{os.getpid()}-{threading.get_ident()}"
    partial = f"{path.removesuffix(suffix)}.{writer}.partial{suffix}"
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """`open(path, mode)` through `atomic_path`: readers see the old file or the new.

    Example:
    >>> with atomic_open("registry.json") as file:
    ...     file.write("{}\\n")
    """
    with atomic_path(path) as partial, open(partial, mode) as file:
        yield file


def write_json(path, data, sort_keys=True):
    """Writes `data` to `path` as indented JSON, atomically."""
    with atomic_open(path) as file:
        json.dump(data, file, indent=2, sort_keys=sort_keys)
        file.write("\n")

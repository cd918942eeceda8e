"""Writing a file all at once: readers see the old file or the new, never half."""

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Opens a partial file beside `path` that replaces `path` on success.

    If the block raises (or the process dies), `path` keeps its old content
    and the partial file is removed, so no half-written file is ever read.

    Args:
        path: the file to write.
        mode: `"w"` for text or `"wb"` for bytes.

    Example:
    >>> with atomic_open("registry.json") as file:
    ...     file.write("{}\\n")
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, mode) as file:
            yield file
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def write_json(path, data, sort_keys=True):
    """Writes `data` to `path` as indented JSON, atomically."""
    with atomic_open(path) as file:
        json.dump(data, file, indent=2, sort_keys=sort_keys)
        file.write("\n")

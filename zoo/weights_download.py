"""Fetching pretrained weights: download once, verify sha256, cache, then offline."""

import hashlib
import os
import pathlib
import shutil
import tempfile

import keras

# The project's published `saved_models/` folder.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/dynamic-width-zoo/zoo/main/saved_models/"
# Points downloads at a mirror (a URL) or a local folder.
BASE_URL_ENV = "ZOO_WEIGHTS_URL"
CACHE_SUBDIR = os.path.join("zoo", "weights")


class WeightsIntegrityError(ValueError):
    """A downloaded weights file does not have the expected sha256."""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_url():
    """The base URL (or local folder, as a `file://` URL) weights come from."""
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if "://" not in base:
        base = pathlib.Path(base).expanduser().resolve().as_uri()
    return base if base.endswith("/") else base + "/"


def keras_home():
    return os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))


def runs_dir():
    """Where training checkpoints go: `ZOO_RUNS_DIR`, else `KERAS_HOME/zoo/runs`."""
    return os.environ.get("ZOO_RUNS_DIR") or os.path.join(keras_home(), "zoo", "runs")


def cache_dir():
    return os.path.join(keras_home(), CACHE_SUBDIR)


def fetch(filename, expected_sha256):
    """Path of a verified local copy of `filename`, downloading it if needed.

    A cached file whose sha256 matches is returned without any network
    access. Otherwise the file is downloaded with `keras.utils.get_file` into
    a temporary folder next to the cache, verified, and only then moved into
    the cache, so an interrupted, truncated or tampered download never
    leaves a file there.

    Raises:
        WeightsIntegrityError: the downloaded file's sha256 is not the
            expected one (the message names the file and both hashes).
    """
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, filename)
    if os.path.exists(target):
        if sha256(target) == expected_sha256:
            return target
        os.remove(target)  # stale or corrupt: fetch again
    partial = tempfile.mkdtemp(prefix=".partial-", dir=directory)
    try:
        downloaded = keras.utils.get_file(
            fname=filename, origin=base_url() + filename, cache_dir=partial, cache_subdir="."
        )
        actual = sha256(downloaded)
        if actual != expected_sha256:
            raise WeightsIntegrityError(
                f"The downloaded weights file {filename!r} (from {base_url() + filename}) "
                f"is corrupt or has been tampered with: its sha256 is {actual}, "
                f"expected {expected_sha256}. Nothing was cached; try again, or check "
                f"${BASE_URL_ENV}."
            )
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target

"""Fetching pretrained weights: download once, verify sha256, cache, then offline."""

import hashlib
import os
import pathlib
import shutil
import tempfile

import keras

from zoo import paths

# The project's published `saved_models/` folder.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/dynamic-width-zoo/zoo/main/saved_models/"
# Points downloads at a mirror (a URL) or a local folder.
BASE_URL_ENV = "ZOO_WEIGHTS_URL"


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


def cache_dir():
    return paths.zoo_cache("weights")


def fetch(filename, expected_sha256):
    """Path of a verified local copy of `filename`, downloading it if needed.

    A cached file whose sha256 matches is returned without any network
    access. Otherwise the file is downloaded with `keras.utils.get_file` into
    a temporary folder next to the cache, verified, and only then moved into
    the cache, so an interrupted, truncated or tampered download never
    leaves a file there.

    Raises:
        WeightsIntegrityError: the download stopped early, or the
            downloaded file's sha256 is not the expected one (the message
            names the file and the expected hash).
        ConnectionError: the file could not be downloaded at all.
    """
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, filename)
    if os.path.exists(target):
        if sha256(target) == expected_sha256:
            return target
        os.remove(target)  # stale or corrupt: fetch again
    _remove_abandoned_downloads(directory)
    partial = tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=directory)
    try:
        downloaded = _download(filename, partial, expected_sha256)
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


def _download(filename, directory, expected_sha256):
    origin = base_url() + filename
    try:
        return keras.utils.get_file(
            fname=filename, origin=origin, cache_dir=directory, cache_subdir="."
        )
    except Exception as error:  # `get_file` raises a bare `Exception`.
        if "retrieval incomplete" in str(error):
            raise WeightsIntegrityError(
                f"The download of the weights file {filename!r} from {origin} stopped "
                f"early ({error}); its sha256 should be {expected_sha256}. Nothing was "
                "cached; try again."
            ) from error
        raise ConnectionError(
            f"Could not download the weights file {filename!r} from {origin}: {error}. "
            f"Set ${BASE_URL_ENV} to a mirror or a local folder holding it."
        ) from error


def _remove_abandoned_downloads(directory):
    """Removes the partial downloads of processes that died (killed mid-download)."""
    if os.name != "posix":  # Windows' `os.kill` would end the process.
        return
    for entry in pathlib.Path(directory).glob(".partial-*-*"):
        pid = entry.name.split("-")[1]
        if pid.isdigit() and not _is_running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, owned by another user
        return True
    return True

"""Fetching pretrained weights: download once, verify sha256, cache, then offline."""

import hashlib
import http.client
import os
import pathlib
import shutil
import tempfile
import time
import urllib.error
import urllib.request

from zoo import paths

# The project's published `saved_models/` folder.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/dynamic-width-zoo/zoo/main/saved_models/"
# Points downloads at a mirror (a URL) or a local folder.
BASE_URL_ENV = "ZOO_WEIGHTS_URL"
# Seconds a download may wait for data before it gives up (then retries).
TIMEOUT_ENV = "ZOO_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
RETRIES = 2
# A source checkout's own published weights: used as they are, offline.
CHECKOUT_SAVED_MODELS = pathlib.Path(__file__).resolve().parent.parent / "saved_models"


class WeightsIntegrityError(ValueError):
    """A downloaded weights file does not have the expected sha256."""


class MissingWeightsError(ConnectionError):
    """The server answered that the file is not there: retrying will not help."""


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


def download_timeout():
    """Seconds without data before a download attempt fails: `$ZOO_DOWNLOAD_TIMEOUT`, default 60."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be a positive number of seconds; got {value!r}.")
    return timeout


def cached_copy(filename, expected_sha256):
    """A readable local copy of `filename` with the expected sha256, or None:
    the configured cache (even read-only), the temporary one Keras falls back
    to, or, unless `$ZOO_WEIGHTS_URL` names another source, a source
    checkout's `saved_models/`."""
    configured = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    directories = [os.path.join(configured, "zoo", "weights"), cache_dir()]
    if not os.environ.get(BASE_URL_ENV):
        directories.append(str(CHECKOUT_SAVED_MODELS))
    for directory in directories:
        path = os.path.join(directory, filename)
        if os.path.isfile(path) and os.access(path, os.R_OK) and sha256(path) == expected_sha256:
            return path
    return None


def fetch(filename, expected_sha256, timeout=None, retries=RETRIES):
    """Path of a verified local copy of `filename`, downloading it if needed.

    A cached file whose sha256 matches is returned without any network
    access. Otherwise the file is downloaded into a temporary folder next to
    the cache, verified, and only then moved into the cache, so an
    interrupted, truncated or tampered download never leaves a file there.
    A server that sends nothing for `timeout` seconds fails the attempt;
    `retries` more attempts follow, 1 s, 2 s, ... apart.

    Raises:
        WeightsIntegrityError: the download stopped early, or the
            downloaded file's sha256 is not the expected one (the message
            names the file and the expected hash).
        ConnectionError: the file could not be downloaded at all (the
            message names the URL and `$ZOO_WEIGHTS_URL`).
        PermissionError: the cache folder cannot be written.
    """
    found = cached_copy(filename, expected_sha256)
    if found:
        return found
    directory = writable_cache_dir()
    target = os.path.join(directory, filename)
    if os.path.exists(target):
        os.remove(target)  # stale or corrupt: fetch again
    _remove_abandoned_downloads(directory)
    partial = tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=directory)
    try:
        downloaded = _download_with_retries(
            filename, partial, expected_sha256, timeout or download_timeout(), retries
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


def writable_cache_dir():
    """The weights cache, created if needed, or a clear error if it cannot be written."""
    directory = cache_dir()
    try:
        os.makedirs(directory, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-")
        probe.close()
    except OSError as error:
        raise PermissionError(
            f"The weights cache {directory} cannot be written ({error.strerror}). Point "
            "KERAS_HOME at a writable folder, or set $ZOO_WEIGHTS_URL to a folder that "
            "holds the weights file."
        ) from error
    return directory


def _download_with_retries(filename, directory, expected_sha256, timeout, retries):
    for attempt in range(retries + 1):
        try:
            return _download(filename, directory, expected_sha256, timeout)
        except ConnectionError as error:
            if attempt == retries or isinstance(error, MissingWeightsError):
                raise
            time.sleep(2.0**attempt)


def _download(filename, directory, expected_sha256, timeout):
    origin = base_url() + filename
    path = os.path.join(directory, filename)
    try:
        with urllib.request.urlopen(origin, timeout=timeout) as response:
            expected_size = response.headers.get("Content-Length")
            with open(path, "wb") as file:
                shutil.copyfileobj(response, file, 1 << 20)
    except http.client.IncompleteRead as error:
        raise WeightsIntegrityError(
            f"The download of the weights file {filename!r} from {origin} stopped "
            f"early ({error!r}); its sha256 should be {expected_sha256}. Nothing was "
            "cached; try again."
        ) from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
            reason = f"no data for {timeout:g} s (set ${TIMEOUT_ENV} to wait longer)"
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500:
                raise MissingWeightsError(
                    f"Could not download the weights file {filename!r} from {origin}: "
                    f"{reason}. Set ${BASE_URL_ENV} to a mirror or a local folder holding it."
                ) from error
        raise ConnectionError(
            f"Could not download the weights file {filename!r} from {origin}: {reason}. "
            f"Set ${BASE_URL_ENV} to a mirror or a local folder holding it."
        ) from error
    size = os.path.getsize(path)
    if expected_size is not None and size != int(expected_size):
        raise WeightsIntegrityError(
            f"The download of the weights file {filename!r} from {origin} stopped "
            f"early ({size} of {expected_size} bytes); its sha256 should be "
            f"{expected_sha256}. Nothing was cached; try again."
        )
    return path


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

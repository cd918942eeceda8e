"""CIFAR-10 from image folders (a folder or a `.tar.gz`), decoded once and cached.

Images come class by class in turn (one airplane, one automobile, ..., one
truck, then the next of each), so slices are balanced. The decoded arrays
are cached as `.npz` under `KERAS_HOME`, written to a temporary file first
so an interrupted run leaves no partial cache.
"""

import glob
import hashlib
import os
import tarfile
import zlib

import keras
import numpy as np
import tensorflow as tf

from zoo import paths, weights_download
from zoo.npz_files import read_npz, save_npz

SPLITS = ("train", "test")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_TAR = "cifar10-jpeg.tar.gz"


def load_cifar10_images(split, data_dir):
    """`(images, labels)` of CIFAR-10's `split` from `data_dir`, decoded once.

    `data_dir` holds `cifar10-jpeg.tar.gz` or a folder `cifar10/` with
    `train/<class>/*.jpg` and `test/<class>/*.jpg`. The decoded arrays are
    cached as `.npz` under `KERAS_HOME`, named after the source's content.
    """
    folder = os.path.join(data_dir, "cifar10")
    archive = os.path.join(data_dir, CIFAR10_TAR)
    if os.path.isdir(folder):
        source = folder
    elif os.path.isfile(archive):
        source = archive
    else:
        raise FileNotFoundError(
            f"No CIFAR-10 in {data_dir}: expected {CIFAR10_TAR} or a folder "
            "cifar10/ with train/<class>/*.jpg and test/<class>/*.jpg, or "
            "unset the data directory to download."
        )
    cache = _cache_path(source)
    arrays = _cached_arrays(cache) or _decode_and_cache(source, cache)
    return arrays[f"x_{split}"], arrays[f"y_{split}"]


def _cached_arrays(cache):
    if not os.path.isfile(cache):
        return None
    try:
        return read_npz(cache, ("x_train", "y_train", "x_test", "y_test"))
    except ValueError:
        os.remove(cache)  # damaged: decode the source again
        return None


def _decode_and_cache(source, cache):
    """Decodes `source` into `cache` and removes the source's older cache files."""
    arrays = _decode_image_folders(source)
    save_npz(cache, arrays)
    folder = os.path.dirname(cache)
    older = glob.glob(cache.rsplit("-", 1)[0] + "-*.npz")
    # Caches named before 2026-11-26 (path, size and time); never read again.
    legacy = glob.glob(os.path.join(folder, "cifar10-" + "[0-9a-f]" * 16 + ".npz"))
    for stale in older + legacy:
        if stale != cache:
            os.remove(stale)
    return arrays


def _cache_path(source):
    """`cifar10-<source path>-<content>.npz`: one cache file per source, named
    after its content, so a changed archive or folder is decoded again."""
    place = hashlib.sha256(os.path.abspath(source).encode()).hexdigest()[:8]
    name = f"cifar10-{place}-{_content_digest(source)[:16]}.npz"
    return os.path.join(paths.zoo_cache("datasets"), name)


_CONTENT_DIGESTS = {}


def _content_digest(source):
    """The archive's sha256, or for a folder a hash of every file's path,
    size and modification time; memoized while the source is unchanged."""
    if os.path.isdir(source):
        files = sorted(
            os.path.join(root, name) for root, _, names in os.walk(source) for name in names
        )
        stats = [(os.path.relpath(f, source), os.stat(f)) for f in files]
        key = "v3:" + repr([(f, s.st_size, s.st_mtime_ns) for f, s in stats])
        return hashlib.sha256(key.encode()).hexdigest()
    stat = os.stat(source)
    key = (os.path.abspath(source), stat.st_size, stat.st_mtime_ns)
    if key not in _CONTENT_DIGESTS:
        _CONTENT_DIGESTS[key] = weights_download.sha256(source)
    return _CONTENT_DIGESTS[key]


def _decode_image_folders(source):
    """Decodes `train/<class>/*.jpg` and `test/<class>/*.jpg` from a folder or tar."""
    files = {"train": [], "test": []}
    for split, class_name, file_name, read in _walk_images(source):
        if split in files:
            files[split].append((class_name, file_name, read))
    arrays = {}
    for split, entries in files.items():
        classes = sorted({c for c, _, _ in entries})
        if tuple(classes) != CIFAR10_CLASSES:
            raise ValueError(
                f"Malformed CIFAR-10 at {source}: the {split}/ folder has classes "
                f"{classes}; expected {list(CIFAR10_CLASSES)}."
            )
        entries = _interleave_classes(entries)
        images = _decode_with_progress(entries, source, split)
        if images.shape[1:] != (32, 32, 3):
            raise ValueError(f"Malformed CIFAR-10 at {source}: images of shape {images.shape[1:]}.")
        arrays[f"x_{split}"] = images
        arrays[f"y_{split}"] = np.array([CIFAR10_CLASSES.index(c) for c, _, _ in entries], "uint8")
    return arrays


def _decode_with_progress(entries, source, split):
    """Decodes every image of a split, with a progress bar: about a minute,
    once; later loads read the cache."""
    print(f"Decoding CIFAR-10 {split} images from {source} (once; cached afterwards)")
    progress = keras.utils.Progbar(len(entries), unit_name="image")
    images = []
    for index, (_, _, read) in enumerate(entries, 1):
        images.append(_decode(read(), source))
        if index % 1000 == 0 or index == len(entries):
            progress.update(index)
    return np.stack(images)


def _interleave_classes(entries):
    """Orders images class by class in turn, each class in file-name order.

    The folder layout loses CIFAR-10's original interleaving; this restores
    a balanced order, so any slice (a validation split) has every class.
    """
    entries = sorted(entries, key=lambda e: (e[0], e[1]))
    rank, counts = [], {}
    for class_name, _, _ in entries:
        rank.append(counts.get(class_name, 0))
        counts[class_name] = rank[-1] + 1
    order = sorted(
        range(len(entries)), key=lambda i: (rank[i], CIFAR10_CLASSES.index(entries[i][0]))
    )
    return [entries[i] for i in order]


def _walk_images(source):
    if os.path.isdir(source):
        for split in SPLITS:
            root = os.path.join(source, split)
            for class_name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
                for file_name in sorted(os.listdir(os.path.join(root, class_name))):
                    path = os.path.join(root, class_name, file_name)
                    yield split, class_name, file_name, lambda p=path: open(p, "rb").read()
        return
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                parts = member.name.strip("./").split("/")
                if (
                    member.isfile()
                    and len(parts) == 3
                    and parts[2].lower().endswith((".jpg", ".jpeg", ".png"))
                ):
                    data = archive.extractfile(member).read()
                    yield parts[0], parts[1], parts[2], lambda d=data: d
            # `tarfile` stops quietly at a damaged header after the first;
            # reading on to the end checks the whole gzip stream's CRC.
            while archive.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ValueError(f"Malformed CIFAR-10 archive {source}: {error}") from error


def _decode(data, source):
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"Malformed image in {source}: {error.message}") from error

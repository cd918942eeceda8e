"""Datasets as `tf.data` pipelines of raw images (uint8, 0 to 255) and labels.

`load(name, split)` reads a local data directory when one is given (the
`data_dir` argument, else the `ZOO_DATA_DIR` environment variable) and
otherwise downloads through `keras.datasets` or `tensorflow-datasets`:

| name | local file in the data directory | download |
| --- | --- | --- |
| `mnist` | `mnist.npz` (the `keras.datasets.mnist` layout) | `keras.datasets.mnist` |
| `cifar10` | `cifar10-jpeg.tar.gz` or a folder `cifar10/`, each holding `train/<class>/*.jpg` and `test/<class>/*.jpg` | `tfds.load("cifar10")` |
| `digits` | none: scikit-learn ships it (the offline default) | none |

The 8x8 `digits` (values 0 to 16) are rescaled to 0 to 255 so every model
sees the same pixel range; their split is fixed: a seeded shuffle, 80%
train and 20% test. Splits accept slices: `"train[:55000]"`, `"train[-10%:]"`.
CIFAR-10 from image folders comes class by class in turn (one airplane,
one automobile, ..., one truck, then the next of each), so slices are
balanced. Decoded JPEG folders are cached as `.npz` under `KERAS_HOME` (written to a
temporary file first, so an interrupted run leaves no partial cache).
"""

import glob
import hashlib
import os
import re
import tarfile
import zipfile
import zlib

import numpy as np
import tensorflow as tf

from zoo import atomic_files, paths, weights_download
from zoo.augmentation import augmented

DATA_DIR_ENV = "ZOO_DATA_DIR"
NAMES = ("mnist", "cifar10", "digits")
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
MNIST_FILE = "mnist.npz"
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "digits": 10}


def list_datasets():
    return list(NAMES)


def load(
    name,
    split="train",
    data_dir=None,
    batch_size=None,
    shuffle=False,
    augment=False,
    seed=None,
    drop_remainder=False,
):
    """A `tf.data.Dataset` of `(image, label)`: images uint8 `(H, W, C)`.

    Args:
        name: `"mnist"`, `"cifar10"` or `"digits"`.
        split: `"train"` or `"test"`, optionally sliced (`"train[:90%]"`).
        data_dir: local data directory (default: `$ZOO_DATA_DIR`, else
            download).
        batch_size: batch the dataset (default: unbatched).
        shuffle: shuffle the examples (each epoch anew).
        augment: standard augmentation: random crop after 4-pixel padding,
            plus horizontal flips for `cifar10`; outputs become float32.
        seed: seed of shuffling and augmentation.
        drop_remainder: drop the last partial batch.

    Example:
    >>> train = zoo.datasets.load("cifar10", "train", batch_size=128, shuffle=True, augment=True)
    """
    images, labels = load_arrays(name, split, data_dir)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        dataset = augmented(dataset, flip=name == "cifar10", seed=seed)
    if batch_size:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def train_validation_split(x, y):
    """`((x, y) train, (x, y) validation)`: the first 90% of the examples and
    the last 10%, in order (the split of every training recipe here).

    Example:
    >>> train, validation = train_validation_split(*load_arrays("mnist", "train"))
    """
    split = len(x) * 9 // 10
    return (x[:split], y[:split]), (x[split:], y[split:])


def load_arrays(name, split="train", data_dir=None):
    """`(images, labels)` as NumPy arrays: uint8 `(N, H, W, C)`, int32 `(N,)`."""
    if name not in NAMES:
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {list(NAMES)}.")
    base, part = _parse_split(split)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    loader = {"mnist": _mnist, "cifar10": _cifar10, "digits": _digits}[name]
    images, labels = _sliced(loader(base, data_dir), part)
    return images, labels.astype("int32")


def _parse_split(split):
    match = re.fullmatch(r"(\w+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?", split.strip())
    if not match or match.group(1) not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}. Splits are {list(SPLITS)}, optionally "
            "sliced like 'train[:50000]' or 'train[-10%:]'."
        )
    base, start, stop = match.groups()
    if "[" not in split:
        return base, slice(None)
    if any(abs(int(b[:-1])) > 100 for b in (start, stop) if b and b.endswith("%")):
        raise ValueError(f"Split {split!r}: a percentage must be between -100% and 100%.")
    return base, _PercentSlice(start, stop)


class _PercentSlice:
    """A slice whose bounds may be percentages of the split's length."""

    def __init__(self, start, stop):
        self.start, self.stop = start, stop

    def bound(self, text, length):
        if not text:
            return None
        if text.endswith("%"):
            return int(round(float(text[:-1]) * length / 100))
        return int(text)

    def resolve(self, length):
        return slice(self.bound(self.start, length), self.bound(self.stop, length))


def _sliced(arrays, part):
    if isinstance(part, _PercentSlice):
        part = part.resolve(len(arrays[0]))
    return tuple(a[part] for a in arrays)


def _digits(split, data_dir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    index = order[:cut] if split == "train" else order[cut:]
    return images[index], digits.target[index]


def _mnist(split, data_dir):
    if data_dir is None:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    else:
        path = os.path.join(data_dir, MNIST_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No MNIST file at {path}. The data directory must hold "
                f"{MNIST_FILE} with x_train, y_train, x_test, y_test (the "
                "keras.datasets.mnist layout), or unset it to download."
            )
        arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"Malformed MNIST: x_{split} has shape {images.shape} and y_{split} "
            f"{labels.shape}; expected (N, 28, 28) and (N,)."
        )
    return images[..., None], labels


def _read_npz(path, keys):
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


def _cifar10(split, data_dir):
    if data_dir is None:
        return _cifar10_tfds(split)
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
        return _read_npz(cache, ("x_train", "y_train", "x_test", "y_test"))
    except ValueError:
        os.remove(cache)  # damaged: decode the source again
        return None


def _decode_and_cache(source, cache):
    """Decodes `source` into `cache` and removes the source's older cache files."""
    arrays = _decode_image_folders(source)
    _atomic_save_npz(cache, arrays)
    folder = os.path.dirname(cache)
    older = glob.glob(cache.rsplit("-", 1)[0] + "-*.npz")
    # Caches named before 2026-11-26 (path, size and time); never read again.
    legacy = glob.glob(os.path.join(folder, "cifar10-" + "[0-9a-f]" * 16 + ".npz"))
    for stale in older + legacy:
        if stale != cache:
            os.remove(stale)
    return arrays


def _cifar10_tfds(split):
    import tensorflow_datasets as tfds

    dataset = tfds.load("cifar10", split=split, as_supervised=True, batch_size=-1)
    images, labels = tfds.as_numpy(dataset)
    return images, labels


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


def _atomic_save_npz(path, arrays):
    with atomic_files.atomic_open(path, "wb") as file:
        np.savez(file, **arrays)


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
        images = np.stack([_decode(read(), source) for _, _, read in entries])
        if images.shape[1:] != (32, 32, 3):
            raise ValueError(f"Malformed CIFAR-10 at {source}: images of shape {images.shape[1:]}.")
        arrays[f"x_{split}"] = images
        arrays[f"y_{split}"] = np.array([CIFAR10_CLASSES.index(c) for c, _, _ in entries], "uint8")
    return arrays


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

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

import os
import re

import numpy as np
import tensorflow as tf

from zoo.augmentation import augmented
from zoo.cifar10_images import load_cifar10_images
from zoo.npz_files import read_npz

DATA_DIR_ENV = "ZOO_DATA_DIR"
NAMES = ("mnist", "cifar10", "digits")
SPLITS = ("train", "test")
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
        seed: seed of shuffling and augmentation. Each iteration of the
            dataset draws anew, counted from the first in this process: a
            run resumed in a new process replays the first epochs' draws.
            For resumable training, `zoo.recipes.training_dataset` keys
            every epoch's draws by its number.
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
        arrays = read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"Malformed MNIST: x_{split} has shape {images.shape} and y_{split} "
            f"{labels.shape}; expected (N, 28, 28) and (N,)."
        )
    return images[..., None], labels


def _cifar10(split, data_dir):
    if data_dir is None:
        return _cifar10_tfds(split)
    return load_cifar10_images(split, data_dir)


def _cifar10_tfds(split):
    import tensorflow_datasets as tfds

    dataset = tfds.load("cifar10", split=split, as_supervised=True, batch_size=-1)
    images, labels = tfds.as_numpy(dataset)
    return images, labels

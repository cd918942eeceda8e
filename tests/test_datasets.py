import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from zoo import cifar10_images, datasets


@pytest.fixture(autouse=True)
def _keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)


def write_mnist(folder, n=20, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n, 28, 28), dtype="uint8"),
        "y_train": rng.integers(0, 10, n, dtype="uint8"),
        "x_test": rng.integers(0, 256, (n // 2, 28, 28), dtype="uint8"),
        "y_test": rng.integers(0, 10, n // 2, dtype="uint8"),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(folder / "mnist.npz", **arrays)
    return arrays


def jpeg(seed):
    image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype="uint8")
    return tf.io.encode_jpeg(image).numpy()


def write_cifar_tar(folder, per_class=2, classes=cifar10_images.CIFAR10_CLASSES):
    with tarfile.open(folder / cifar10_images.CIFAR10_TAR, "w:gz") as archive:
        for split in ("train", "test"):
            for c, name in enumerate(classes):
                for i in range(per_class):
                    data = jpeg(c * 100 + i)
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))


def test_mnist_from_local_file(tmp_path):
    arrays = write_mnist(tmp_path)
    x, y = datasets.load_arrays("mnist", "test", data_dir=str(tmp_path))
    assert x.shape == (10, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, arrays["y_test"])


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    x, _ = datasets.load_arrays("mnist", "train[:5]")
    assert x.shape == (5, 28, 28, 1)


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist.npz"):
        datasets.load_arrays("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg.tar.gz"):
        datasets.load_arrays("cifar10", "train", data_dir=str(tmp_path))


def test_malformed_mnist_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, y_test=None)
    with pytest.raises(ValueError, match=r"missing arrays \['y_test'\]"):
        datasets.load_arrays("mnist", "test", data_dir=str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Malformed dataset file"):
        datasets.load_arrays("mnist", "test", data_dir=str(tmp_path))
    write_mnist(tmp_path, x_test=np.zeros((10, 32, 32), "uint8"))
    with pytest.raises(ValueError, match="expected \\(N, 28, 28\\)"):
        datasets.load_arrays("mnist", "test", data_dir=str(tmp_path))


def test_cifar10_from_tar_is_balanced_and_cached(tmp_path):
    write_cifar_tar(tmp_path)
    x, y = datasets.load_arrays("cifar10", "train", data_dir=str(tmp_path))
    assert x.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(y, list(range(10)) * 2)
    cache = os.listdir(tmp_path / "keras_home" / "zoo" / "datasets")
    assert len(cache) == 1 and cache[0].endswith(".npz")
    x_again, _ = datasets.load_arrays("cifar10", "train", data_dir=str(tmp_path))
    np.testing.assert_array_equal(x, x_again)


def test_cifar10_with_missing_classes_leaves_no_cache(tmp_path):
    write_cifar_tar(tmp_path, classes=cifar10_images.CIFAR10_CLASSES[:9])
    with pytest.raises(ValueError, match="expected \\['airplane'"):
        datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "keras_home" / "zoo" / "datasets") or not os.listdir(
        tmp_path / "keras_home" / "zoo" / "datasets"
    )


def test_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / cifar10_images.CIFAR10_TAR).write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="Malformed CIFAR-10 archive"):
        datasets.load_arrays("cifar10", "train", data_dir=str(tmp_path))


def test_digits_pipeline_with_batching_and_augmentation():
    dataset = datasets.load("digits", "train", batch_size=32, shuffle=True, augment=True, seed=1)
    images, labels = next(iter(dataset))
    assert images.shape == (32, 8, 8, 1) and images.dtype == tf.float32
    assert labels.shape == (32,)
    x_train, _ = datasets.load_arrays("digits", "train")
    x_test, _ = datasets.load_arrays("digits", "test")
    assert len(x_train) + len(x_test) == 1797 and x_train.max() == 255


def test_augmentation_is_drawn_anew_every_epoch_and_repeats_with_its_seed():
    def epochs(dataset):
        return [np.concatenate([x.numpy() for x, _ in dataset]) for _ in range(2)]

    load = lambda: datasets.load("digits", "test[:64]", batch_size=32, augment=True, seed=3)
    first, second = epochs(load())
    assert not np.array_equal(first, second)
    again, _ = epochs(load())
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("bad", ["validation", "train[a:b]", "train[%:]"])
def test_bad_split_and_name(bad):
    with pytest.raises(ValueError, match="Unknown split"):
        datasets.load_arrays("digits", bad)
    with pytest.raises(ValueError, match="Known datasets"):
        datasets.load_arrays("imagenet", "train")


def test_percent_split():
    x, _ = datasets.load_arrays("digits", "train[-10%:]")
    assert len(x) == 144


def test_a_percentage_beyond_the_split_is_refused():
    with pytest.raises(ValueError, match="between -100% and 100%"):
        datasets.load_arrays("digits", "train[:150%]")


def test_an_archive_damaged_in_the_middle_is_a_clear_error_and_not_cached(tmp_path):
    write_cifar_tar(tmp_path)
    path = tmp_path / cifar10_images.CIFAR10_TAR
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="Malformed CIFAR-10 archive"):
        datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "keras_home" / "zoo" / "datasets") or not os.listdir(
        tmp_path / "keras_home" / "zoo" / "datasets"
    )


def test_the_cache_follows_the_content_and_keeps_one_file_per_source(tmp_path):
    cache_dir = tmp_path / "keras_home" / "zoo" / "datasets"
    cache_dir.mkdir(parents=True)
    (cache_dir / "cifar10-0123456789abcdef.npz").write_bytes(b"")  # the earlier naming
    write_cifar_tar(tmp_path)
    datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    first = os.listdir(cache_dir)
    assert len(first) == 1
    os.utime(tmp_path / cifar10_images.CIFAR10_TAR)  # touched, same content: same cache
    datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    assert os.listdir(cache_dir) == first
    write_cifar_tar(tmp_path, per_class=3)  # new content: decoded again, old cache removed
    x, _ = datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    assert len(x) == 30 and len(os.listdir(cache_dir)) == 1 and os.listdir(cache_dir) != first


def test_a_damaged_cache_is_decoded_again(tmp_path):
    write_cifar_tar(tmp_path)
    x, _ = datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    (cache,) = (tmp_path / "keras_home" / "zoo" / "datasets").iterdir()
    cache.write_bytes(cache.read_bytes()[:100])
    x_again, _ = datasets.load_arrays("cifar10", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(x, x_again)

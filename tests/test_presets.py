import functools
import hashlib
import http.server
import json
import os
import threading
import time

import keras
import numpy as np
import pytest
from conftest import real_dataset

import zoo
from zoo import paths, weights_download

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODELS = os.path.join(ROOT, "saved_models")
TRAINED = [p for p in zoo.list_presets() if p["trained"]]


class Server:
    """`saved_models/`-like folder served over HTTP on 127.0.0.1."""

    def __init__(self, directory, handler_class=None):
        handler = functools.partial(handler_class or QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        QuietHandler.requests.append(self.path)
        super().do_GET()


class CutShortHandler(QuietHandler):
    """Announces the whole file, sends half of it, and closes the connection."""

    def do_GET(self):
        data = open(self.translate_path(self.path), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


@pytest.fixture
def serve(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    servers = []

    def start(directory, handler_class=None):
        server = Server(directory, handler_class)
        servers.append(server)
        monkeypatch.setenv(weights_download.BASE_URL_ENV, server.url)
        return server

    yield start
    for server in servers:
        server.stop()


def cached_files():
    directory = weights_download.cache_dir()
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def digest(data):
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_caches_and_then_needs_no_network(serve, tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights" * 100)
    server = serve(folder)
    path = weights_download.fetch("w.bin", digest(b"weights" * 100))
    assert open(path, "rb").read() == b"weights" * 100
    server.stop()  # cached and verified: no network needed
    assert weights_download.fetch("w.bin", digest(b"weights" * 100)) == path


@pytest.mark.parametrize(
    "served", [b"weightz" * 100, b"weights" * 50], ids=["tampered", "truncated"]
)
def test_corrupt_download_names_the_file_and_hash_and_caches_nothing(serve, tmp_path, served):
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "w.bin").write_bytes(served)
    serve(folder)
    expected = digest(b"weights" * 100)
    with pytest.raises(
        weights_download.WeightsIntegrityError, match=f"'w.bin'.*expected {expected}"
    ):
        weights_download.fetch("w.bin", expected)
    assert cached_files() == []


def test_a_download_cut_short_by_the_server_is_an_integrity_error(serve, tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights" * 1000)
    serve(folder, CutShortHandler)
    expected = digest(b"weights" * 1000)
    with pytest.raises(
        weights_download.WeightsIntegrityError, match=f"'w.bin'.*stopped early.*{expected}"
    ):
        weights_download.fetch("w.bin", expected)
    assert cached_files() == []


def test_missing_file_on_the_server_caches_nothing(serve, tmp_path):
    (tmp_path / "empty").mkdir()
    serve(tmp_path / "empty")
    with pytest.raises(ConnectionError, match="'absent.bin'.*404.*ZOO_WEIGHTS_URL"):
        weights_download.fetch("absent.bin", "0" * 64)
    assert cached_files() == []


def test_partial_downloads_of_dead_processes_are_removed(serve, tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"abc")
    serve(folder)
    os.makedirs(weights_download.cache_dir())
    dead = os.path.join(weights_download.cache_dir(), ".partial-999999999-x")
    alive = os.path.join(weights_download.cache_dir(), f".partial-{os.getpid()}-y")
    os.makedirs(dead), os.makedirs(alive)
    weights_download.fetch("w.bin", digest(b"abc"))
    assert not os.path.exists(dead) and os.path.exists(alive)


def test_an_unwritable_keras_home_falls_back_to_tmp_like_keras(monkeypatch, tmp_path):
    home = tmp_path / "read_only"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home / "sub"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: p != str(home) and real_access(p, m))
    assert paths.keras_home().endswith(os.path.join("", ".keras"))
    assert not paths.keras_home().startswith(str(home))


def test_local_folder_as_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "w.bin").write_bytes(b"abc")
    monkeypatch.setenv(weights_download.BASE_URL_ENV, str(tmp_path / "mirror"))
    assert open(weights_download.fetch("w.bin", digest(b"abc")), "rb").read() == b"abc"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'resnet99'.*mlp_mnist"):
        zoo.load("resnet99")


def test_registry_and_manifest_agree_with_the_files():
    import json

    with open(os.path.join(SAVED_MODELS, "manifest.json")) as file:
        manifest = json.load(file)
    assert {"mlp_mnist", "mlp_mnist_idp"} <= {p["name"] for p in TRAINED}
    for row in TRAINED:
        preset = zoo.presets.get_preset(row["name"])
        path = os.path.join(SAVED_MODELS, preset["weights"])
        assert os.path.getsize(path) <= 20 * 2**20
        assert (
            weights_download.sha256(path)
            == preset["sha256"]
            == manifest[preset["weights"]]["sha256"]
        )


@pytest.fixture(scope="session")
def held_out_splits():
    """Each preset dataset's held-out slice, read once. Session fixtures come
    before `serve` moves KERAS_HOME, so CIFAR-10 is decoded at most once,
    into the cache that the notebooks read too."""
    from zoo.preset_training import HELD_OUT_SPLIT

    datasets = {p["dataset"] for p in TRAINED}
    return {name: real_dataset(name, HELD_OUT_SPLIT) for name in datasets}


@pytest.mark.parametrize("name", [p["name"] for p in TRAINED])
def test_every_preset_loads_through_http_and_matches_its_accuracy(serve, held_out_splits, name):
    serve(SAVED_MODELS)
    preset = zoo.presets.get_preset(name)
    model = zoo.load(name, pretrained=True)
    assert model.training_plan["ratios"] == [1.0]  # not that of its last training step
    x, y = held_out_splits[preset["dataset"]]
    recorded = preset["held_out"]["accuracy"]
    ratios = sorted(recorded, key=float)
    for ratio in (ratios[0], ratios[-1]):
        measured = 100 * zoo.evaluate_ratios(model, (x, y), [float(ratio)])[float(ratio)]
        assert measured == pytest.approx(recorded[ratio], abs=1.0)
    assert os.listdir(weights_download.cache_dir()) == [preset["weights"]]


def test_preset_without_weights_says_how_to_get_them():
    untrained = [p["name"] for p in zoo.list_presets() if not p["trained"]]
    if not untrained:
        pytest.skip("every preset is trained")
    with pytest.raises(ValueError, match="python -m zoo train --preset"):
        zoo.load(untrained[0])
    assert isinstance(zoo.load(untrained[0], pretrained=False), zoo.DynamicModel)


def test_published_weights_leave_the_optimizer_out(tmp_path):
    import h5py

    from zoo.preset_training import save_weights_without_optimizer

    model = zoo.build("mlp", num_classes=10, hidden_units=(8, 8))
    optimizer = keras.optimizers.SGD(momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    x, y = np.random.rand(16, 28, 28, 1).astype("float32"), np.arange(16) % 10
    model.fit(x, y, epochs=1, verbose=0)
    model.set_training_plan([1.0, 0.5], distillation=0.5)
    model.training_state.assign(np.ones(model.training_state.shape))
    path = str(tmp_path / "m.weights.h5")
    save_weights_without_optimizer(model, path)
    with h5py.File(path) as file:
        assert "optimizer" not in file
    loaded = zoo.build("mlp", num_classes=10, hidden_units=(8, 8))
    fresh = [w.numpy() for w in loaded.non_trainable_weights]
    loaded.load_weights(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # Neither the last training plan nor the callbacks' progress is published.
    for value, weight in zip(fresh, loaded.non_trainable_weights):
        np.testing.assert_array_equal(weight.numpy(), value)
    assert os.listdir(tmp_path) == ["m.weights.h5"]


def test_an_interrupted_weights_save_keeps_the_old_file(tmp_path, monkeypatch):
    from zoo.preset_training import save_weights_without_optimizer

    path = tmp_path / "m.weights.h5"
    path.write_bytes(b"old")
    model = zoo.build("mlp", num_classes=10, hidden_units=(8, 8))

    def interrupted(self, filepath, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_weights_without_optimizer(model, str(path))
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.weights.h5"]


def test_recalibrating_a_preset_publishes_it_again(monkeypatch, tmp_path):
    import shutil

    from zoo.preset_training import recalibrate_preset

    monkeypatch.setenv(weights_download.BASE_URL_ENV, SAVED_MODELS)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    registry = tmp_path / "presets.json"
    shutil.copy(zoo.presets.REGISTRY, registry)
    monkeypatch.setattr(zoo.presets, "REGISTRY", str(registry))
    before = zoo.presets.get_preset("mlp_mnist")
    recalibrate_preset("mlp_mnist", weights_dir=str(tmp_path / "weights"))
    after = zoo.presets.get_preset("mlp_mnist")
    path = tmp_path / "weights" / before["weights"]
    assert after["sha256"] == weights_download.sha256(str(path))
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    assert manifest[before["weights"]]["sha256"] == after["sha256"]
    for ratio, accuracy in before["accuracy"].items():
        assert after["accuracy"][ratio] == pytest.approx(accuracy, abs=0.05)
    assert after["held_out"]["split"] == "test[:20%]"
    assert after["held_out"]["accuracy"].keys() == before["accuracy"].keys()


def test_weights_trained_elsewhere_are_published_as_the_preset(monkeypatch, tmp_path):
    from zoo import preset_training

    trained = zoo.build("mlp", num_classes=10, operating_points=[0.1, 0.25, 0.5, 0.75, 1.0])
    path = str(tmp_path / "run.weights.h5")
    preset_training.save_weights_without_optimizer(trained, path)
    published = []
    monkeypatch.setattr(
        preset_training, "publish_preset", lambda name, model, *args: published.append(model)
    )
    preset_training.publish_trained_weights("mlp_mnist", path)
    for mine, theirs in zip(published[0].weights, trained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    other = str(tmp_path / "other.weights.h5")
    zoo.build("mlp", num_classes=10, hidden_units=(20, 20)).save_weights(other)
    with pytest.raises(
        ValueError, match="other.weights.h5 does not hold weights of preset 'mlp_mnist'"
    ):
        preset_training.publish_trained_weights("mlp_mnist", other)


class SilentHandler(QuietHandler):
    """Accepts the request and never answers."""

    def do_GET(self):
        QuietHandler.requests.append(self.path)
        time.sleep(5)


def test_a_silent_server_times_out_retries_and_names_the_url(serve, tmp_path, monkeypatch):
    (tmp_path / "published").mkdir()
    server = serve(tmp_path / "published", SilentHandler)
    monkeypatch.setenv(weights_download.TIMEOUT_ENV, "0.3")
    QuietHandler.requests.clear()
    started = time.monotonic()
    with pytest.raises(
        ConnectionError, match=r"'w.bin' from http://127.*no data for 0.3 s.*ZOO_WEIGHTS_URL"
    ):
        weights_download.fetch("w.bin", "0" * 64)
    assert QuietHandler.requests == ["/w.bin"] * 3  # one attempt and two retries
    assert time.monotonic() - started < 10
    assert cached_files() == []
    assert server.url


def test_a_read_only_cache_holding_the_file_is_read_offline(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    (home / "zoo" / "weights").mkdir(parents=True)
    (home / "zoo" / "weights" / "w.bin").write_bytes(b"abc")
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(weights_download.BASE_URL_ENV, "http://127.0.0.1:9/")  # nothing there
    # Read-only for this process, even when the tests run as root.
    access = os.access
    monkeypatch.setattr(
        paths.os, "access", lambda p, mode: access(p, mode) and not (mode & os.W_OK)
    )
    assert paths.keras_home() != str(home)  # Keras's fallback for an unwritable home
    path = weights_download.fetch("w.bin", digest(b"abc"))
    assert path == str(home / "zoo" / "weights" / "w.bin")


def test_an_unwritable_weights_cache_is_explained(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    (home / "zoo").mkdir(parents=True)
    (home / "zoo" / "weights").write_text("a file where the cache folder should be")
    monkeypatch.setenv("KERAS_HOME", str(home))
    with pytest.raises(PermissionError, match=r"weights cache .* cannot be written.*KERAS_HOME"):
        weights_download.fetch("w.bin", digest(b"abc"))


def test_a_checkout_loads_its_own_saved_models_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(weights_download.BASE_URL_ENV, raising=False)
    preset = TRAINED[0]
    model = zoo.load(preset["name"])
    assert model.built and not os.path.exists(weights_download.cache_dir())


def test_a_preset_fine_tunes_on_another_dataset_with_a_new_classifier():
    name = "resnet20_cifar10"
    pretrained = zoo.load(name)
    model = zoo.load(name, num_classes=100)
    assert model.num_classes == 100
    assert model(np.zeros((2, 32, 32, 3)), compute_ratio=0.5).shape == (2, 100)
    changed = [
        new.path
        for old, new in zip(pretrained.weights, model.weights)
        if old.shape != new.shape or not np.array_equal(old.numpy(), new.numpy())
    ]
    assert changed and all("classifier" in path or "logits" in path for path in changed), changed
    gray = zoo.load(name, num_classes=10, input_shape=(28, 28, 1))
    assert gray(np.zeros((2, 28, 28, 1)), compute_ratio=0.25).shape == (2, 10)

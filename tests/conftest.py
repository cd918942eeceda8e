import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The notebooks (collected after the tests) train briefly; in Jupyter, their full budget.
os.environ.setdefault("ZOO_NOTEBOOK_EPOCHS", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def data():
    """64 training digits (8x8x1) and their labels."""
    import zoo

    x, y = zoo.datasets.load_arrays("digits", "train")
    return x[:64], y[:64]


def real_dataset(name, split):
    """`zoo.datasets.load_arrays(name, split)`, or a skip naming
    `ZOO_DATA_DIR` when neither a local copy nor the network has the data.

    With `ZOO_REQUIRE_DATA=1` (set by `.ci/run`, where the data is always
    there) the skip is a failure instead.
    """
    import zoo

    try:
        return zoo.datasets.load_arrays(name, split)
    except Exception as error:  # noqa: BLE001 - Keras's download raises a bare Exception
        message = (
            f"needs the {name} dataset: set ZOO_DATA_DIR to a folder holding it "
            f"(see zoo.datasets), or allow downloads ({type(error).__name__}: {error})"
        )
        if os.environ.get("ZOO_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)


class Interrupt(keras.callbacks.Callback):
    """Stops `fit` with `RuntimeError("interrupted")` as epoch `epoch`
    begins, or as its batch `batch` begins."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.at, self.batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.batch is None and epoch == self.at:
            raise RuntimeError("interrupted")

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (self.at, self.batch):
            raise RuntimeError("interrupted")


def random_images(model, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch,) + model.image_shape).astype("float32")


def randomize_batchnorm(model, seed=0):
    """Gives every batch norm distinct, non-trivial statistics per point."""
    from zoo.layers import DynamicBatchNormalization

    rng = np.random.default_rng(seed)
    for layer in model.dynamic_layers:
        if isinstance(layer, DynamicBatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.2, layer.beta.shape))


def counting_traces(model, step="train_step"):
    """A list that grows by one each time `model`'s training step (or
    `step`, e.g. "test_step") is traced."""
    traces = []
    traced_step = getattr(model, step)

    def counting_step(data):
        traces.append(1)
        return traced_step(data)

    setattr(model, step, counting_step)
    return traces

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

"""Trains zoo models on one device and under `MirroredStrategy` on two logical
CPUs, in this process, and prints one JSON line per case.

Run by `tests/test_distributed.py` in a subprocess: the two logical devices
must be configured before TensorFlow initialises, which the test process
has already done.

Usage: python tests/distributed_training.py ARCH:METHOD[:nosync] ...
(ZOO_TEST_IMAGES, ZOO_TEST_EPOCHS, ZOO_TEST_LEARNING_RATE and ZOO_TEST_FLOATX,
for example float64, change the run.)
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.config.set_floatx(os.environ.get("ZOO_TEST_FLOATX", "float32"))

import callbacks  # noqa: E402
import zoo  # noqa: E402

RATIOS = [1.0, 0.5, 0.25]
BATCH = 16


def images_for(arch):
    count = int(os.environ.get("ZOO_TEST_IMAGES", 32))
    rng = np.random.RandomState(0)
    shape = (8, 8, 1) if arch == "mlp" else (32, 32, 3)
    images = rng.uniform(0, 255, (count,) + shape).astype(keras.config.floatx())
    return images, rng.randint(0, 10, count)


def build(arch, method, synchronized):
    kwargs = {"num_classes": 10, "operating_points": [0.25, 0.5, 1.0]}
    if arch != "mlp":
        kwargs["synchronized_batch_norm"] = synchronized
    if arch == "mlp":
        kwargs["input_shape"] = (8, 8, 1)
    if arch == "vgg16":
        kwargs["width"] = 0.125
    if arch in ("resnet20", "lcnet_resnet20"):
        kwargs["blocks_per_stage"] = 1  # every kind of block, a third of the tracing
    if method in ("tesla", "r_tesla"):
        kwargs["profile"] = "linear"
    if method == "atp":
        kwargs["profile"] = zoo.profiles.Profile("linear", trainable=True)
    return zoo.build(arch, **kwargs)


def method_callbacks(method, validation):
    tesla = {"validation_data": validation, "patience": 1, "steps_per_round": 2, "seed": 0}
    return {
        "idp": [],
        "plan": [],
        "sandwich": [callbacks.SubnetSampler(ratios=RATIOS, sandwich=True, num_ratios=3, seed=0)],
        "nonuniform": [
            callbacks.SubnetSampler(
                ratios=RATIOS, sandwich=True, num_ratios=3, nonuniform=True, seed=0
            )
        ],
        "tesla": [callbacks.TaskwiseEarlyStopping(RATIOS, **tesla)],
        "r_tesla": [callbacks.TaskwiseEarlyStopping(RATIOS, order="random", **tesla)],
        "atp": [callbacks.TaskwiseEarlyStopping(RATIOS, alternate_profile=True, **tesla)],
        "stages": [callbacks.ProfileScheduler(stages=[((0.0, 0.5), 1), ((0.5, 1.0), 1)])],
    }[method]


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def fit_interrupted_and_resumed(model, x, y, validation):
    """Two epochs of the sandwich rule through the logger, per-epoch
    calibration and a backup, interrupted after the first and resumed from
    the backup's checkpoint."""
    backup_dir = tempfile.mkdtemp()
    with_callbacks = lambda *extra: [
        *method_callbacks("sandwich", validation),
        callbacks.OperatingPointLogger(validation, ratios=RATIOS),
        callbacks.BatchNormCalibration((x, y), steps=1, frequency="epoch"),
        callbacks.ShardedBackupAndRestore(backup_dir),
        *extra,
    ]
    fit = lambda *extra: model.fit(
        x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=with_callbacks(*extra)
    )
    try:
        fit(Interrupt())
    except RuntimeError:
        pass
    return fit()


def train(arch, method, strategy, synchronized):
    x, y = images_for(arch)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build(arch, method, synchronized)
        model.compile(
            optimizer=keras.optimizers.SGD(
                float(os.environ.get("ZOO_TEST_LEARNING_RATE", 0.01)), momentum=0.9
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    if method == "callbacks":
        # Every weight: the calibrated batch-norm statistics too.
        initial = [v.numpy() for v in model.weights]
        history = fit_interrupted_and_resumed(model, x, y, (x[:16], y[:16]))
        logged = [history.history[f"val_accuracy@{r}"][-1] for r in RATIOS]
        return [v.numpy() for v in model.weights], history.history["loss"] + logged, initial
    initial = trained_weights(model)
    if method == "plan":
        model.set_training_plan(RATIOS, weights=[1.0, 0.7, 0.5], distillation=0.6)
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=int(os.environ.get("ZOO_TEST_EPOCHS", 2)),
        shuffle=False,
        verbose=0,
        callbacks=method_callbacks(method, (x[:16], y[:16])),
    )
    return trained_weights(model), history.history["loss"], initial


def trained_weights(model):
    """The trainable weights (the callbacks' state is not compared)."""
    return [v.numpy() for v in model.trainable_weights]


def run(case):
    arch, method, *flags = case.split(":")
    synchronized = "nosync" not in flags
    one_weights, one_loss, initial = train(arch, method, tf.distribute.get_strategy(), synchronized)
    mirrored = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    two_weights, two_loss, _ = train(arch, method, mirrored, synchronized)
    return {
        "case": case,
        "replicas": mirrored.num_replicas_in_sync,
        "max_weight_difference": max(
            float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)
        ),
        "max_weight_change": max(
            float(np.max(np.abs(a - b))) for a, b in zip(one_weights, initial)
        ),
        "finite": all(bool(np.all(np.isfinite(w))) for w in two_weights),
        "loss_one_device": one_loss,
        "loss_two_replicas": two_loss,
    }


if __name__ == "__main__":
    for case in sys.argv[1:]:
        print("RESULT " + json.dumps(run(case)), flush=True)

"""One worker of a `MultiWorkerMirroredStrategy` run (or the one-process
reference run): trains the MLP with the sandwich sampler and saves its
trainable weights.

Run by `tests/test_multi_worker.py`, one process per worker on 127.0.0.1,
with `TF_CONFIG` naming the cluster and this worker's index.

Usage: python tests/multi_worker_training.py OUT.npz BACKUP_DIR [--stop-after-epoch N] [--single]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import callbacks  # noqa: E402
import zoo  # noqa: E402

GLOBAL_BATCH = 16
EPOCHS = 3


def data():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (64, 8, 8, 1)).astype("float32")
    return x, rng.randint(0, 10, len(x))


class StopAfter(keras.callbacks.Callback):
    """Ends the process abruptly once epoch `epoch` is backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            os._exit(3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("backup_dir")
    parser.add_argument("--stop-after-epoch", type=int)
    parser.add_argument("--single", action="store_true")
    args = parser.parse_args()
    x, y = data()
    if args.single:
        strategy = tf.distribute.get_strategy()
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = zoo.build(
            "mlp", input_shape=(8, 8, 1), num_classes=10, operating_points=[0.25, 0.5, 1.0]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    sampler = callbacks.SubnetSampler(ratios=[1.0, 0.5, 0.25], sandwich=True, num_ratios=3, seed=0)
    extra = [keras.callbacks.BackupAndRestore(args.backup_dir)]
    if args.stop_after_epoch:
        extra.append(StopAfter(args.stop_after_epoch))
    # Keras shards the batches by data across workers: global batch `k`
    # is images 16k to 16k + 15, split over the replicas, as in one process.
    model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        shuffle=False,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[sampler, *extra],
    )
    np.savez(args.out, *[v.numpy() for v in model.trainable_weights])


if __name__ == "__main__":
    main()

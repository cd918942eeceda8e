"""Trains an MLP with `ShardedBackupAndRestore`, resuming whatever checkpoint
its folder holds, and saves the final weights; killed at random moments by
`tests/test_sharded_backup_and_restore.py`.

Usage: python tests/backup_training.py BACKUP_DIR RESULT.npz [SAVE_FREQ]
Prints "TRAINING" when `fit` starts and "EPOCH n" as each epoch ends.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import callbacks  # noqa: E402
import zoo  # noqa: E402

EPOCHS = 30


class Progress(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        print("TRAINING", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        print(f"EPOCH {epoch}", flush=True)


def main(backup_dir, result, save_freq="epoch"):
    save_freq = save_freq if save_freq == "epoch" else int(save_freq)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (64, 8, 8, 1)).astype("float32")
    y = rng.randint(0, 10, 64)
    keras.utils.set_random_seed(0)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    backup = callbacks.ShardedBackupAndRestore(
        backup_dir, max_shard_size=50e-6, save_freq=save_freq
    )
    model.fit(
        x, y, batch_size=16, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[backup, Progress()]
    )
    np.savez(result, *[v.numpy() for v in model.weights + model.optimizer.variables])


if __name__ == "__main__":
    main(*sys.argv[1:])

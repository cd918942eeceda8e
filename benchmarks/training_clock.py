"""A training clock that survives interruption."""

import json
import os
import time

import keras

from zoo import atomic_files


class TrainingClock(keras.callbacks.Callback):
    """Training time that survives an interruption.

    At the end of each epoch the seconds trained so far are written to
    `path`, which belongs inside the `callbacks.ShardedBackupAndRestore`
    directory so that it lives and goes with the checkpoint; a run resumed
    from that checkpoint counts on from them instead of from zero.

    Args:
        path: the JSON file holding the seconds trained so far.

    Example:
    >>> clock = TrainingClock(os.path.join(checkpoint_dir, "train_seconds.json"))
    >>> train_recipe(model, recipe, train, validation, checkpoint_dir, callbacks=[clock])
    >>> clock.seconds
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.seconds = 0.0

    def on_train_begin(self, logs=None):
        self._earlier = 0.0
        if os.path.exists(self.path):
            with open(self.path) as file:
                self._earlier = json.load(file)["seconds"]
        self._start = time.perf_counter()
        self.seconds = self._earlier

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = self._earlier + time.perf_counter() - self._start
        atomic_files.write_json(self.path, {"seconds": self.seconds, "epochs": epoch + 1})

    def on_train_end(self, logs=None):
        self.seconds = self._earlier + time.perf_counter() - self._start

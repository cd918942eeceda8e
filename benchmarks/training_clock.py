"""A training clock that survives interruption."""

import json
import os
import time

import keras

from zoo import atomic_files


class TrainingClock(keras.callbacks.Callback):
    """Training time that survives an interruption, epoch by epoch.

    At the end of each epoch the record of the training so far is written
    to `path`, which belongs inside the `callbacks.ShardedBackupAndRestore`
    directory so that it lives and goes with the checkpoint; a run resumed
    from that checkpoint counts on from it instead of from zero. The record
    (`clock.record`) holds the seconds trained (`seconds`), the epochs done
    (`epochs`), and each epoch's wall-clock and process CPU seconds
    (`epoch_seconds`, `epoch_cpu_seconds`, keyed by the epoch's number from
    1). CPU seconds near the cores' count times the wall-clock ones suggest
    the epoch had the CPU to itself; fewer, that it shared it. A run resumed
    from a record kept before epochs were timed has the times of its later
    epochs only.

    Args:
        path: the JSON file holding the record.

    Example:
    >>> clock = TrainingClock(os.path.join(checkpoint_dir, "train_seconds.json"))
    >>> train_recipe(model, recipe, train, validation, checkpoint_dir, callbacks=[clock])
    >>> clock.seconds, clock.record["epoch_seconds"]
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.record = empty_record()

    @property
    def seconds(self):
        return self.record["seconds"]

    def on_train_begin(self, logs=None):
        self.record = empty_record()
        if os.path.exists(self.path):
            with open(self.path) as file:
                self.record.update(json.load(file))
        self._earlier = self.record["seconds"]
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._epoch_start
        number = str(epoch + 1)
        self.record["epoch_seconds"][number] = round(time.perf_counter() - wall, 1)
        self.record["epoch_cpu_seconds"][number] = round(time.process_time() - cpu, 1)
        self.record["epochs"] = epoch + 1
        self._tick()
        atomic_files.write_json(self.path, self.record)

    def on_train_end(self, logs=None):
        self._tick()

    def _tick(self):
        self.record["seconds"] = self._earlier + time.perf_counter() - self._start


def empty_record():
    """A training record before its first epoch."""
    return {"seconds": 0.0, "epochs": 0, "epoch_seconds": {}, "epoch_cpu_seconds": {}}

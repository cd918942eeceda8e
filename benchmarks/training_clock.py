"""A training clock that survives interruption."""

import json
import os
import time
import warnings

import keras
import numpy as np

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
    1), and with `images_per_epoch` each epoch's images per second
    (`images_per_second`) and the machine's one-minute load average at its
    end (`load_average`). CPU seconds near the cores' count times the
    wall-clock ones suggest the epoch had the CPU to itself; fewer, that it
    shared it. A run resumed from a record kept before epochs were timed has
    the times of its later epochs only.

    The clock warns when an epoch's throughput falls below
    `slow_fraction` of the median of the run's first epochs, or when the
    load average exceeds the machine's cores: its timing is
    then not one of a run alone.

    Args:
        path: the JSON file holding the record.
        images_per_epoch: images one epoch trains on (None: no throughput).
        slow_fraction: the throughput, relative to the first epochs', below
            which an epoch is reported as slowed down.

    Example:
    >>> clock = TrainingClock(os.path.join(checkpoint_dir, "train_seconds.json"))
    >>> train_recipe(model, recipe, train, validation, checkpoint_dir, callbacks=[clock])
    >>> clock.seconds, clock.record["epoch_seconds"]
    """

    def __init__(self, path, images_per_epoch=None, slow_fraction=0.7):
        super().__init__()
        self.path = path
        self.images_per_epoch = images_per_epoch
        self.slow_fraction = slow_fraction
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
        seconds = time.perf_counter() - wall
        # Two decimals: a small network's epoch can take under a second.
        self.record["epoch_seconds"][number] = round(seconds, 2)
        self.record["epoch_cpu_seconds"][number] = round(time.process_time() - cpu, 2)
        self.record["epochs"] = epoch + 1
        if self.images_per_epoch:
            self._throughput(number, seconds)
        self._tick()
        atomic_files.write_json(self.path, self.record)

    def _throughput(self, number, seconds):
        rate = round(self.images_per_epoch / max(seconds, 1e-9), 1)
        load = round(os.getloadavg()[0], 2)
        self.record.setdefault("images_per_second", {})[number] = rate
        self.record.setdefault("load_average", {})[number] = load
        by_epoch = sorted(self.record["images_per_second"].items(), key=lambda kv: int(kv[0]))
        first = sorted(rate for _, rate in by_epoch[:3])
        reference = first[len(first) // 2]
        cores = os.cpu_count()
        if rate < self.slow_fraction * reference or load > cores:
            warnings.warn(
                f"Epoch {number}: {rate} images/s against {reference} in the run's first "
                f"epochs, load average {load} on {cores} core(s): this epoch shared the CPU, "
                "its timing is not one of a run alone.",
                stacklevel=2,
            )

    def on_train_end(self, logs=None):
        self._tick()

    def _tick(self):
        self.record["seconds"] = self._earlier + time.perf_counter() - self._start


def empty_record():
    """A training record before its first epoch."""
    return {"seconds": 0.0, "epochs": 0, "epoch_seconds": {}, "epoch_cpu_seconds": {}}


def throughput(records):
    """The medians, over every timed epoch of the training `records`
    (`TrainingClock.record`s), of images per second and CPU seconds per
    epoch; a measure no record holds is left out."""
    result = {}
    for key, field in (
        ("images_per_second", "images_per_second"),
        ("cpu_seconds_per_epoch", "epoch_cpu_seconds"),
    ):
        values = [value for record in records for value in record.get(field, {}).values()]
        if values:
            result[key] = float(np.median(values))
    return result

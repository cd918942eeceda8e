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
    to `path` (if given), which belongs inside the `callbacks.ShardedBackupAndRestore`
    directory so that it lives and goes with the checkpoint; a run resumed
    from that checkpoint counts on from it instead of from zero. The record
    (`clock.record`) holds the seconds trained (`seconds`), the epochs done
    (`epochs`), and each epoch's wall-clock and process CPU seconds
    (`epoch_seconds`, `epoch_cpu_seconds`, keyed by the epoch's number from
    1), and with `images_per_epoch` each epoch's images per second
    (`images_per_second`), the machine's one-minute load average at its
    end (`load_average`) and, where `/proc/stat` tells it, the share of
    the process's cores that other processes used during it
    (`others_cpu_share`, 0 for a run alone, 0.5 when another process took
    half of its cores; interrupts and time stolen by the hypervisor count
    as others' too). A run resumed from a record kept before epochs were
    timed has the times of its later epochs only.

    The clock warns when an epoch's throughput falls below `slow_fraction`
    of the median of the run's first epochs, or when other processes took
    more than `shared_fraction` of its cores: its timing is then not one of
    a run alone. A slow epoch whose cores were otherwise idle is named
    after its CPU seconds: grown with the wall-clock, the machine itself
    ran slower (a virtual machine's host); flat, the process was paused or
    waited. Without `/proc/stat` the load average stands in for the
    second measure, against the cores; it is the weaker one, as a run
    alone can hold it above the cores with its own threads.

    Args:
        path: the JSON file holding the record (None: kept in memory only).
        images_per_epoch: images one epoch trains on (None: no throughput).
        slow_fraction: the throughput, relative to the first epochs', below
            which an epoch is reported as slowed down.
        shared_fraction: the share of the process's cores used by other
            processes above which an epoch is reported as shared.

    Example:
    >>> clock = TrainingClock(os.path.join(checkpoint_dir, "train_seconds.json"))
    >>> train_recipe(model, recipe, train, validation, checkpoint_dir, callbacks=[clock])
    >>> clock.seconds, clock.record["epoch_seconds"]
    """

    def __init__(self, path=None, images_per_epoch=None, slow_fraction=0.7, shared_fraction=0.1):
        super().__init__()
        self.path = path
        self.images_per_epoch = images_per_epoch
        self.slow_fraction = slow_fraction
        self.shared_fraction = shared_fraction
        self.record = empty_record()

    @property
    def seconds(self):
        return self.record["seconds"]

    def on_train_begin(self, logs=None):
        self.record = empty_record()
        if self.path and os.path.exists(self.path):
            with open(self.path) as file:
                self.record.update(json.load(file))
        self._earlier = self.record["seconds"]
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        busy = busy_cpu_seconds() if self.images_per_epoch else None
        self._epoch_start = (time.perf_counter(), time.process_time(), busy)

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu, busy = self._epoch_start
        number = str(epoch + 1)
        seconds = time.perf_counter() - wall
        # Two decimals: a small network's epoch can take under a second.
        self.record["epoch_seconds"][number] = round(seconds, 2)
        cpu_seconds = time.process_time() - cpu
        self.record["epoch_cpu_seconds"][number] = round(cpu_seconds, 2)
        self.record["epochs"] = epoch + 1
        if self.images_per_epoch:
            others = others_share(busy, busy_cpu_seconds(), cpu_seconds, seconds)
            self._throughput(number, seconds, others)
            self._warn_if_not_alone(number, others)
        self._tick()
        if self.path:
            atomic_files.write_json(self.path, self.record)

    def _throughput(self, number, seconds, others):
        rate = round(self.images_per_epoch / max(seconds, 1e-9), 1)
        self.record.setdefault("images_per_second", {})[number] = rate
        self.record.setdefault("load_average", {})[number] = round(os.getloadavg()[0], 2)
        if others is not None:
            self.record.setdefault("others_cpu_share", {})[number] = round(others, 3)

    def _warn_if_not_alone(self, number, others):
        rate = self.record["images_per_second"][number]
        reference = self._first_epochs("images_per_second")
        cores = len(process_cores())
        reasons = []
        if rate < self.slow_fraction * reference:
            reasons.append(f"{rate} images/s against {reference} in the run's first epochs")
        if others is not None and others > self.shared_fraction:
            reasons.append(f"other processes used {others:.0%} of its {cores} core(s)")
        load = self.record["load_average"][number]
        if others is None and load > cores:
            reasons.append(f"load average {load} on {cores} core(s)")
        if reasons:
            verdict = self._verdict(number, others, reference / rate)
            warnings.warn(f"Epoch {number}: {'; '.join(reasons)}; {verdict}.", stacklevel=3)

    def _verdict(self, number, others, slowdown):
        """Why a flagged epoch's timing cannot be quoted as a run alone's."""
        if others is None or others > self.shared_fraction:
            return "its timing is not one of a run alone"
        idle = f"its cores were otherwise idle ({others:.0%} used by others)"
        cpu_growth = self.record["epoch_cpu_seconds"][number] / self._first_epochs(
            "epoch_cpu_seconds"
        )
        # Every instruction slower (a virtual machine's host, the clock
        # frequency) costs CPU seconds in step with the wall-clock; a pause or
        # a wait for input costs wall-clock only.
        if cpu_growth >= (1 + slowdown) / 2:
            return (
                f"{idle} and its CPU seconds grew {cpu_growth:.1f}x: the machine itself ran "
                "slower (a virtual machine's host, the clock frequency), so its timing is "
                "not comparable with the run's first epochs"
            )
        return (
            f"{idle} and its CPU seconds grew {cpu_growth:.1f}x: the process was paused or waited"
        )

    def _first_epochs(self, key):
        """The median of `key` over the run's first three timed epochs."""
        by_epoch = sorted(self.record[key].items(), key=lambda kv: int(kv[0]))
        first = sorted(value for _, value in by_epoch[:3])
        return max(first[len(first) // 2], 1e-9)

    def on_train_end(self, logs=None):
        self._tick()

    def _tick(self):
        self.record["seconds"] = self._earlier + time.perf_counter() - self._start


def empty_record():
    """A training record before its first epoch."""
    return {"seconds": 0.0, "epochs": 0, "epoch_seconds": {}, "epoch_cpu_seconds": {}}


def process_cores():
    """The CPU numbers this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def busy_cpu_seconds(stat_path="/proc/stat"):
    """Seconds the process's cores have spent busy since boot, over all
    processes (None where `/proc/stat` is not there to say)."""
    try:
        with open(stat_path) as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    cores = {f"cpu{number}" for number in process_cores()}
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name in cores:
            # user nice system idle iowait irq softirq steal guest guest_nice: the
            # first eight, as guest and guest_nice are already counted in user and
            # nice; busy is all of them but idle and iowait.
            values = [int(value) for value in fields[:8]]
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def others_share(busy_before, busy_after, own_cpu_seconds, wall_seconds):
    """The share of the process's cores that other processes used over
    `wall_seconds`: their busy time less the process's own CPU time."""
    if busy_before is None or busy_after is None or wall_seconds <= 0:
        return None
    others = busy_after - busy_before - own_cpu_seconds
    return min(max(others / (wall_seconds * len(process_cores())), 0.0), 1.0)


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

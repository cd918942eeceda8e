"""Crash-safe backups of a training, in weight files of a bounded size."""

import hashlib
import json
import os
import shutil
import warnings

import keras
import numpy as np

CHECKPOINT_PREFIX = "checkpoint-"
PARTIAL_PREFIX = ".partial-"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.json"
# What `keras.callbacks.BackupAndRestore` and earlier versions of this
# callback leave in `backup_dir`: resumed once, then replaced.
LEGACY_WEIGHTS = ("latest.weights.json", "latest.weights.h5")
LEGACY_METADATA = "training_metadata.json"


class ShardedBackupAndRestore(keras.callbacks.Callback):
    """Backs up a training and resumes it after an interruption, like
    `keras.callbacks.BackupAndRestore`, in files of a bounded size, and
    safe against a crash at any moment.

    Each backup is a folder `checkpoint-NNNNNN` holding the weights (with
    the optimizer's state and the zoo callbacks' progress, which live in
    the model) in Keras's sharded format, each file at most
    `max_shard_size` gigabytes, and `state.json`: the epoch, the
    optimizer's step and each file's size and SHA-256. The folder is written
    completely under a temporary name, flushed to disk, then renamed: a
    crash leaves either the new checkpoint or none, never half of one. The
    previous checkpoint stays as a fallback. On resuming, the newest
    checkpoint whose files match their digests is loaded, and its
    optimizer step must match `state.json`; a damaged one is skipped with a
    warning.

    A zoo model's `fit` starts at the checkpoint's epoch by itself; for
    another Keras model pass `initial_epoch=backup.resume_epoch()` to
    `fit`. As with `BackupAndRestore`, a checkpoint taken in the middle of
    an epoch (`save_freq=N`) resumes at the start of that epoch. A
    `backup_dir` written by `keras.callbacks.BackupAndRestore` or by an
    earlier version of this callback is resumed too.

    Args:
        backup_dir: Folder of the checkpoints, used by this training only.
        max_shard_size: Largest weight file in gigabytes. Default 0.015
            (16 MB; Keras refuses a single variable larger than that).
        save_freq: `"epoch"` or a number of batches, as in `BackupAndRestore`.
        delete_checkpoint: Delete `backup_dir` when the training ends.

    Example:

    ```python
    backup = callbacks.ShardedBackupAndRestore("runs/vgg16", max_shard_size=0.015)
    model.fit(x, y, epochs=64, callbacks=[backup])  # rerun the same line to resume
    ```
    """

    def __init__(self, backup_dir, max_shard_size=0.015, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("`backup_dir` must be a folder path; got an empty value.")
        if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, float)):
            max_shard_size = None
        if max_shard_size is None or not max_shard_size > 0:
            raise ValueError(
                "max_shard_size must be a positive number of gigabytes, such as 0.015 (16 MB)."
            )
        if save_freq != "epoch" and not (
            isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0
        ):
            raise ValueError(
                f"`save_freq` must be 'epoch' or a positive integer; got {save_freq!r}."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.max_shard_size = max_shard_size
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.epoch = 0
        self.batches_since_save = 0
        self.resumed_epoch = 0
        self.checked_first_epoch = False

    # -- resuming -----------------------------------------------------------------

    def resume_epoch(self):
        """The epoch a `fit` with this callback starts at: the epoch after
        the newest intact checkpoint's last finished one, or 0 without one.

        Known before `fit`, so that a data pipeline keyed by epoch (such as
        `zoo.recipes.training_dataset`) can start at the same epoch.
        """
        checkpoint = self.newest_intact_checkpoint()
        return 0 if checkpoint is None else checkpoint.epoch

    def newest_intact_checkpoint(self):
        """The newest checkpoint whose files match their digests, or None."""
        for checkpoint in self.checkpoints():
            problem = checkpoint.damage()
            if problem is None:
                return checkpoint
            warnings.warn(
                f"Skipping the damaged checkpoint {checkpoint.path}: {problem}", stacklevel=2
            )
        return None

    def checkpoints(self):
        """The checkpoints in `backup_dir`, newest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = [
            Checkpoint(os.path.join(self.backup_dir, name))
            for name in sorted(os.listdir(self.backup_dir), reverse=True)
            if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX) :].isdigit()
        ]
        legacy = LegacyCheckpoint.find(self.backup_dir)
        return found + ([legacy] if legacy else [])

    def on_train_begin(self, logs=None):
        self.check_shard_size()
        self.checked_first_epoch = False
        self.batches_since_save = 0
        checkpoint = self.newest_intact_checkpoint()
        self.resumed_epoch = self.epoch = 0 if checkpoint is None else checkpoint.epoch
        if checkpoint is not None:
            self.restore(checkpoint)

    def restore(self, checkpoint):
        if not self.model.built:
            raise ValueError(
                "ShardedBackupAndRestore needs a built model to resume: call it on a batch "
                "of data (or `model.build`) before `fit`."
            )
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(checkpoint.weights_path)
        if checkpoint.iterations is not None and optimizer is not None:
            step = int(optimizer.iterations.numpy())
            if step != checkpoint.iterations:
                raise ValueError(
                    f"The checkpoint {checkpoint.path} is inconsistent: its weights hold "
                    f"optimizer step {step}, its state.json step {checkpoint.iterations}. "
                    "Delete it to resume from the previous one."
                )

    def on_epoch_begin(self, epoch, logs=None):
        if self.checked_first_epoch:
            return
        self.checked_first_epoch = True
        if epoch < self.resumed_epoch:
            raise ValueError(
                f"The checkpoint in {self.backup_dir} resumes at epoch {self.resumed_epoch}, "
                f"but `fit` started at epoch {epoch}: pass "
                "`initial_epoch=backup.resume_epoch()` to `fit` (a zoo model does it itself)."
            )

    # -- saving -------------------------------------------------------------------

    def check_shard_size(self):
        """Refuses, before any training, a shard size below the largest
        variable (Keras would refuse it at the first backup)."""
        optimizer = self.model.optimizer
        variables = list(self.model.weights)
        if optimizer is not None and optimizer.built:
            variables += optimizer.variables
        if not variables:
            return
        size_of = lambda v: int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
        largest = max(variables, key=size_of)
        size = size_of(largest)
        if size > self.max_shard_size * 1024**3:
            raise ValueError(
                f"max_shard_size={self.max_shard_size} GB is smaller than the variable "
                f"{largest.path} ({size / 1024**2:.2f} MB): a shard holds whole variables. "
                f"Use max_shard_size >= {size / 1024**3:.6f}."
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self.batches_since_save += 1
        if self.batches_since_save >= self.save_freq:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.save_freq == "epoch":
            self.save()

    def save(self):
        """Writes a checkpoint of the model now, then drops all but the
        previous one."""
        self.batches_since_save = 0
        os.makedirs(self.backup_dir, exist_ok=True)
        newest = self.checkpoints()
        serial = newest[0].serial + 1 if newest else 0
        partial = os.path.join(self.backup_dir, f"{PARTIAL_PREFIX}{os.getpid()}-{serial:06d}")
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        self.model.save_weights(
            os.path.join(partial, WEIGHTS_FILE), max_shard_size=self.max_shard_size
        )
        optimizer = self.model.optimizer
        state = {
            "epoch": self.epoch,
            "iterations": None if optimizer is None else int(optimizer.iterations.numpy()),
            "files": {
                name: file_digest(os.path.join(partial, name)) for name in os.listdir(partial)
            },
        }
        with open(os.path.join(partial, STATE_FILE), "w") as file:
            json.dump(state, file, indent=2, sort_keys=True)
        for name in os.listdir(partial):
            flush_to_disk(os.path.join(partial, name))
        os.replace(partial, os.path.join(self.backup_dir, f"{CHECKPOINT_PREFIX}{serial:06d}"))
        flush_to_disk(self.backup_dir)
        self.remove_stale(keep=2)

    def remove_stale(self, keep):
        """Removes checkpoints beyond the newest `keep`, legacy files and
        folders a crashed save left."""
        for checkpoint in self.checkpoints()[keep:]:
            checkpoint.remove()
        for name in os.listdir(self.backup_dir):
            if name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "max_shard_size": self.max_shard_size,
            "save_freq": self.save_freq,
            "delete_checkpoint": self.delete_checkpoint,
        }


class Checkpoint:
    """One `checkpoint-NNNNNN` folder: its weights and `state.json`."""

    def __init__(self, path):
        self.path = path
        self.serial = int(os.path.basename(path)[len(CHECKPOINT_PREFIX) :])
        self.weights_path = os.path.join(path, WEIGHTS_FILE)
        try:
            with open(os.path.join(path, STATE_FILE)) as file:
                self.state = json.load(file)
        except (OSError, ValueError) as error:
            self.state = {"unreadable": str(error)}
        self.epoch = int(self.state.get("epoch", 0))
        self.iterations = self.state.get("iterations")

    def damage(self):
        """What is wrong with the checkpoint's files, or None."""
        if "unreadable" in self.state:
            return f"state.json cannot be read ({self.state['unreadable']})."
        for name, expected in self.state.get("files", {}).items():
            path = os.path.join(self.path, name)
            if not os.path.exists(path):
                return f"{name} is missing."
            if file_digest(path) != expected:
                return f"{name} does not match its recorded size and SHA-256."
        return None

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class LegacyCheckpoint:
    """The single checkpoint `keras.callbacks.BackupAndRestore` (or an
    earlier version of this callback) left: no digests to check."""

    serial = -1
    iterations = None

    def __init__(self, backup_dir, weights_path):
        self.path = backup_dir
        self.weights_path = weights_path
        metadata = os.path.join(backup_dir, LEGACY_METADATA)
        self.epoch = 0
        if os.path.exists(metadata):
            with open(metadata) as file:
                self.epoch = int(json.load(file)["epoch"])

    @classmethod
    def find(cls, backup_dir):
        for name in LEGACY_WEIGHTS:
            path = os.path.join(backup_dir, name)
            if os.path.exists(path):
                return cls(backup_dir, path)
        return None

    def damage(self):
        return None

    def remove(self):
        for name in os.listdir(self.path):
            if name.startswith("latest") or name == LEGACY_METADATA:
                os.remove(os.path.join(self.path, name))


def file_digest(path):
    """`{"size": bytes, "sha256": hex}` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


def flush_to_disk(path):
    """Makes a written file (or a folder's entries) survive a power loss."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

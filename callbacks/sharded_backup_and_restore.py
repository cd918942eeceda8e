"""`BackupAndRestore` whose checkpoint is split into files of a bounded size."""

import json
import os

import keras


class ShardedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up and restores training like `keras.callbacks.BackupAndRestore`,
    in weight files no larger than `max_shard_size`.

    A checkpoint holds the weights and the optimizer state (SGD's momentum
    doubles the size of the weights), which can outgrow what a repository or
    an upload accepts in one file. This callback saves it with Keras's own
    sharded format: `latest.weights.json` maps each variable to one of the
    files `latest_00000.weights.h5`, `latest_00001.weights.h5`, ..., each at
    most `max_shard_size` gigabytes of variables (Keras refuses a single
    variable larger than that). The training resumes as with `BackupAndRestore`, bit
    for bit, and a plain `latest.weights.h5` left in `backup_dir` by
    `keras.callbacks.BackupAndRestore` is resumed too (and replaced by shards
    at the next backup).

    Args:
        backup_dir: Folder of the checkpoint, used by this training only.
        max_shard_size: Largest file in gigabytes. Default 0.015 (16 MB).
        save_freq: `"epoch"` or a number of batches, as in `BackupAndRestore`.
        delete_checkpoint: Delete the checkpoint when the training ends.

    Example:

    ```python
    backup = callbacks.ShardedBackupAndRestore("runs/vgg16", max_shard_size=0.015)
    model.fit(x, y, epochs=64, callbacks=[backup])  # rerun the same line to resume
    ```
    """

    def __init__(self, backup_dir, max_shard_size=0.015, save_freq="epoch", delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        if not isinstance(max_shard_size, (int, float)) or not max_shard_size > 0:
            raise ValueError(
                f"max_shard_size must be a positive number of gigabytes; got {max_shard_size!r}."
            )
        self.max_shard_size = max_shard_size
        self._unsharded_weights_path = self._weights_path
        self._weights_path = os.path.join(backup_dir, "latest.weights.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"

    def resume_epoch(self):
        """The epoch a `fit` with this callback starts at: the one after the
        checkpoint's last finished epoch, or 0 without a checkpoint.

        Known before `fit`, so that a data pipeline keyed by epoch (such as
        `zoo.recipes.training_dataset`) can start at the same epoch.
        """
        if not os.path.exists(self._training_metadata_path):
            return 0
        with open(self._training_metadata_path) as file:
            return int(json.load(file)["epoch"])

    def _load_model(self):
        if not os.path.exists(self._weights_path) and os.path.exists(self._unsharded_weights_path):
            self._weights_path, sharded = self._unsharded_weights_path, self._weights_path
            try:
                return super()._load_model()
            finally:
                self._weights_path = sharded
        return super()._load_model()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save_weights(self._weights_path, max_shard_size=self.max_shard_size)
        if os.path.exists(self._unsharded_weights_path):
            os.remove(self._unsharded_weights_path)
        self._write_training_metadata()

    def _write_training_metadata(self):
        # What `BackupAndRestore._save_model` writes after the weights.
        with open(self._training_metadata_path, "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

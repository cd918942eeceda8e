import glob
import os

import keras
import numpy as np
import pytest
from conftest import Interrupt

import callbacks
import zoo

SHARD_GB = 50e-6  # 53 KB: above the largest variable (40 KB), below the total (150 KB)


def fit(data, backup, epochs=4, extra=()):
    keras.utils.set_random_seed(0)
    model = zoo.build("mlp", input_shape=(8, 8, 1))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        *data, batch_size=16, epochs=epochs, shuffle=False, callbacks=[backup, *extra], verbose=0
    )
    return model


def test_an_interrupted_run_resumes_bit_for_bit_from_bounded_files(data, tmp_path):
    backup_dir = str(tmp_path / "backup")
    straight = fit(data, callbacks.ShardedBackupAndRestore(str(tmp_path / "other"), SHARD_GB))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(
            data,
            callbacks.ShardedBackupAndRestore(backup_dir, SHARD_GB),
            extra=[Interrupt(epoch=2)],
        )

    shards = glob.glob(os.path.join(backup_dir, "checkpoint-*", "*.weights.h5"))
    assert len(shards) > 4 and len(glob.glob(os.path.join(backup_dir, "checkpoint-*"))) == 2
    assert max(os.path.getsize(s) for s in shards) < SHARD_GB * 1024**3 + 16384  # + HDF5 headers

    resumed = fit(data, callbacks.ShardedBackupAndRestore(backup_dir, SHARD_GB))
    for a, b in zip(
        straight.weights + straight.optimizer.variables,
        resumed.weights + resumed.optimizer.variables,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not os.path.exists(backup_dir)  # deleted at the end, as BackupAndRestore does


def test_a_checkpoint_of_keras_backup_and_restore_is_resumed_then_sharded(data, tmp_path):
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(data, keras.callbacks.BackupAndRestore(backup_dir), extra=[Interrupt(epoch=2)])
    assert sorted(os.listdir(backup_dir)) == ["latest.weights.h5", "training_metadata.json"]

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.epochs = getattr(self, "epochs", []) + [epoch]
            raise RuntimeError("stopped after one epoch")

    stop = Stop()
    with pytest.raises(RuntimeError, match="stopped"):
        fit(data, callbacks.ShardedBackupAndRestore(backup_dir, SHARD_GB), extra=[stop])
    assert stop.epochs == [2]  # resumed at epoch 2, not from scratch
    # The new checkpoint, and Keras's files as its fallback until the next backup.
    assert sorted(os.listdir(backup_dir)) == [
        "checkpoint-000000",
        "latest.weights.h5",
        "training_metadata.json",
    ]


@pytest.mark.parametrize("size", [0, -1.0, "16MB"])
def test_a_shard_size_that_is_not_a_positive_number_is_refused(tmp_path, size):
    with pytest.raises(ValueError, match="max_shard_size must be a positive"):
        callbacks.ShardedBackupAndRestore(str(tmp_path), max_shard_size=size)


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(data, tmp_path):
    backup_dir = str(tmp_path / "backup")
    backup = callbacks.ShardedBackupAndRestore(backup_dir, SHARD_GB, delete_checkpoint=False)
    fit(data, backup, epochs=3)
    newest, previous = backup.checkpoints()
    assert (newest.epoch, previous.epoch) == (3, 2)
    shard = sorted(glob.glob(os.path.join(newest.path, "*.weights.h5")))[0]
    with open(shard, "r+b") as file:
        file.seek(os.path.getsize(shard) // 2)
        file.write(b"\0" * 64)
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        assert callbacks.ShardedBackupAndRestore(backup_dir, SHARD_GB).resume_epoch() == 2


def test_a_plain_keras_model_must_start_at_the_resumed_epoch(data, tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    backup = callbacks.ShardedBackupAndRestore(str(tmp_path / "plain"), SHARD_GB)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(*data, epochs=3, verbose=0, callbacks=[backup, Interrupt(2)])
    with pytest.raises(ValueError, match=r"initial_epoch=backup.resume_epoch\(\)"):
        model.fit(*data, epochs=3, verbose=0, callbacks=[backup])
    model.fit(*data, epochs=3, initial_epoch=backup.resume_epoch(), verbose=0, callbacks=[backup])


def test_a_shard_smaller_than_a_variable_is_refused_before_training(data, tmp_path):
    trained = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_: trained.append(1))
    with pytest.raises(ValueError, match="smaller than the variable"):
        fit(
            data,
            callbacks.ShardedBackupAndRestore(str(tmp_path), max_shard_size=1e-6),
            extra=[record],
        )
    assert not trained

"""Faults: a training killed at random moments, and calls from many threads."""

import os
import random
import subprocess
import sys
import threading
import time

import numpy as np

import zoo

# -- a training killed at random moments ----------------------------------------

SCRIPT = os.path.join(os.path.dirname(__file__), "backup_training.py")


def start_training(backup_dir, result, save_freq="epoch"):
    """A training subprocess, returned once its `fit` has started."""
    process = subprocess.Popen(
        [sys.executable, SCRIPT, str(backup_dir), str(result), str(save_freq)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout.readline().strip() == "TRAINING"
    return process


def train_to_end(backup_dir, result, save_freq="epoch"):
    process = start_training(backup_dir, result, save_freq)
    started = time.monotonic()
    assert process.wait(timeout=300) == 0
    return time.monotonic() - started


def kill_at_random_moments(backup_dir, result, duration, kills, save_freq="epoch"):
    """Starts the training `kills` times, each killed with SIGKILL after a
    random part of `duration`; returns how many were killed mid-run."""
    rng = random.Random(0)
    killed = 0
    for _ in range(kills):
        process = start_training(backup_dir, result, save_freq)
        time.sleep(rng.uniform(0.05, 0.6) * duration)
        if process.poll() is None:
            process.kill()
            killed += 1
        process.wait(timeout=60)
    return killed


def saved_arrays(path):
    with np.load(path) as arrays:
        return [arrays[key] for key in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]


def test_a_run_killed_at_random_moments_resumes_to_the_uninterrupted_weights(tmp_path):
    duration = train_to_end(tmp_path / "straight", tmp_path / "straight.npz")
    killed = kill_at_random_moments(tmp_path / "backup", tmp_path / "killed.npz", duration, kills=5)
    assert killed >= 3
    train_to_end(tmp_path / "backup", tmp_path / "killed.npz")
    for a, b in zip(saved_arrays(tmp_path / "straight.npz"), saved_arrays(tmp_path / "killed.npz")):
        np.testing.assert_array_equal(a, b)


def test_a_run_saving_every_batch_killed_at_random_moments_always_resumes(tmp_path):
    # A checkpoint mid-epoch resumes at the start of its epoch (as Keras's
    # BackupAndRestore does): the run ends elsewhere, but it always resumes.
    backup = tmp_path / "backup"
    duration = train_to_end(tmp_path / "straight", tmp_path / "straight.npz", save_freq=1)
    assert kill_at_random_moments(backup, tmp_path / "r.npz", duration, kills=3, save_freq=1)
    train_to_end(backup, tmp_path / "r.npz", save_freq=1)
    assert all(np.all(np.isfinite(a)) for a in saved_arrays(tmp_path / "r.npz"))


def test_calls_from_many_threads_return_their_single_thread_results():
    # The MLP's large layers keep a cached sliced kernel, which every call
    # at another width refreshes; its calls are short, so threads interleave
    # often (the cache read without a lock failed 10 of these 800 calls).
    model = zoo.build("mlp")
    images = np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 1)).astype("float32")
    ratios = [0.25, 0.5, 0.75, 1.0, 0.3, 0.6, 0.9, 0.4]
    expected = {r: model(images, compute_ratio=r).numpy() for r in ratios}
    failures = []

    def call_repeatedly(ratio):
        for _ in range(100):
            try:
                result = model(images, compute_ratio=ratio).numpy()
            except Exception as error:  # noqa: BLE001 - every failure counts
                failures.append(repr(error))
                continue
            if not np.array_equal(result, expected[ratio]):
                failures.append(f"ratio {ratio}: another result")

    threads = [threading.Thread(target=call_repeatedly, args=(r,)) for r in ratios]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:5]

"""Training under `tf.distribute.MirroredStrategy` on two logical CPUs
matches one device: same weights, same logged loss.

Each case trains twice in a subprocess of its own (`tests/distributed_training.py`),
on one device and on two replicas, from the same initial weights on the
same global batches. Models with batch norm use `synchronized_batch_norm`
(statistics over the global batch), so both runs compute the same function
and differ only by float summation order. In float64 that is nothing: every
architecture and method ends within 1e-5 (measured: 1e-16 to 4e-15). In
float32 the MLP ends within 1e-7; a batch norm right after a convolution
makes its kernel's gradient a small difference of large terms, which
amplifies float32 rounding to a few thousandths of what training changed.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_training.py")
MLP_METHODS = ["idp", "plan", "sandwich", "nonuniform", "tesla", "r_tesla", "stages"]
CONV_CASES = [
    # The sandwich rule, with OperatingPointLogger, BatchNormCalibration and
    # ShardedBackupAndRestore, interrupted after one epoch and resumed.
    "resnet20:callbacks",
    "mobilenet:plan",
    "vgg16:nonuniform",
    "lcnet_resnet20:sandwich",
    "mlp:atp",
]
EXACT = {"floatx": "float64"}
# float32, one epoch at a small rate: rounding amplified through batch norm
# stays a few thousandths of the change (2e-3 on mobilenet's depthwise
# kernels; 1e-2 after four steps at ten times the rate).
FLOAT32_SETTINGS = {"epochs": 1, "learning_rate": 1e-3}
RELATIVE_TOLERANCE = 5e-2


def run_cases(cases, **settings):
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    environment.update({f"ZOO_TEST_{key.upper()}": str(value) for key, value in settings.items()})
    result = subprocess.run(
        [sys.executable, SCRIPT, *cases],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
    )
    rows = [
        json.loads(line[len("RESULT ") :])
        for line in result.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert len(rows) == len(cases), result.stderr[-3000:]
    return {row["case"]: row for row in rows}


def check_equal_training(row, absolute, loss_tolerance=1e-4):
    assert row["replicas"] == 2
    assert row["finite"]
    tolerance = max(absolute, RELATIVE_TOLERANCE * row["max_weight_change"])
    assert row["max_weight_difference"] <= tolerance, row
    assert row["loss_two_replicas"] == pytest.approx(row["loss_one_device"], rel=loss_tolerance), (
        row
    )


@pytest.mark.parametrize("method", MLP_METHODS)
def test_every_training_method_on_two_replicas_matches_one_device(method):
    # No batch norm: the two runs differ by float summation order alone.
    case = f"mlp:{method}"
    check_equal_training(run_cases([case])[case], absolute=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
def test_every_architecture_on_two_replicas_matches_one_device_exactly(case):
    # Two epochs in float64: rounding out of the way, the distributed step
    # computes what one device does, ATP's two optimizers, LC-Net's hard
    # gates and its budget penalty included.
    row = run_cases([case], **EXACT)[case]
    assert row["replicas"] == 2 and row["finite"]
    assert row["max_weight_difference"] <= 1e-5, row
    assert row["loss_two_replicas"] == pytest.approx(row["loss_one_device"], rel=1e-9), row


def test_float32_conv_model_on_two_replicas_stays_close():
    case = "resnet20:sandwich"
    row = run_cases([case], **FLOAT32_SETTINGS)[case]
    check_equal_training(row, absolute=1e-5, loss_tolerance=1e-5)


def test_unsynchronized_batch_norm_trains_on_each_replicas_share():
    # In float32, as users train.
    row = run_cases(["resnet20:sandwich:nosync"], images=16, **FLOAT32_SETTINGS)[
        "resnet20:sandwich:nosync"
    ]
    assert row["finite"]
    # Each replica normalizes its own half batch: another function, close by.
    assert row["max_weight_difference"] > 0
    assert row["loss_two_replicas"] == pytest.approx(row["loss_one_device"], rel=0.2)

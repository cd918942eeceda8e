"""Training callbacks for dynamic-width models (each a `keras.callbacks.Callback`)."""

from callbacks.batch_norm_calibration import BatchNormCalibration
from callbacks.operating_point_logger import OperatingPointLogger
from callbacks.plan_callback import PlanCallback
from callbacks.profile_scheduler import ProfileScheduler
from callbacks.sharded_backup_and_restore import ShardedBackupAndRestore
from callbacks.subnet_sampler import SubnetSampler
from callbacks.taskwise_early_stopping import TaskwiseEarlyStopping

__all__ = [
    "BatchNormCalibration",
    "OperatingPointLogger",
    "PlanCallback",
    "ProfileScheduler",
    "ShardedBackupAndRestore",
    "SubnetSampler",
    "TaskwiseEarlyStopping",
]

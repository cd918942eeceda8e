"""Callback progress kept in the model's `training_state` variable.

Progress must survive an interruption: `BackupAndRestore` restores the
model's weights, and `training_state` is one of them. Each callback owns a
fixed window of it, so windows never move between runs.
"""

import warnings
import zlib

WINDOWS = {
    "TaskwiseEarlyStopping": (0, 64),
    "SubnetSampler": (64, 8),
    "ProfileScheduler": (72, 8),
    "TaskwiseEarlyStopping epoch": (80, 2),
    "ProfileScheduler epoch": (82, 2),
    "SubnetSampler epoch": (84, 2),
}


class CallbackState:
    """Reads and writes one callback's floats in `model.training_state`."""

    def __init__(self, model, owner):
        require_dynamic_model(model, owner)
        self.model = model
        self.owner = owner
        self.start, self.size = WINDOWS[owner]

    def __getitem__(self, index):
        return float(self.model.training_state.numpy()[self.start + index])

    def __setitem__(self, index, value):
        values = self.model.training_state.numpy().copy()
        values[self.start + index] = value
        self.model.training_state.assign(values)

    def resume_or_reset(self, started, fingerprint, settings):
        """Keeps the saved progress if these settings saved it, else resets.

        `started` and `fingerprint` are indices in the window. Progress saved
        by other settings (another callback of the same class, or the same
        one reconfigured) means nothing to these: the window is reset and
        the schedule starts over, with a warning. Returns True on a reset.
        """
        key = settings_fingerprint(settings)
        saved = self[fingerprint]
        # 0: saved before fingerprints were kept; taken as these settings.
        if self[started] and saved in (0.0, key):
            self[fingerprint] = key
            return False
        if self[started]:
            warnings.warn(
                f"The model holds progress of a {self.owner} with other settings; "
                f"this {self.owner} starts its schedule over.",
                stacklevel=3,
            )
        self.reset()
        self[started] = 1
        self[fingerprint] = key
        return True

    def reset(self):
        values = self.model.training_state.numpy().copy()
        values[self.start : self.start + self.size] = 0.0
        self.model.training_state.assign(values)


class EpochProgress:
    """Tells the rerun of an interrupted epoch from a new epoch.

    `BackupAndRestore(save_freq=N)` also backs up in the middle of an epoch,
    and the resumed `fit` runs that epoch again from its first batch. A
    callback that counts epochs must then not count it twice. This keeps the
    batches begun in the current epoch and the epoch's length: a backup taken
    after batch `k` holds `k + 1` begun, whatever the order of the callbacks.
    """

    BEGUN, STEPS = range(2)

    def __init__(self, model, owner):
        self.state = CallbackState(model, f"{owner} epoch")

    @property
    def begun(self):
        """Batches begun in the current (or the interrupted) epoch."""
        return int(self.state[self.BEGUN])

    def epoch_begin(self, params):
        """Starts an epoch; True if it reruns one that was interrupted."""
        steps = self.state[self.STEPS]
        rerun = 0 < self.state[self.BEGUN] < steps
        self.state[self.STEPS] = (params or {}).get("steps") or 0
        self.state[self.BEGUN] = 0
        return bool(rerun)

    def batch_begin(self, batch):
        self.state[self.BEGUN] = batch + 1

    def epoch_end(self):
        # An epoch that `stop_training` cut short is over all the same.
        self.state[self.BEGUN] = self.state[self.STEPS]


def require_dynamic_model(model, owner):
    """Raises a clear error unless `model` is a zoo model (`zoo.RatioModel`)."""
    from zoo.ratio_model import RatioModel

    if not isinstance(model, RatioModel):
        raise ValueError(
            f"{owner} needs a zoo.DynamicModel (built with zoo.build); got {type(model).__name__}."
        )


def settings_fingerprint(settings):
    """A nonzero integer below 2**24 (exact in float32) that identifies `settings`."""
    return float(zlib.crc32(repr(settings).encode()) % (2**24 - 1) + 1)


def format_ratio(ratio):
    """The ratio as it appears in log keys: `val_accuracy@0.25`."""
    return str(float(ratio))

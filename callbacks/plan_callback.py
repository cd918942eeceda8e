"""The base of the callbacks that set a dynamic model's training plan."""

import keras
import numpy as np

from callbacks.state import CallbackState, EpochProgress


class PlanCallback(keras.callbacks.Callback):
    """A callback that sets a `zoo.DynamicModel`'s training plan as it goes.

    As training begins it opens its window of `model.training_state`
    (`self.state`, where its progress survives `BackupAndRestore`) and its
    epoch progress (`self.progress`); as training ends it puts back the
    default plan, ratio 1.0 alone, so that a later `fit` without it trains
    plainly. Each of `ProfileScheduler`, `SubnetSampler` and
    `TaskwiseEarlyStopping` names its window (`state_window`, a key of
    `callbacks.state.WINDOWS`), so a subclass of one keeps it; overrides of
    `on_train_begin` and `on_train_end` call `super()`.

    Args:
        seed: seed of the callback's random draws (`step_rng`).

    Example:
    >>> class WidestAndNarrowest(callbacks.SubnetSampler):  # keeps the sampler's window
    ...     def sample(self, step):
    ...         return [self.high, self.low]
    """

    state_window = None

    def __init__(self, seed=0):
        super().__init__()
        self.seed = int(seed)

    def step_rng(self, step):
        """The generator of step `step`'s draws: resumable without saving its state."""
        return np.random.default_rng([self.seed, int(step)])

    def on_train_begin(self, logs=None):
        self.state = CallbackState(self.model, self.state_window)
        self.progress = EpochProgress(self.model, self.state_window)
        self.model.training_methods[type(self).__name__] = self.settings()

    def settings(self):
        """The callback's settings as flat `{name: number or text}`, recorded
        in TensorBoard's HParams by `OperatingPointLogger`."""
        settings = {}
        for name, value in vars(self).items():
            if name.startswith("_") or name in ("model", "params", "state", "progress"):
                continue
            if isinstance(value, (bool, int, float, str)):
                settings[name] = value
            elif isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) for v in value
            ):
                settings[name] = ",".join(f"{float(v):g}" for v in value)
        return settings

    def on_train_end(self, logs=None):
        self.model.set_training_plan([1.0])

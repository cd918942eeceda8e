"""Learning-rate schedules the recipes train with."""

import keras


@keras.saving.register_keras_serializable(package="zoo")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak`, then linear decay to 0.

    With a warm-up of a few steps this is the "linear to zero" schedule;
    with a warm-up of a quarter or so of the steps, the learning-rate
    half of a one-cycle schedule.

    Args:
        peak: the learning rate at the end of the warm-up.
        warmup_steps: steps of the warm-up (0: start at `peak`).
        total_steps: the step at which the rate reaches 0.

    Example:
    >>> schedule = zoo.schedules.LinearWarmupDecay(0.1, warmup_steps=352, total_steps=10560)
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    """

    def __init__(self, peak, warmup_steps, total_steps):
        if not float(peak) > 0:
            raise ValueError(f"`peak` must be > 0; got {peak}.")
        if not 0 <= int(warmup_steps) < int(total_steps):
            raise ValueError(
                "Give 0 <= `warmup_steps` < `total_steps`; "
                f"got warmup_steps={warmup_steps}, total_steps={total_steps}."
            )
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = self.peak * (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        if self.warmup_steps:
            # The rise stays below the decay line until `warmup_steps` and
            # above it after, so the smaller of the two is the schedule.
            rate = keras.ops.minimum(self.peak * step / self.warmup_steps, rate)
        return keras.ops.clip(rate, 0.0, self.peak)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }

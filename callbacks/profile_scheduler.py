"""IDP's profile scheduling, random keep-ratio and a wide-to-narrow curriculum."""

import warnings

import numpy as np

from callbacks.plan_callback import PlanCallback
from zoo.ratio import check_ratio_list

# Window layout in `training_state` (see callbacks/state.py). EPOCH counts
# the epochs begun, so a backup taken at any epoch end holds the right count
# whatever the order of the callbacks.
EPOCH, STEP, STAGE, STARTED, FINGERPRINT = range(5)


class ProfileScheduler(PlanCallback):
    """Schedules the ratios a model trains at, in one of three ways.

    - **Profile scheduling** (`stages`, IDP): a list of `((low, high),
      epochs)`. A stage trains at ratio `high` for `epochs` epochs with the
      weight block used at ratio `low` frozen by gradient masking, so the
      sub-nets finished by earlier stages stay exactly as they were. Stages
      cover increasing, non-overlapping ranges, the first starting at 0.
      With a model built with `profile_boundaries` equal to the stages'
      boundaries, each stage also trains its own profile's first and last
      layers (IDP's multiple profiles); at inference the ratio picks the
      profile. Training stops after the last stage. When a stage starts the
      optimizer's momenta are reset, so that no momentum moves the frozen
      block (exact for SGD, Adam, RMSprop... without weight decay).
    - **Random keep-ratio** (`random_keep_ratio=scale`, IDP's VGG and
      MobileNet runs): every batch trains at `1 - X`, `X ~ Exponential(scale)`
      truncated to `X <= 1`, and no lower than `min_ratio`.
    - **Curriculum** (`curriculum=[1.0, 0.75, 0.5, ...]`, wide to narrow):
      stage `k` lasts `epochs_per_stage` epochs and trains every batch at a
      ratio drawn from the first `k + 1` entries, so narrower widths join
      one at a time. After the last stage it keeps drawing from all of them.

    Progress (epoch, step, stage) lives in the model's `training_state`, so
    a run resumed under `BackupAndRestore` goes on where it was.

    Args:
        stages: profile scheduling stages, `[((low, high), epochs), ...]`.
        random_keep_ratio: scale of `X` for the random keep-ratio.
        curriculum: ratios from wide to narrow.
        epochs_per_stage: epochs per curriculum stage.
        min_ratio: lowest ratio of the random keep-ratio.
        seed: seed of the random draws.
        verbose: print stage changes.

    Example:
    >>> model = zoo.build("mlp", profile_boundaries=(0.3,))
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> model.fit(x, y, epochs=100, callbacks=[
    ...     callbacks.ProfileScheduler(stages=[((0.0, 0.3), 10), ((0.3, 1.0), 10)])])
    """

    state_window = "ProfileScheduler"

    def __init__(
        self,
        stages=None,
        random_keep_ratio=None,
        curriculum=None,
        epochs_per_stage=1,
        min_ratio=0.05,
        seed=0,
        verbose=0,
    ):
        super().__init__(seed)
        given = [
            name
            for name, value in (
                ("stages", stages),
                ("random_keep_ratio", random_keep_ratio),
                ("curriculum", curriculum),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "Give exactly one of `stages`, `random_keep_ratio` and `curriculum`; "
                f"got {given or 'none'}."
            )
        self.mode = given[0]
        self.stages = check_stages(stages) if stages is not None else None
        if random_keep_ratio is not None and not float(random_keep_ratio) > 0:
            raise ValueError(
                f"`random_keep_ratio` (the scale of X) must be positive; got {random_keep_ratio}."
            )
        self.scale = None if random_keep_ratio is None else float(random_keep_ratio)
        self.curriculum = None
        if curriculum is not None:
            ratios = [float(r) for r in curriculum]
            check_ratio_list(ratios, "curriculum")
            if ratios != sorted(set(ratios), reverse=True):
                raise ValueError(
                    f"`curriculum` must go from wide to narrow without repeats; got {ratios}."
                )
            self.curriculum = ratios
        if int(epochs_per_stage) < 1:
            raise ValueError(f"`epochs_per_stage` must be at least 1; got {epochs_per_stage}.")
        self.epochs_per_stage = int(epochs_per_stage)
        if not 0.0 < float(min_ratio) <= 1.0:
            raise ValueError(f"`min_ratio` must be in (0, 1]; got {min_ratio}.")
        self.min_ratio = float(min_ratio)
        self.verbose = verbose

    # -- schedules ---------------------------------------------------------

    def stage_at(self, epoch):
        """Index of the stage that epoch `epoch` (0-based) trains in."""
        if self.mode == "stages":
            ends = np.cumsum([epochs for _, epochs in self.stages])
            return int(min(np.searchsorted(ends, epoch, side="right"), len(self.stages) - 1))
        if self.mode == "curriculum":
            return min(epoch // self.epochs_per_stage, len(self.curriculum) - 1)
        return 0

    @property
    def total_epochs(self):
        """Epochs of the whole schedule (`None` when it has no end)."""
        return sum(epochs for _, epochs in self.stages) if self.mode == "stages" else None

    def keep_ratio(self, step):
        """The random keep-ratio drawn for batch `step`."""
        rng = self.step_rng(step)
        x = rng.exponential(self.scale)
        while x > 1.0:
            x = rng.exponential(self.scale)
        return max(1.0 - x, self.min_ratio)

    def curriculum_ratio(self, stage, step):
        rng = self.step_rng(step)
        return float(rng.choice(self.curriculum[: stage + 1]))

    # -- callback ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.state.resume_or_reset(STARTED, FINGERPRINT, self._settings()):
            self.state[STAGE] = -1
        if self.mode == "stages":
            self._check_profiles_and_optimizer()

    def _check_profiles_and_optimizer(self):
        ends = [high for (_, high), _ in self.stages[:-1]]
        boundaries = list(self.model.profile_boundaries)
        if boundaries and boundaries != ends:
            raise ValueError(
                f"The model's profiles split the ratios at {boundaries}, but the stages end "
                f"at {ends}: give one stage per profile, ending at its boundary, so that "
                "every profile's own layers are trained."
            )
        if getattr(self.model.optimizer, "weight_decay", None):
            warnings.warn(
                "The optimizer's weight decay shrinks the frozen block too: the sub-nets "
                "of earlier stages will not stay exactly as they were. Use an optimizer "
                "without `weight_decay` for an exact freeze.",
                stacklevel=2,
            )

    def _settings(self):
        """What gives the saved epoch, step and stage their meaning."""
        return (
            self.mode,
            self.stages,
            self.scale,
            self.curriculum,
            self.epochs_per_stage,
            self.min_ratio,
            self.seed,
        )

    def on_epoch_begin(self, epoch, logs=None):
        # The epoch count is ours, not `epoch`: `BackupAndRestore` restores
        # it with the model, and a second `fit` continues the schedule.
        if self.progress.epoch_begin(self.params):
            self.epoch = int(self.state[EPOCH]) - 1  # the interrupted epoch, again
        else:
            self.epoch = int(self.state[EPOCH])
            self.state[EPOCH] = self.epoch + 1
        if self.mode == "stages":
            self._enter_stage(self.stage_at(self.epoch))

    def _enter_stage(self, stage):
        (low, high), _ = self.stages[stage]
        self.model.set_training_plan([high])
        if int(self.state[STAGE]) != stage:
            self.model.reset_optimizer_state()
            self.state[STAGE] = stage
            self._log(f"stage {stage}: training ratio {high}, frozen up to {low}")
        self.model.freeze_channels(low)

    def on_train_batch_begin(self, batch, logs=None):
        self.progress.batch_begin(batch)
        if self.mode == "stages":
            return
        step = self.state[STEP]
        if self.mode == "random_keep_ratio":
            ratio = self.keep_ratio(step)
        else:
            ratio = self.curriculum_ratio(self.stage_at(self.epoch), step)
        self.model.set_training_plan([ratio])
        self.state[STEP] = step + 1

    def on_epoch_end(self, epoch, logs=None):
        self.progress.epoch_end()
        if logs is not None and self.mode != "random_keep_ratio":
            logs["profile_stage"] = self.stage_at(self.epoch)
        if self.total_epochs is not None and self.epoch + 1 >= self.total_epochs:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.mode == "stages":
            self.model.freeze_channels(0.0)
        super().on_train_end(logs)

    def _log(self, message):
        if self.verbose:
            print(f"ProfileScheduler: {message}")


def check_stages(stages):
    """`[((low, high), epochs)]` as floats and ints, or a clear error."""
    stages = list(stages)
    if not stages:
        raise ValueError("`stages` is empty: give at least one ((low, high), epochs).")
    checked = []
    previous_high = 0.0
    for index, stage in enumerate(stages):
        try:
            (low, high), epochs = stage
            low, high, epochs = float(low), float(high), int(epochs)
        except (TypeError, ValueError):
            raise ValueError(
                f"Stage {index} must be ((low, high), epochs); got {stage!r}."
            ) from None
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(
                f"Stage {index}: the range must satisfy 0 <= low < high <= 1; got ({low}, {high})."
            )
        if index == 0 and low != 0.0:
            raise ValueError(f"The first stage must start at 0; got ({low}, {high}).")
        if low < previous_high:
            raise ValueError(
                f"Stage {index}'s range ({low}, {high}) overlaps the previous stage, "
                f"which ends at {previous_high}: ranges must not overlap."
            )
        if low > previous_high:
            raise ValueError(
                f"Stage {index}'s range ({low}, {high}) leaves a gap after the previous "
                f"stage, which ends at {previous_high}: each stage starts where the last ended."
            )
        if epochs < 1:
            raise ValueError(f"Stage {index} needs at least 1 epoch; got {epochs}.")
        checked.append(((low, high), epochs))
        previous_high = high
    return checked

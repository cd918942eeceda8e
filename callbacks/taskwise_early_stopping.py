"""TESLA: task-wise early stopping and loss aggregation."""

import numpy as np

from callbacks.plan_callback import PlanCallback
from zoo.evaluation import evaluate_ratios
from zoo.ratio import check_ratio_list

# Window layout in `training_state` (see callbacks/state.py).
TASK, BEST, WAIT, ROUND, STEP, STARTED, PHASE, PENDING, TASK_ROUNDS = range(9)
PER_TASK = 9  # random order: best at PER_TASK + k, wait at PER_TASK + MAX_TASKS + k
MAX_TASKS = 27
FINGERPRINT = PER_TASK + 2 * MAX_TASKS  # the window's last float


class TaskwiseEarlyStopping(PlanCallback):
    """Trains operating points as tasks, widest first, each until it stops improving.

    TESLA (Chang et al., 2018). Task `k` is the `k`-th ratio in descending
    order. Training on task `k` minimises the aggregated loss
    `A_k = alpha * A_{k-1} + (1 - alpha) * L_k` (with `A_0 = L_0`), so the
    earlier, wider tasks stay in the objective; no weight is frozen. After
    every round (an epoch, or `steps_per_round` batches) the validation
    accuracy at the current task's ratio is measured; after `patience`
    rounds without improvement the next task starts, and after the last
    task training stops. `max_rounds_per_task` caps the rounds a task may
    take, so that a run whose accuracy keeps creeping up (a decaying
    learning rate does that) still reaches its later tasks within its
    epoch budget.

    With `order="random"` (R-TESLA) each round draws a task from
    `distribution` and minimises its aggregated loss; a task that has not
    improved for `patience` of its own rounds is finished and no longer
    drawn, and training stops when all are.

    With `alternate_profile=True` (TESLA's ATP, for a model built with a
    trainable profile) rounds alternate between updating the weights
    (profile fixed) and updating the profile (weights fixed) at
    `profile_learning_rate_factor` times the learning rate; the profile's
    weight constraint projects it back to non-increasing after each update.

    Progress (task, best value, wait count, rounds) lives in the model's
    `training_state`, so `BackupAndRestore` resumes on the same task.

    Args:
        ratios: the tasks' ratios (sorted descending).
        validation_data: `(images, labels)` or a batched `tf.data.Dataset`.
        patience: rounds without improvement before moving on.
        alpha: aggregation coefficient in [0, 1).
        aggregation: `"exponential"` (the formula above) or `"sum"` (every
            reached task with weight 1, TESLA's CNN variant).
        order: `"descending"` (TESLA) or `"random"` (R-TESLA).
        distribution: probabilities of the tasks for `order="random"`, in
            the order of `ratios` (default uniform).
        steps_per_round: batches per round (default: one epoch).
        min_delta: smallest accuracy gain that counts as an improvement.
        max_rounds_per_task: with `order="descending"`, the next task starts
            after this many rounds even if the current one still improves
            (default: no cap).
        seed: seed of R-TESLA's draws.
        alternate_profile: alternate weight and profile rounds (ATP).
        profile_learning_rate_factor: learning-rate factor of profile rounds.
        verbose: print task switches.

    Example:
    >>> model.fit(x, y, epochs=100, callbacks=[
    ...     callbacks.TaskwiseEarlyStopping([1.0, 0.5, 0.25], validation_data=(xv, yv), patience=2)])
    """

    state_window = "TaskwiseEarlyStopping"

    def __init__(
        self,
        ratios,
        validation_data,
        patience=2,
        alpha=0.5,
        aggregation="exponential",
        order="descending",
        distribution=None,
        steps_per_round=None,
        min_delta=0.0,
        max_rounds_per_task=None,
        seed=0,
        alternate_profile=False,
        profile_learning_rate_factor=0.5,
        verbose=0,
    ):
        super().__init__(seed)
        self.ratios = check_ratio_list(ratios)
        _check_arguments(
            num_tasks=len(self.ratios),
            validation_data=validation_data,
            patience=patience,
            alpha=alpha,
            aggregation=aggregation,
            order=order,
            steps_per_round=steps_per_round,
            max_rounds_per_task=max_rounds_per_task,
            profile_learning_rate_factor=profile_learning_rate_factor,
        )
        self.validation_data = validation_data
        self.patience = int(patience)
        self.alpha = float(alpha)
        self.aggregation = aggregation
        self.order = order
        self.distribution = self._check_distribution(distribution, ratios)
        self.steps_per_round = steps_per_round
        self.min_delta = float(min_delta)
        self.max_rounds_per_task = None if max_rounds_per_task is None else int(max_rounds_per_task)
        self.alternate_profile = bool(alternate_profile)
        self.profile_learning_rate_factor = float(profile_learning_rate_factor)
        self.verbose = verbose

    def _check_distribution(self, distribution, given_ratios):
        """The probabilities in the order of `self.ratios` (sorted), from
        `distribution`, which follows the order the ratios were given in."""
        if distribution is None:
            return np.full(len(self.ratios), 1.0 / len(self.ratios))
        distribution = np.asarray(distribution, "float64")
        given_ratios = [float(r) for r in np.atleast_1d(given_ratios)]
        if (
            len(given_ratios) != len(self.ratios)
            or distribution.shape != (len(self.ratios),)
            or np.any(distribution < 0)
            or distribution.sum() <= 0
        ):
            raise ValueError(
                "`distribution` needs one non-negative probability per task, in the "
                f"order of `ratios` ({len(self.ratios)} distinct ratios); got {distribution.tolist()}."
            )
        by_ratio = dict(zip(given_ratios, distribution))
        ordered = np.array([by_ratio[r] for r in self.ratios])
        return ordered / ordered.sum()

    # -- loss aggregation --------------------------------------------------

    def task_weights(self, task):
        """Loss weights of tasks `0..task` in `A_task` (they sum to 1)."""
        if self.aggregation == "sum":
            return [1.0] * (task + 1)
        weights = [self.alpha**task]
        weights += [(1 - self.alpha) * self.alpha ** (task - j) for j in range(1, task + 1)]
        return weights

    def _set_plan(self, task):
        weights = self.task_weights(task)
        # The current task goes first: `fit` reports its metrics.
        order = [task] + list(range(task))
        self.model.set_training_plan([self.ratios[j] for j in order], [weights[j] for j in order])
        if self.alternate_profile:
            self.model.set_update_group("profile" if self.state[PHASE] else "weights")

    def _settings(self):
        """What gives the saved task, round and best values their meaning."""
        return (
            self.ratios,
            self.order,
            self.aggregation,
            self.alpha,
            [round(float(p), 6) for p in self.distribution],
            self.steps_per_round,
            self.seed,
            self.alternate_profile,
        )

    # -- rounds ------------------------------------------------------------

    @property
    def current_task(self):
        return int(self.state[TASK])

    @property
    def current_ratio(self):
        return self.ratios[min(self.current_task, len(self.ratios) - 1)]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.state.resume_or_reset(STARTED, FINGERPRINT, self._settings()):
            self.state[BEST] = -np.inf
            if self.order == "random":
                for k in range(len(self.ratios)):
                    self.state[PER_TASK + k] = -np.inf
                self.state[TASK] = self._draw()
        if self.alternate_profile:
            self.model.enable_profile_updates(self.profile_learning_rate_factor)
        self._set_plan(self.current_task)

    def on_epoch_begin(self, epoch, logs=None):
        # Again here: `BackupAndRestore` may have restored the state after
        # this callback's `on_train_begin` ran.
        rerun = self.progress.epoch_begin(self.params)
        if self.steps_per_round is None:
            if self.state[PENDING] and not rerun:
                # The backup was taken at an epoch end before this callback
                # closed that round: close it now, on the same weights. (A
                # backup in mid-epoch leaves the round open: it goes on over
                # the rerun of that epoch.)
                self._end_round()
            self.state[PENDING] = 1
        self._set_plan(self.current_task)

    def on_train_end(self, logs=None):
        if self.alternate_profile:
            self.model.set_update_group("all")
        super().on_train_end(logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.progress.batch_begin(batch)

    def on_train_batch_end(self, batch, logs=None):
        if self.steps_per_round is None:
            return
        self.state[STEP] = self.state[STEP] + 1
        if self.state[STEP] >= self.steps_per_round:
            self.state[STEP] = 0
            self._end_round()

    def on_epoch_end(self, epoch, logs=None):
        self.progress.epoch_end()
        if self.steps_per_round is None:
            self._end_round()
            self.state[PENDING] = 0
        if logs is not None:
            logs["tesla_task_ratio"] = self.current_ratio

    def _end_round(self):
        task = self.current_task
        accuracy = evaluate_ratios(self.model, self.validation_data, [self.ratios[task]])[
            self.ratios[task]
        ]
        self.state[ROUND] = self.state[ROUND] + 1
        if self.alternate_profile:
            self.state[PHASE] = 1 - self.state[PHASE]
        if self.order == "random":
            self._end_random_round(task, accuracy)
        else:
            self._end_descending_round(task, accuracy)
        if not self.model.stop_training:
            self._set_plan(self.current_task)

    def _improved(self, accuracy, best_index, wait_index):
        if accuracy > self.state[best_index] + self.min_delta:
            self.state[best_index] = accuracy
            self.state[wait_index] = 0
            return
        self.state[wait_index] = self.state[wait_index] + 1

    def _end_descending_round(self, task, accuracy):
        self._improved(accuracy, BEST, WAIT)
        self.state[TASK_ROUNDS] = self.state[TASK_ROUNDS] + 1
        capped = self.max_rounds_per_task and self.state[TASK_ROUNDS] >= self.max_rounds_per_task
        if self.state[WAIT] < self.patience and not capped:
            return
        reason = "round cap reached" if self.state[WAIT] < self.patience else "no improvement"
        self._log(
            f"task {task} (ratio {self.ratios[task]}) done ({reason}): best {self.state[BEST]:.4f}"
        )
        if task + 1 >= len(self.ratios):
            self.model.stop_training = True
            return
        self.state[TASK], self.state[BEST], self.state[WAIT] = task + 1, -np.inf, 0
        self.state[TASK_ROUNDS] = 0

    def _end_random_round(self, task, accuracy):
        self._improved(accuracy, PER_TASK + task, PER_TASK + MAX_TASKS + task)
        if not self._open_tasks():
            self.model.stop_training = True
            return
        self.state[TASK] = self._draw()

    def _open_tasks(self):
        return [
            k
            for k in range(len(self.ratios))
            if self.state[PER_TASK + MAX_TASKS + k] < self.patience
        ]

    def _draw(self):
        """Draws a task from (seed, round): resumable without saving an RNG."""
        open_tasks = self._open_tasks()
        p = self.distribution[open_tasks] / self.distribution[open_tasks].sum()
        rng = self.step_rng(self.state[ROUND])
        return int(rng.choice(open_tasks, p=p))

    def _log(self, message):
        if self.verbose:
            print(f"TaskwiseEarlyStopping: {message}")


def _check_arguments(
    *,
    num_tasks,
    validation_data,
    patience,
    alpha,
    aggregation,
    order,
    steps_per_round,
    max_rounds_per_task,
    profile_learning_rate_factor,
):
    """Raises a `ValueError` naming the first argument out of its range."""
    if num_tasks > MAX_TASKS:
        raise ValueError(f"At most {MAX_TASKS} tasks; got {num_tasks}.")
    if validation_data is None:
        raise ValueError("`validation_data` is required: rounds end by measuring it.")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"`alpha` must be in [0, 1); got {alpha}.")
    if aggregation not in ("exponential", "sum"):
        raise ValueError(f"`aggregation` must be 'exponential' or 'sum'; got {aggregation!r}.")
    if order not in ("descending", "random"):
        raise ValueError(f"`order` must be 'descending' or 'random'; got {order!r}.")
    if int(patience) < 1:
        raise ValueError(f"`patience` must be at least 1; got {patience}.")
    if steps_per_round is not None and int(steps_per_round) < 1:
        raise ValueError(f"`steps_per_round` must be at least 1; got {steps_per_round}.")
    if max_rounds_per_task is not None:
        if int(max_rounds_per_task) < 1:
            raise ValueError(
                f"`max_rounds_per_task` must be at least 1; got {max_rounds_per_task}."
            )
        if order != "descending":
            raise ValueError(
                "`max_rounds_per_task` applies to order='descending' only; "
                "with order='random' tasks end by `patience` alone."
            )
    if not float(profile_learning_rate_factor) > 0:
        raise ValueError(
            f"`profile_learning_rate_factor` must be positive; got {profile_learning_rate_factor}."
        )

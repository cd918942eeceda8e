"""The training step of a plan of ratios: `PlanTrainStep`."""

import keras
import tensorflow as tf


class PlanTrainStep:
    """Mixin of a `keras.Model` that trains every entry of `self.plan` in one step.

    Each step runs plan entry 0 (the teacher), then entries 1 and on, each
    with its own gradient tape whose gradients are summed; the optimizer
    applies the sum once, so under `tf.distribute` the gradients are reduced
    across replicas once per step whatever the plan's size. The entries are
    unrolled (the plan's `structure` is Python), since cross-replica
    reductions cannot run inside a graph loop or branch: one traced step
    per structure (`make_train_function`), reused when it comes back. Every term of the loss follows Keras's convention for replicas:
    scaled by `1 / num_replicas_in_sync`, so that summing the replicas'
    gradients gives the gradient of the global batch's loss:

    - entry `i`'s loss is `weight_i * ((1 - d) * compute_loss(...) + d * KD)`,
      where `compute_loss` is Keras's (the compiled loss and the model's
      `losses`), KD the cross-entropy from the teacher's detached soft output
      (`keras.losses.CategoricalCrossentropy`, scaled like the compiled loss),
      and `d` the plan's distillation (entry 0 is never distilled);
    - `plan_prediction` may add a penalty per entry (LC-Net's budget), which
      the model scales with `scale_for_replicas`.

    `fit` logs as `loss` the weighted sum over the plan, the same number on
    one device and on several; the other metrics are entry 0's.

    A model using this mixin provides `plan` (a `zoo.TrainingPlan`),
    `plan_prediction(x, index)` returning `(logits, penalty)`, and
    `weights_changed()`; it may override `apply_plan_gradients`.

    Example:
    >>> class MyModel(PlanTrainStep, keras.Model): ...
    """

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = training_images(x)
        variables = self.trainable_variables
        teacher = None
        gradients, total = None, 0.0
        for index in range(self.plan.structure.size):
            with tf.GradientTape() as tape:
                entry_loss, entry_prediction = self.plan_entry_loss(
                    index, x, y, sample_weight, teacher
                )
                scaled = self.optimizer.scale_loss(entry_loss)
            more = dense(tape.gradient(scaled, variables), variables)
            gradients = more if gradients is None else [g + m for g, m in zip(gradients, more)]
            total += entry_loss
            if index == 0:
                prediction = entry_prediction
                soft_labels = (
                    prediction if self.outputs_probabilities else tf.nn.softmax(prediction)
                )
                teacher = tf.stop_gradient(soft_labels)
        self.apply_plan_gradients(gradients, variables)
        self.weights_changed()
        loss_metric(self).update_state(unscale_for_replicas(total), sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, prediction, sample_weight=sample_weight)

    def plan_entry_loss(self, index, x, y, sample_weight, teacher=None):
        """The weighted loss of plan entry `index`, distilled from `teacher`'s
        soft output when given, and the entry's prediction."""
        prediction, penalty = self.plan_prediction(x, index)
        loss = self.compute_loss(x, y, prediction, sample_weight, training=True)
        if teacher is not None:
            distillation = tf.cast(self.plan.distillation, loss.dtype)
            distill = PROBABILITY_DISTILLATION if self.outputs_probabilities else DISTILLATION_LOSS
            soft = distill(teacher, prediction)
            loss = (1.0 - distillation) * loss + distillation * soft
        # The penalty (a compute budget) holds whatever the labels' weight.
        weight = tf.cast(self.plan.weights[index], loss.dtype)
        return weight * (loss + tf.cast(penalty, loss.dtype)), prediction

    # -- one traced step per plan structure -------------------------------------

    def training_step_key(self):
        """What the traced training step is built from (Python values):
        the plan's structure; subclasses add their own."""
        return self.plan.structure

    def make_train_function(self, force=False):
        """Keras's `make_train_function`, one per `training_step_key()`.

        Switching back to a structure traced before reuses its function.
        """
        functions = self._train_functions()
        key = self.training_step_key()
        if force:
            functions.clear()
        if key not in functions:
            super().make_train_function(force=True)
            functions[key] = self.train_function
        self.train_function = functions[key]
        return self.train_function

    def compile(self, *args, **kwargs):
        self._train_functions().clear()
        return super().compile(*args, **kwargs)

    def training_step_changed(self):
        """Switches to the training step of the current key, if training
        functions exist (called when the plan's structure changes)."""
        if self._train_functions():
            self.make_train_function()

    def _train_functions(self):
        functions = self.__dict__.get("_plan_train_functions")
        if functions is None:
            functions = {}
            object.__setattr__(self, "_plan_train_functions", functions)
        return functions

    def apply_plan_gradients(self, gradients, variables):
        """Applies a step's summed gradients (reduced across replicas by the optimizer)."""
        self.optimizer.apply_gradients(zip(gradients, variables))


DISTILLATION_LOSS = keras.losses.CategoricalCrossentropy(from_logits=True)
# For models whose outputs are already a softmax (converted Keras classifiers).
PROBABILITY_DISTILLATION = keras.losses.CategoricalCrossentropy()


def training_images(x):
    """The images of a training batch, refusing a ratio in the data."""
    if isinstance(x, dict):
        if "compute_ratio" in x:
            raise ValueError(
                "Training data must not carry `compute_ratio`: the training "
                "plan (`set_training_plan`, or a callback) sets the ratios."
            )
        x = x["images"]
    return x


def loss_metric(model):
    """The `keras.metrics.Mean` that `fit` logs as `loss`."""
    for metric in model.metrics:
        if metric.name == "loss":
            return metric
    raise ValueError(f"{model.name} has no `loss` metric: compile it with a loss first.")


def replicas():
    """Replicas training in sync (1 outside `tf.distribute`)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """`value / replicas`: a per-replica loss term whose gradients the
    optimizer sums across replicas (Keras's convention for losses)."""
    count = replicas()
    return value if count == 1 else value * (1.0 / count)


def unscale_for_replicas(value):
    count = replicas()
    return value if count == 1 else value * float(count)


def global_mean(values):
    """The mean of `values` over the global batch, on every replica alike."""
    count = replicas()
    context = tf.distribute.get_replica_context()
    if count == 1 or context is None:
        return tf.reduce_mean(values)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(values))
    size = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.size(values), values.dtype))
    return total / size


def dense(gradients, variables):
    """Gradients as dense tensors, zeros for variables that got none."""
    return [
        tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
        for g, v in zip(gradients, variables)
    ]

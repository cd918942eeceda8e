"""The ratios a training step trains at: `TrainingPlan`."""

import collections

import numpy as np
import tensorflow as tf

from zoo.ratio import check_ratio

MAX_PLAN_SIZE = 32
MAX_WIDTH_GROUPS = 256

# What the traced training step is built from: how many entries it runs and
# whether they are non-uniform sub-nets. Everything else is a variable.
Structure = collections.namedtuple("Structure", ["size", "nonuniform"])


class TrainingPlan:
    """What the next training steps train at, held in variables.

    A plan is up to `MAX_PLAN_SIZE` entries, each a ratio (or, for chain
    models, a ratio per width group) with a loss weight, and an in-place
    distillation weight: every entry after the first learns from the first
    entry's detached soft output. The plan lives in variables, so callbacks
    change it between batches without retracing the training step. Under a
    `tf.distribute` strategy the variables are mirrored: a callback sets the
    plan once, and every replica trains the same entries.

    Ratios, weights and distillation change without retracing. The plan's
    `structure` (its size and whether it is non-uniform) is Python: the
    training step runs that many entries one after another, with no loop or
    branch in the graph, since `tf.distribute`'s cross-replica reductions
    (synchronized batch norm, LC-Net's budget) cannot run inside one. A
    change of structure calls `on_structure_change`, with which the model
    switches to the training step of that structure (one per structure,
    traced once).

    The plan is not a weight of the model: a checkpoint never brings back a
    callback's plan after `fit` has restored the default (ratio 1.0 alone).

    Args:
        num_width_groups: the model's width groups (0: uniform ratios only).
        on_structure_change: called with no argument after `set` changes
            the structure.

    Example:
    >>> plan = TrainingPlan()
    >>> plan.set([1.0, 0.5, 0.25], distillation=1.0)
    >>> plan.as_dict()
    {'ratios': [1.0, 0.5, 0.25], 'weights': [1.0, 1.0, 1.0], 'distillation': 1.0}
    """

    def __init__(self, num_width_groups=0, on_structure_change=None):
        self.num_width_groups = int(num_width_groups)
        self.on_structure_change = on_structure_change
        self.structure = Structure(size=1, nonuniform=False)
        self.ratios = replica_variable("plan_ratios", np.ones(MAX_PLAN_SIZE, "float32"))
        self.weights = replica_variable(
            "plan_weights", np.eye(1, MAX_PLAN_SIZE, dtype="float32")[0]
        )
        self.distillation = replica_variable("plan_distillation", np.float32(0.0))
        self.layer_ratios = replica_variable(
            "plan_layer_ratios", np.ones((MAX_PLAN_SIZE, MAX_WIDTH_GROUPS), "float32")
        )

    def set(self, ratios, weights=None, distillation=0.0, layer_ratios=None):
        """Sets the plan; see `DynamicModel.set_training_plan`."""
        ratios = _ratio_list(ratios)
        weights = _weight_list(weights, len(ratios))
        distillation = _distillation(distillation)
        if layer_ratios is not None:
            layer_ratios = self._padded_layer_ratios(layer_ratios, len(ratios))
        pad = MAX_PLAN_SIZE - len(ratios)
        self.ratios.assign(np.array(ratios + [1.0] * pad, "float32"))
        self.weights.assign(np.array(weights + [0.0] * pad, "float32"))
        self.distillation.assign(distillation)
        if layer_ratios is not None:
            self.layer_ratios.assign(layer_ratios)
        structure = Structure(size=len(ratios), nonuniform=layer_ratios is not None)
        if structure != self.structure:
            self.structure = structure
            if self.on_structure_change is not None:
                self.on_structure_change()

    def reset(self):
        """Back to the default: ratio 1.0 alone, no distillation."""
        self.set([1.0])

    def entry_layer_ratios(self, index):
        """Entry `index`'s ratio per width group (chain models)."""
        return self.layer_ratios[index, : self.num_width_groups]

    def as_dict(self):
        """The current plan as `{"ratios", "weights", "distillation"}` (and
        `"layer_ratios"` for a non-uniform plan)."""
        size = self.structure.size
        plan = {
            "ratios": [float(r) for r in self.ratios.numpy()[:size]],
            "weights": [float(w) for w in self.weights.numpy()[:size]],
            "distillation": float(self.distillation.numpy()),
        }
        if self.structure.nonuniform:
            layer_ratios = self.layer_ratios.numpy()[:size, : self.num_width_groups]
            plan["layer_ratios"] = layer_ratios.tolist()
        return plan

    def _padded_layer_ratios(self, layer_ratios, count):
        groups = self.num_width_groups
        if not groups:
            raise ValueError("This model is not a chain of layers: it has no width groups.")
        layer_ratios = np.asarray(layer_ratios, "float32")
        if layer_ratios.shape != (count, groups):
            raise ValueError(
                f"`layer_ratios` needs shape ({count}, {groups}): one ratio per width "
                f"group for each plan entry; got {layer_ratios.shape}."
            )
        check_ratio(layer_ratios, "layer_ratios")
        padded = np.ones((MAX_PLAN_SIZE, MAX_WIDTH_GROUPS), "float32")
        padded[:count, :groups] = layer_ratios
        return padded


def replica_variable(name, value):
    """A variable every replica reads and the first one writes: the plan,
    which callbacks set between steps, and counters of the model's own."""
    return tf.Variable(
        value,
        trainable=False,
        name=name,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def _ratio_list(ratios):
    if isinstance(ratios, str):
        raise ValueError(f"`ratios` takes numbers in (0, 1]; got the string {ratios!r}.")
    ratios = [float(r) for r in np.atleast_1d(ratios)]
    if not ratios or len(ratios) > MAX_PLAN_SIZE:
        raise ValueError(f"A training plan holds 1 to {MAX_PLAN_SIZE} ratios; got {len(ratios)}.")
    check_ratio(ratios, "ratios")
    return ratios


def _weight_list(weights, count):
    weights = [1.0] * count if weights is None else [float(w) for w in np.atleast_1d(weights)]
    if len(weights) != count:
        raise ValueError(f"Give one weight per ratio: {count} ratios, {len(weights)} weights.")
    if not all(np.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"Loss weights must be finite numbers >= 0; got {weights}.")
    return weights


def _distillation(distillation):
    distillation = float(distillation)
    if not 0.0 <= distillation <= 1.0:
        raise ValueError(f"`distillation` must be in [0, 1]; got {distillation}.")
    return distillation

"""LC-Net on ResNet-20: per-input block skipping and channel gating under a budget."""

import math
import re
import warnings

import keras
import numpy as np
import tensorflow as tf

from zoo.layers.block_gate import BlockGate, gate_cost
from zoo.layers.budget_batch_normalization import BudgetBatchNormalization
from zoo.models.preprocessing import image_normalization
from zoo.plan_train_step import global_mean, scale_for_replicas
from zoo.ratio import validated_ratio
from zoo.ratio_model import RatioModel


@keras.saving.register_keras_serializable(package="zoo")
class LCNetResNet20(RatioModel):
    """ResNet-20 whose gates choose, per input, the blocks and channels to run.

    Each residual block has a `BlockGate` reading its input's channel means
    and the input's `compute_ratio`, now a budget: the target fraction of
    the backbone's multiply-adds. The L-Net head decides whether the block
    runs (a skipped block passes its input through, subsampled and
    zero-padded where the stage changes), the C-Net head which of the
    block's inner channels are computed, with a learned scale on the kept
    ones. At budget 1 every gate is open and the model is the backbone.

    Training (`fit`, with budgets from the training plan, e.g.
    `callbacks.SubnetSampler`) relaxes the decisions with a straight-through
    estimator: the forward pass uses hard 0/1 gates, the backward pass the
    sigmoid's gradient. The loss adds `budget_weight * (mean spent -
    budget)^2` per planned budget. What a layer sees depends on the budget,
    so batch norm keeps statistics per operating point
    (`BudgetBatchNormalization`). After training, `calibrate_budget` sets,
    from training images, a small shift of the budget the gates read at
    each operating point, so that the mean spent fraction meets it; as the
    shift changes what batch norm sees, calibrate the two in turn
    (`zoo.recipes.calibrate_gates_after_training`).

    At inference nothing skipped is computed: a block runs on the inputs
    that need it (gathered), and its convolutions on the union of their
    kept channels (sliced kernels); for one input that is exactly its own
    channels. `cost` (with `data`), `cost_per_input` and `decisions` report
    what each input ran.

    Args:
        blocks_per_stage: 3 gives ResNet-20.
        input_shape: shape of one image.
        num_classes: number of classes.
        budget_weight: weight of the budget penalty.
        gate_hidden: hidden width of each block's gate.
        channel_gating: `"subset"` (each inner channel gated on its own) or
            `"prefix"` (a width per block, keeping its first channels).
        max_skips_per_stage: at most this many blocks of a stage skipped
            per input (a gate that would skip one more is overruled and its
            block runs), or `None` for no cap. At low budgets uncapped gates
            learn to skip whole stages, which costs more accuracy than
            thinner blocks.
        block_skip_charge: the fraction of a skipped block's multiply-adds
            that the budget penalty still charges, from 0 (what is really
            spent, the default) to 1 (a skip saves nothing). Above 0 the
            gates meet the budget with thinner blocks before skipping whole
            ones; the cost reported and calibrated is always what is spent.
        synchronized_batch_norm: batch statistics over the global batch
            under `tf.distribute` (see `zoo.DynamicModel`).
        name: the model's name, `"lcnet_resnet20"` unless given.
        **kwargs: `zoo.RatioModel` arguments (`operating_points`).

    Example:
    >>> model = zoo.build("lcnet_resnet20", num_classes=10)
    >>> logits = model({"images": x, "compute_ratio": 0.5})
    >>> zoo.cost(model, compute_ratio=0.5, data=x)["flops"]
    """

    def __init__(
        self,
        blocks_per_stage=3,
        input_shape=(32, 32, 3),
        num_classes=10,
        budget_weight=10.0,
        gate_hidden=16,
        channel_gating="subset",
        max_skips_per_stage=None,
        block_skip_charge=0.0,
        synchronized_batch_norm=False,
        name="lcnet_resnet20",
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, num_classes=num_classes, name=name, **kwargs)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.blocks_per_stage = int(blocks_per_stage)
        self.budget_weight = float(budget_weight)
        self.gate_hidden = int(gate_hidden)
        self.channel_gating = channel_gating
        self.max_skips_per_stage = _skip_cap(max_skips_per_stage, self.blocks_per_stage)
        self.block_skip_charge = _skip_charge(block_skip_charge)
        self.normalize = image_normalization(self.image_shape[-1])
        self.stem_conv = keras.layers.Conv2D(
            16, 3, padding="same", use_bias=False, name="stem_conv"
        )
        self.stem_bn = self._batch_norm("stem_bn")
        self.blocks = self._residual_blocks()
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")
        self.budget_offsets = self.add_weight(
            name="budget_offsets",
            shape=(len(self.operating_points),),
            initializer="zeros",
            trainable=False,
        )
        self.fixed_cost = self._fixed_cost()
        self.backbone_cost = self.fixed_cost + sum(
            b["channel_cost"] * b["channels"] for b in self.blocks
        )
        self.build()

    def _residual_blocks(self):
        """Each block's layers, gate, shape and cost per kept inner channel."""
        blocks = []
        height, width = self.image_shape[:2]
        channels_in = 16
        for stage, filters in enumerate((16, 32, 64)):
            for index in range(self.blocks_per_stage):
                strides = 2 if stage > 0 and index == 0 else 1
                height, width = -(-height // strides), -(-width // strides)
                blocks.append(
                    self._residual_block(
                        f"stage{stage}_block{index}", channels_in, filters, strides
                    )
                )
                # Multiply-adds per kept inner channel: its filter in conv1, its input slice in conv2.
                blocks[-1]["channel_cost"] = height * width * 9 * (channels_in + filters)
                channels_in = filters
        return blocks

    def _residual_block(self, name, channels_in, filters, strides):
        return {
            "conv1": keras.layers.Conv2D(
                filters, 3, strides, "same", use_bias=False, name=f"{name}_conv1"
            ),
            "bn1": self._batch_norm(f"{name}_bn1"),
            "conv2": keras.layers.Conv2D(
                filters, 3, 1, "same", use_bias=False, name=f"{name}_conv2"
            ),
            "bn2": self._batch_norm(f"{name}_bn2"),
            "gate": BlockGate(
                filters,
                hidden=self.gate_hidden,
                channel_gating=self.channel_gating,
                name=f"{name}_gate",
            ),
            "strides": strides,
            "channels_in": channels_in,
            "channels": filters,
        }

    def _fixed_cost(self):
        """Multiply-adds that run whatever the gates decide: stem, classifier, gates."""
        gates = sum(
            gate_cost(b["channels_in"], self.gate_hidden, b["channels"], self.channel_gating)
            for b in self.blocks
        )
        stem = math.prod(self.image_shape[:2]) * 9 * self.image_shape[-1] * 16
        return stem + 64 * self.classifier.units + gates

    def build(self, input_shape=None):
        if self.built:
            return
        # One training-style pass creates every weight (all blocks run).
        self.soft_forward(tf.zeros((1,) + self.image_shape), tf.ones([1]), training=False)
        self.built = True

    # -- the network -------------------------------------------------------------

    def call(self, inputs, compute_ratio=None, training=None):
        images, budget = self._budget_inputs(inputs, compute_ratio)
        if training:
            return self.soft_forward(images, budget)[0]
        return self.hard_forward(images, budget)[0]

    def _budget_inputs(self, inputs, compute_ratio):
        images, ratio = self._split_inputs(inputs, compute_ratio)
        batch = tf.shape(images)[:1]
        if ratio is None:
            return images, tf.ones(batch)
        ratio = validated_ratio(ratio)
        return images, ratio * tf.ones(batch) if ratio.shape.rank == 0 else ratio

    def _offset(self, budget):
        """The calibrated budget shift at each budget (linear between points)."""
        points = tf.constant(self.operating_points, "float32")
        if len(self.operating_points) == 1:
            return tf.zeros_like(budget) + self.budget_offsets[0]
        upper = tf.clip_by_value(tf.searchsorted(points, budget), 1, len(self.operating_points) - 1)
        low, high = tf.gather(points, upper - 1), tf.gather(points, upper)
        weight = tf.clip_by_value((budget - low) / (high - low), 0.0, 1.0)
        offsets = tf.cast(self.budget_offsets, budget.dtype)
        return (1.0 - weight) * tf.gather(offsets, upper - 1) + weight * tf.gather(offsets, upper)

    def _batch_norm(self, name):
        return BudgetBatchNormalization(
            self.operating_points, synchronized=self.synchronized_batch_norm, name=name
        )

    def _stem(self, images, point, training):
        x = self.normalize(images)
        return tf.nn.relu(self.stem_bn(self.stem_conv(x), point, training=training))

    @staticmethod
    def _shortcut(x, block):
        if block["strides"] != 1:
            x = x[:, :: block["strides"], :: block["strides"], :]
        extra = block["channels"] - block["channels_in"]
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]]) if extra else x

    def gate_budget(self, budget):
        """The budget the gates read at `budget` (a number or an array of
        them): shifted by the calibration (`calibrate_budget`), linearly
        between operating points, so that the mean spent fraction meets it.

        Example:
        >>> zoo.recipes.calibrate_gates_after_training(model, (x_train, y_train), {}, x_train[:5000])
        >>> float(model.gate_budget(0.25))  # 0.227, say: the gates overspend a little
        """
        # The calibrated shift runs the gates as at a nearby budget, a
        # behaviour they learned; shifting their logits instead costs accuracy.
        budget = tf.convert_to_tensor(budget, "float32")
        flat = tf.reshape(budget, [-1])
        shifted = tf.clip_by_value(flat + self._offset(flat), 0.01, 1.0)
        return tf.reshape(shifted, tf.shape(budget))

    @staticmethod
    def _gates(block, x, gate_budget):
        return block["gate"](tf.reduce_mean(x, axis=[1, 2]), gate_budget)

    def soft_forward(self, images, budget, training=True):
        """Training pass: `(logits, spent, skipped)`, every block computed,
        hard gates in the forward direction and sigmoid gradients backward;
        `spent` is each input's fraction of the backbone's multiply-adds,
        `skipped` the fraction its skipped blocks would have cost with all
        their channels."""
        full = budget >= 1.0
        point = self.stem_bn.point_index(budget)
        x = self._stem(images, point, training)
        spent = tf.fill(tf.shape(budget), tf.constant(self.fixed_cost, x.dtype))
        skipped_cost = tf.zeros_like(spent)
        gate_budget = self.gate_budget(budget)
        skipped = None
        for index, block in enumerate(self.blocks):
            logit, channel_logits, scale = self._gates(block, x, gate_budget)
            skipped = self._stage_skips(index, skipped, logit)
            run = tf.where(
                full | self._skip_capped(skipped), tf.ones_like(logit), _straight_through(logit)
            )
            skipped += 1.0 - tf.stop_gradient(run)
            keep = tf.where(
                full[:, tf.newaxis], tf.ones_like(channel_logits), _straight_through(channel_logits)
            )
            y = tf.nn.relu(block["bn1"](block["conv1"](x), point, training=training))
            y = y * (keep * scale)[:, tf.newaxis, tf.newaxis, :]
            y = block["bn2"](block["conv2"](y), point, training=training)
            x = tf.nn.relu(
                self._shortcut(x, block) + run[:, tf.newaxis, tf.newaxis, tf.newaxis] * y
            )
            spent += run * tf.reduce_sum(keep, axis=-1) * float(block["channel_cost"])
            skipped_cost += (1.0 - run) * float(block["channels"] * block["channel_cost"])
        backbone = float(self.backbone_cost)
        return self.classifier(self.pool(x)), spent / backbone, skipped_cost / backbone

    def hard_forward(self, images, budget, return_decisions=False):
        """Inference pass: `(logits, spent)` (and each block's decisions),
        computing only the blocks and channels the gates keep."""
        full = budget >= 1.0
        point = self.stem_bn.point_index(budget)
        x = self._stem(images, point, False)
        spent = tf.fill(tf.shape(budget), float(self.fixed_cost))
        gate_budget = self.gate_budget(budget)
        decisions = []
        skipped = None
        for index, block in enumerate(self.blocks):
            logit, channel_logits, scale = self._gates(block, x, gate_budget)
            skipped = self._stage_skips(index, skipped, logit)
            run = (logit > 0.0) | full | self._skip_capped(skipped)
            skipped += 1.0 - tf.cast(run, skipped.dtype)
            keep = (channel_logits > 0.0) | full[:, tf.newaxis]
            x = self._run_block(block, x, run, keep, scale, point)
            kept = tf.reduce_sum(tf.cast(keep, "float32"), axis=-1)
            spent += tf.cast(run, "float32") * kept * float(block["channel_cost"])
            decisions.append({"run": run, "channels": keep & run[:, tf.newaxis]})
        outputs = (self.classifier(self.pool(x)), spent / float(self.backbone_cost))
        return outputs + (decisions,) if return_decisions else outputs

    def _stage_skips(self, index, skipped, logit):
        """Each input's blocks skipped so far in block `index`'s stage."""
        return tf.zeros_like(logit) if index % self.blocks_per_stage == 0 else skipped

    def _skip_capped(self, skipped):
        """Whether each input has skipped all the blocks its stage allows."""
        if self.max_skips_per_stage is None:
            return tf.zeros_like(skipped, "bool")
        return skipped >= self.max_skips_per_stage

    def _run_block(self, block, x, run, keep, scale, point):
        shortcut = self._shortcut(x, block)
        index = tf.where(run)[:, 0]

        def compute():
            chosen = [tf.gather(t, index) for t in (x, keep, scale, point)]
            residual = self._block_residual(block, *chosen)
            updated = tf.nn.relu(tf.gather(shortcut, index) + residual)
            return tf.tensor_scatter_nd_update(shortcut, index[:, tf.newaxis], updated)

        return tf.cond(tf.size(index) > 0, compute, lambda: shortcut)

    def _block_residual(self, block, x, keep, scale, point):
        """The block's residual branch for the inputs that run it, on the
        union of their kept channels only."""
        channels = tf.where(tf.reduce_any(keep, axis=0))[:, 0]
        bn2 = block["bn2"]
        strides = block["strides"]

        def compute():
            kernel = tf.gather(block["conv1"].kernel, channels, axis=3)
            y = tf.nn.conv2d(x, kernel, strides, "SAME")
            y = tf.nn.relu(block["bn1"](y, point, channels=channels))
            # Within the union, an input's own dropped channels are zero.
            chosen = tf.gather(tf.cast(keep, y.dtype) * scale, channels, axis=1)
            y = y * chosen[:, tf.newaxis, tf.newaxis, :]
            y = tf.nn.conv2d(y, tf.gather(block["conv2"].kernel, channels, axis=2), 1, "SAME")
            return bn2(y, point)

        def nothing():
            shape = tf.concat([tf.shape(x)[:1], tf.shape(self._shortcut(x, block))[1:]], axis=0)
            return bn2(tf.zeros(shape), point)

        return tf.cond(tf.size(channels) > 0, compute, nothing)

    # -- training --------------------------------------------------------------

    def load_backbone(self, resnet):
        """Starts the backbone from a trained uniform-width `ResNet20`.

        Copies its convolutions, batch-norm scales and classifier, with the
        batch-norm statistics of its full width at every budget; the gates
        keep their initial (open) state. Fine-tuning then trains the gates
        and adapts the backbone, far cheaper than training both from scratch.

        Args:
            resnet: a `zoo.models.ResNet20` with the same `blocks_per_stage`
                and classes, e.g. `zoo.load("resnet20_cifar10", pretrained=True)`.
        """
        source = {v.path.split("/", 1)[1]: v for v in resnet.weights}
        missing = []
        for variable in self.weights:
            path = variable.path.split("/", 1)[1]
            if "_gate/" in path or "/" not in path:
                continue
            name = re.sub(r"_(conv|bn)(\d)/", r"_\2_\1/", path)
            if name not in source or source[name].shape[-1] != variable.shape[-1]:
                missing.append(path)
                continue
            value = keras.ops.convert_to_numpy(source[name])
            if "moving_" in path:  # the full width's statistics, for every budget
                value = value[int(np.argmax(resnet.operating_points))] if value.ndim == 2 else value
                value = np.broadcast_to(value, variable.shape)
            variable.assign(value)
        self.weights_changed()
        if missing:
            raise ValueError(
                f"`load_backbone` expects a uniform-width ResNet-20 like this model "
                f"({self.blocks_per_stage} blocks per stage, {self.num_classes} classes); "
                f"{resnet.name!r} has no match for {missing[:3]}."
            )

    def plan_prediction(self, x, index):
        """The training prediction at plan entry `index` (a budget) and the
        budget penalty on the global batch's mean charged fraction (spent,
        plus `block_skip_charge` of what skipped blocks would have cost)."""
        target = self.plan.ratios[index]
        images = tf.cast(x, self.compute_dtype)
        logits, spent, skipped = self.soft_forward(images, target * tf.ones(tf.shape(x)[:1]))
        if self.block_skip_charge:
            spent += self.block_skip_charge * skipped
        penalty = self.budget_weight * tf.square(global_mean(spent) - tf.cast(target, spent.dtype))
        return logits, scale_for_replicas(penalty)

    def calibrate_budget(self, images, batch_size=250, tolerance=0.005, steps=30):
        """Sets the budget shift of each operating point (the budget its
        gates read is `point + shift`) so that the mean spent fraction over
        `images` meets it (within `tolerance`, by bisection); returns
        `{point: mean spent}`. Warns of an operating point the gates cannot
        meet at any shift: its cost is then the one returned, not its name."""
        offsets = self.budget_offsets.numpy()
        achieved = {}
        for i, point in enumerate(self.operating_points):
            if point >= 1.0:
                offsets[i] = 0.0
                achieved[point] = 1.0
                continue
            low, high = -1.0, 1.0  # the gates read budgets clipped to [0.01, 1]
            for _ in range(steps):
                offsets[i] = (low + high) / 2
                self.budget_offsets.assign(offsets)
                mean = self._mean_spent(images, point, batch_size)
                if abs(mean - point) <= tolerance:
                    break
                low, high = (offsets[i], high) if mean < point else (low, offsets[i])
            achieved[point] = mean
            if abs(mean - point) > tolerance:
                warn_unmet_budget(point, mean, tolerance)
        return achieved

    def _mean_spent(self, images, budget, batch_size):
        return float(np.mean(self.cost_per_input(images, budget, batch_size) / self.backbone_cost))

    # -- cost and decisions ----------------------------------------------------

    cost_depends_on_data = True

    def cost(self, compute_ratio=1.0, data=None, **kwargs):
        """The mean multiply-adds over the images `data` at budget
        `compute_ratio`, with each input's (`"per_input"`) and the
        backbone's (`"backbone_flops"`)."""
        if data is None:
            raise ValueError(
                f"{self.name} spends a different cost on each input: pass the inputs as `data=`."
            )
        if len(data) == 0:
            raise ValueError("`data` holds no images: give at least one to average the cost over.")
        per_input = self.cost_per_input(data, float(compute_ratio))
        return {
            "flops": float(per_input.mean()),
            "per_input": per_input,
            "backbone_flops": self.backbone_cost,
        }

    def cost_per_input(self, images, compute_ratio, batch_size=250):
        """Multiply-adds each input spends at `compute_ratio` (gates included)."""
        spent = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(np.asarray(images[start : start + batch_size], "float32"))
            budget = self._budget_inputs(batch, compute_ratio)[1]
            spent.append(self.hard_forward(batch, budget)[1].numpy())
        return np.concatenate(spent) * self.backbone_cost

    def decisions(self, images, compute_ratio):
        """Per block: `{"name", "run": [N] bool, "channels": [N, C] bool}`."""
        images = tf.constant(np.asarray(images, "float32"))
        budget = self._budget_inputs(images, compute_ratio)[1]
        _, _, decided = self.hard_forward(images, budget, return_decisions=True)
        return [
            {
                "name": block["gate"].name[: -len("_gate")],
                "run": d["run"].numpy(),
                "channels": d["channels"].numpy(),
            }
            for block, d in zip(self.blocks, decided)
        ]

    def get_config(self):
        config = super().get_config()
        if self.synchronized_batch_norm:
            config["synchronized_batch_norm"] = True
        config.update(
            {
                "blocks_per_stage": self.blocks_per_stage,
                "budget_weight": self.budget_weight,
                "gate_hidden": self.gate_hidden,
                "channel_gating": self.channel_gating,
                "max_skips_per_stage": self.max_skips_per_stage,
                "block_skip_charge": self.block_skip_charge,
            }
        )
        return config


def _skip_cap(value, blocks_per_stage):
    if value is None:
        return None
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or not 0 <= value <= blocks_per_stage:
        raise ValueError(
            "max_skips_per_stage must be None (no cap) or a number of blocks from 0 "
            f"(every block runs) to {blocks_per_stage} (blocks_per_stage); received {value!r}."
        )
    return int(value)


def _skip_charge(value):
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not is_number or not 0.0 <= value <= 1.0:
        raise ValueError(
            "block_skip_charge must be a number from 0 (a skipped block is charged "
            f"nothing) to 1 (charged its whole cost); received {value!r}."
        )
    return float(value)


def _straight_through(logits):
    probability = tf.sigmoid(logits)
    hard = tf.cast(probability > 0.5, probability.dtype)
    return probability + tf.stop_gradient(hard - probability)


def warn_unmet_budget(point, mean, tolerance):
    """Says that calibration left operating point `point` spending `mean`."""
    side = "at most" if mean < point else "at least"
    warnings.warn(
        f"Operating point {point}: its gates spend {side} {mean:.3f} of the network on the "
        f"calibration images at any budget shift, so they cannot meet {point} within "
        f"{tolerance}; at this operating point the model costs {mean:.3f}, not {point}. "
        "Train the gates to reach it (a larger `budget_weight`, budgets up to it in the "
        "training plan) or leave the point out of `operating_points`.",
        stacklevel=3,
    )

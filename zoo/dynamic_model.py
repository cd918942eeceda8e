"""The base class of every zoo model: a `keras.Model` with a compute ratio."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from zoo import profiles as profiles_lib
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.layers.profile_branches import ProfileBranches
from zoo.optimizer_slots import optimizer_slots
from zoo.ratio import (
    RatioContext,
    check_boundaries,
    check_operating_points,
    check_ratio,
    validated_ratio,
)
from zoo.width_groups import assign_groups, width_groups

DEFAULT_OPERATING_POINTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_PLAN_SIZE = 32
MAX_WIDTH_GROUPS = 32
# Progress of training callbacks (current task, best value, sampler step...)
# lives in this many floats saved with the model; see `callbacks/`.
TRAINING_STATE_SIZE = 128
# Weights files saved before the plan stopped being a weight hold it as six.
LEGACY_PLAN_WEIGHTS = 6


class DynamicModel(keras.Model):
    """A model that runs at any compute ratio in (0, 1].

    Inputs are raw images (0 to 255), alone (ratio 1.0) or in a dict with a
    per-sample `compute_ratio` of shape `(batch,)`:

    ```python
    logits = model({"images": x, "compute_ratio": np.full((len(x),), 0.5, "float32")})
    logits = model(x)                      # compute_ratio 1.0
    logits = model(x, compute_ratio=0.5)   # one ratio for the whole batch
    ```

    A batch is computed at its widest ratio: every dynamic layer slices its
    weights and activations to that width, so a batch that shares one ratio
    pays only for that width. When samples ask for different ratios, each
    channel-mixing layer also restricts every sample to its own input
    channels, so each gets exactly the result it would get alone.

    **Training plan.** `fit` trains at a plan: up to `MAX_PLAN_SIZE` ratios,
    each with a loss weight, and an optional in-place distillation weight
    (the other ratios learn from the first ratio's detached soft output, as
    in slimmable networks). The plan lives in variables, so callbacks change
    it between batches without retracing the training step. Without a
    callback the plan is ratio 1.0 alone: plain IDP training. `fit`'s
    `loss` is what the step minimises, the weighted sum over the plan (so
    with three ratios it is about three times `val_loss`, which is at ratio
    1.0); its other metrics are those of the plan's first ratio.

    **Training state.** `training_state` is a vector of floats saved with
    the weights where training callbacks keep their progress, so that
    `BackupAndRestore` resumes them where they were.

    **No XLA.** Widths are data (a tensor), so every new width is a new
    shape; XLA would compile the step again for each one. These models
    therefore always compile with `jit_compile=False`.

    Subclasses create their layers in `__init__`, describe the network in
    `forward(images, apply)` (every layer call goes through `apply`, which is
    how the same description also yields the static sub-net) and then call
    `self.build()`.

    Args:
        input_shape: shape of one image, e.g. `(32, 32, 3)`.
        num_classes: number of classes (outputs are logits).
        operating_points: the ratios the model is trained, calibrated and
            evaluated at; batch norm keeps statistics for each.
        profile: IDP profile of every dynamic layer's input channels.
        width: multiplier of every layer's channel count.
        channel_multiple: round widths up to a multiple of this.
        profile_boundaries: IDP's multiple profiles: the upper ends of every
            ratio range but the last, e.g. `(0.3,)` for `(0, 0.3]` and
            `(0.3, 1]`. Each range gets its own first and last layers (see
            `ProfileBranches`); train them stage by stage with
            `callbacks.ProfileScheduler`. Default: one profile.
        **kwargs: standard `keras.Model` arguments (`name`).

    Example:
    >>> class TinyMLP(zoo.DynamicModel):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(input_shape=(8, 8, 1), num_classes=10, **kwargs)
    ...         self.flatten = keras.layers.Flatten()
    ...         self.hidden = zoo.layers.DynamicDense(32, activation="relu", cut_inputs=False)
    ...         self.classifier = zoo.layers.DynamicDense(10, cut_outputs=False)
    ...         self.build()
    ...     def forward(self, images, apply):
    ...         x = apply(self.hidden, apply(self.flatten, images))
    ...         return apply(self.classifier, x)
    >>> logits = TinyMLP()(np.zeros((2, 8, 8, 1)), compute_ratio=0.5)  # 16 hidden units
    """

    # Chain models (each layer reads the previous one's channels) also run
    # non-uniform sub-nets: a ratio per width group (`zoo.width_groups`).
    is_chain = False

    def __init__(
        self,
        input_shape,
        num_classes,
        operating_points=DEFAULT_OPERATING_POINTS,
        profile="uniform",
        width=1.0,
        channel_multiple=1,
        profile_boundaries=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.profile_boundaries = check_boundaries(profile_boundaries, "profile_boundaries")
        self.image_shape = tuple(int(d) for d in input_shape)
        self.num_classes = at_least_one(num_classes, "num_classes")
        self.operating_points = check_operating_points(operating_points)
        self.profile = profiles_lib.get(profile)
        if not float(width) > 0:
            raise ValueError(
                f"`width` multiplies every channel count: give a number > 0; got {width}."
            )
        self.width = float(width)
        self.channel_multiple = at_least_one(channel_multiple, "channel_multiple")
        # The plan is not a weight: a checkpoint taken mid-training, or
        # `EarlyStopping(restore_best_weights=True)`, would otherwise bring
        # back a callback's plan after `fit` has restored the default.
        self._untracked("_plan_ratios", np.ones(MAX_PLAN_SIZE, "float32"))
        self._untracked("_plan_weights", np.eye(1, MAX_PLAN_SIZE, dtype="float32")[0])
        self._untracked("_plan_size", np.int32(1))
        self._untracked("_plan_distillation", np.float32(0.0))
        self._untracked("_plan_layer_ratios", np.ones((MAX_PLAN_SIZE, MAX_WIDTH_GROUPS), "float32"))
        self._untracked("_plan_nonuniform", np.int32(0))
        self.num_width_groups = 0
        # Not a weight: bumped whenever weights change, so that layers'
        # inference caches of sliced kernels know when they are stale.
        self._untracked("_weights_version", np.int32(0))
        # Set by callbacks between batches (never saved: callbacks set them
        # again from `training_state` when training resumes).
        self._untracked("_frozen_ratio", np.float32(0.0))
        self._untracked("_update_group", np.int32(0))
        object.__setattr__(self, "_profile_optimizer", None)
        self.training_state = self.add_weight(
            name="training_state",
            shape=(TRAINING_STATE_SIZE,),
            initializer="zeros",
            trainable=False,
        )

    def _untracked(self, name, value):
        """A variable that is not one of the model's weights: never saved."""
        object.__setattr__(self, name, tf.Variable(value, trainable=False, name=name.lstrip("_")))

    # -- architecture helpers -------------------------------------------------

    def channels(self, count):
        """A layer's channel count at this model's width multiplier."""
        return max(1, int(round(count * self.width)))

    def dynamic_kwargs(self, **overrides):
        """Arguments every dynamic layer of this model shares."""
        kwargs = {"channel_multiple": self.channel_multiple, "profile": self.profile}
        kwargs.update(overrides)
        return kwargs

    def batch_norm(self, name):
        from zoo.layers import DynamicBatchNormalization

        return DynamicBatchNormalization(
            operating_points=self.operating_points,
            channel_multiple=self.channel_multiple,
            name=name,
        )

    def branched(self, make_layer, name):
        """`make_layer(name)`, or one copy per profile under `profile_boundaries`.

        Models build their first and last dynamic layers through this, so
        that IDP's multiple profiles each get their own.
        """
        if not self.profile_boundaries:
            return make_layer(name)
        copies = [make_layer(f"{name}_p{i}") for i in range(len(self.profile_boundaries) + 1)]
        return ProfileBranches(copies, self.profile_boundaries, name=name)

    def forward(self, images, apply):
        """The network, with every layer call written `apply(layer, x)`."""
        raise NotImplementedError

    def build(self, input_shape=None):
        if self.built:
            return
        # One pass at full width creates every weight at its full shape.
        self.call(np.zeros((1,) + self.image_shape, "float32"))
        self.built = True
        if self.is_chain:
            groups = width_groups(self)
            assign_groups(groups)
            self.num_width_groups = len(groups)

    # -- inference -------------------------------------------------------------

    def serving_signature(self):
        """The input of an exported model: `{"images": (batch, *image_shape),
        "compute_ratio": (batch,)}`, both float32, a ratio per image."""
        return {
            "images": keras.InputSpec(shape=(None, *self.image_shape), dtype="float32"),
            "compute_ratio": keras.InputSpec(shape=(None,), dtype="float32"),
        }

    def export(
        self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs
    ):
        """`keras.Model.export`, by default serving images and a ratio per image.

        Without `input_signature` the exported endpoint `serve` takes the
        dict of `serving_signature()`: the whole dynamic model, one
        function for every ratio. For one fixed ratio, export
        `zoo.extract_subnet(model, ratio)` instead: smaller and without any
        width arithmetic.

        Example:
        >>> model.export("resnet20_dynamic")
        >>> served = tf.saved_model.load("resnet20_dynamic")
        >>> served.serve({"images": x, "compute_ratio": tf.fill([len(x)], 0.5)})
        """
        if input_signature is None:
            input_signature = [self.serving_signature()]
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    def __call__(self, inputs, *args, **kwargs):
        # Keras takes only tensors inside positional inputs: a plain number
        # as the dict's ratio becomes a 0-d array.
        if isinstance(inputs, dict) and isinstance(inputs.get("compute_ratio"), (int, float)):
            check_ratio(inputs["compute_ratio"])
            inputs = dict(inputs, compute_ratio=np.asarray(inputs["compute_ratio"], "float32"))
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, compute_ratio=None, training=None, layer_ratios=None):
        if layer_ratios is not None:
            if compute_ratio is not None or isinstance(inputs, dict):
                raise ValueError("Give either `layer_ratios` or `compute_ratio`, not both.")
            images = self._check_images(inputs)
            return self._run(images, self._group_context(layer_ratios))
        images, ratio = self._split_inputs(inputs, compute_ratio)
        if ratio is None:
            return self._run(images, RatioContext.from_value(1.0))
        ratio = validated_ratio(ratio)
        if ratio.shape.rank == 0:
            return self._run(images, RatioContext(ratio))
        widest = tf.reduce_max(ratio)
        return tf.cond(
            tf.equal(tf.reduce_min(ratio), widest),
            lambda: self._run(images, RatioContext(widest)),
            lambda: self._run(images, RatioContext(widest, ratio)),
        )

    def _run(self, images, context):
        # `training` reaches the layers through Keras's call context.
        context.weights_version = self._weights_version

        def apply(layer, x):
            if isinstance(layer, DynamicLayer):
                return layer(x, compute_ratio=context)
            return layer(x)

        return self.forward(images, apply)

    def _group_context(self, layer_ratios):
        """A context for a non-uniform sub-net: one ratio per width group."""
        if not self.num_width_groups:
            raise ValueError(
                f"{self.name} has no independent width groups (it is not a chain of "
                "layers), so it runs uniform sub-nets only: use `compute_ratio`."
            )
        if isinstance(layer_ratios, (list, tuple, np.ndarray)):
            check_ratio(layer_ratios, "layer_ratios")
        ratios = tf.cast(tf.convert_to_tensor(layer_ratios), "float32")
        if ratios.shape.rank != 1 or ratios.shape[0] not in (None, self.num_width_groups):
            raise ValueError(
                f"`layer_ratios` needs one ratio per width group ({self.num_width_groups} "
                f"for {self.name}, see `zoo.width_groups`); got shape {tuple(ratios.shape)}."
            )
        ratios = validated_ratio(ratios)
        ratios.set_shape((self.num_width_groups,))
        context = RatioContext(tf.reduce_max(ratios))
        context.group_ratios = ratios
        return context

    def _split_inputs(self, inputs, compute_ratio):
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"images", "compute_ratio"}
            if "images" not in inputs or unknown:
                raise ValueError(
                    "A dict input takes the keys 'images' and 'compute_ratio'; "
                    f"got {sorted(inputs)}."
                )
            if compute_ratio is not None and "compute_ratio" in inputs:
                raise ValueError(
                    "`compute_ratio` is given twice: in the inputs and as an argument."
                )
            compute_ratio = inputs.get("compute_ratio", compute_ratio)
            inputs = inputs["images"]
        images = self._check_images(inputs)
        if compute_ratio is None:
            return images, None
        return images, self._ratio_tensor(compute_ratio, images)

    def _check_images(self, images):
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.float32:
            images = tf.cast(images, "float32")
        shape = tuple(images.shape[1:])
        if images.shape.rank != len(self.image_shape) + 1 or any(
            d is not None and d != e for d, e in zip(shape, self.image_shape)
        ):
            raise ValueError(
                f"{self.name} expects images of shape (batch, "
                f"{', '.join(map(str, self.image_shape))}); got {tuple(images.shape)}."
            )
        return images

    def _ratio_tensor(self, compute_ratio, images):
        if isinstance(compute_ratio, (int, float)):
            check_ratio(compute_ratio)
        ratio = tf.cast(tf.convert_to_tensor(compute_ratio), "float32")
        if ratio.shape.rank == 2 and ratio.shape[-1] == 1:
            ratio = tf.squeeze(ratio, -1)
        if ratio.shape.rank not in (0, 1):
            raise ValueError(
                "`compute_ratio` must have shape (batch,) (one ratio per "
                f"sample) or be a scalar; got shape {tuple(ratio.shape)}."
            )
        if ratio.shape.rank == 1:
            batch, count = images.shape[0], ratio.shape[0]
            if batch is not None and count is not None and batch != count:
                raise ValueError(
                    f"`compute_ratio` has {count} values for a batch of {batch} "
                    "images: give one ratio per sample."
                )
        return ratio

    # -- training plan ---------------------------------------------------------

    def set_training_plan(self, ratios, weights=None, distillation=0.0, layer_ratios=None):
        """Sets the ratios the next training steps train at.

        Args:
            ratios: up to `MAX_PLAN_SIZE` ratios in (0, 1]. The first one is
                the teacher of in-place distillation, so put the widest first
                when distilling; `fit`'s metrics are those of the first one.
            weights: loss weight of each ratio (default: 1 each).
            distillation: in [0, 1]: every ratio after the first minimises
                `(1 - d) * task_loss + d * cross_entropy(teacher, student)`.
            layer_ratios: non-uniform sub-nets (chain models): one vector of
                ratios per width group for each entry of `ratios`, which
                they replace.
        """
        ratios = [float(r) for r in np.atleast_1d(ratios)]
        if not ratios or len(ratios) > MAX_PLAN_SIZE:
            raise ValueError(
                f"A training plan holds 1 to {MAX_PLAN_SIZE} ratios; got {len(ratios)}."
            )
        check_ratio(ratios, "ratios")
        weights = [1.0] * len(ratios) if weights is None else [float(w) for w in weights]
        if len(weights) != len(ratios):
            raise ValueError(
                f"Give one weight per ratio: {len(ratios)} ratios, {len(weights)} weights."
            )
        if not 0.0 <= distillation <= 1.0:
            raise ValueError(f"`distillation` must be in [0, 1]; got {distillation}.")
        pad = MAX_PLAN_SIZE - len(ratios)
        self._plan_ratios.assign(np.array(ratios + [1.0] * pad, "float32"))
        self._plan_weights.assign(np.array(weights + [0.0] * pad, "float32"))
        self._plan_size.assign(len(ratios))
        self._plan_distillation.assign(float(distillation))
        self._plan_nonuniform.assign(0 if layer_ratios is None else 1)
        if layer_ratios is not None:
            self._plan_layer_ratios.assign(self._padded_layer_ratios(layer_ratios, len(ratios)))

    def _padded_layer_ratios(self, layer_ratios, count):
        layer_ratios = np.asarray(layer_ratios, "float32")
        groups = self.num_width_groups
        if not groups:
            raise ValueError(f"{self.name} is not a chain model: it has no width groups.")
        if layer_ratios.shape != (count, groups):
            raise ValueError(
                f"`layer_ratios` needs shape ({count}, {groups}): one ratio per width "
                f"group for each plan entry; got {layer_ratios.shape}."
            )
        check_ratio(layer_ratios, "layer_ratios")
        padded = np.ones((MAX_PLAN_SIZE, MAX_WIDTH_GROUPS), "float32")
        padded[:count, :groups] = layer_ratios
        return padded

    @property
    def training_plan(self):
        """The current plan as `{"ratios", "weights", "distillation"}`."""
        size = int(self._plan_size.numpy())
        plan = {
            "ratios": [float(r) for r in self._plan_ratios.numpy()[:size]],
            "weights": [float(w) for w in self._plan_weights.numpy()[:size]],
            "distillation": float(self._plan_distillation.numpy()),
        }
        if int(self._plan_nonuniform.numpy()):
            layer_ratios = self._plan_layer_ratios.numpy()[:size, : self.num_width_groups]
            plan["layer_ratios"] = layer_ratios.tolist()
        return plan

    @property
    def jit_compile(self):
        return False

    @jit_compile.setter
    def jit_compile(self, value):
        if value is True:
            warnings.warn(
                "Dynamic-width models run without XLA: each new width is a new "
                "shape and XLA would recompile the step for every one. "
                "Proceeding with `jit_compile=False`.",
                stacklevel=2,
            )

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self._training_images(x)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            first_loss, prediction = self._plan_loss(0, x, y, sample_weight)
            first_loss += sum(self._aggregate_additional_loss(l) for l in self.losses)
            scaled = self.optimizer.scale_loss(first_loss)
        gradients = self._dense(tape.gradient(scaled, variables), variables)
        teacher = tf.stop_gradient(tf.nn.softmax(prediction))
        gradients, total = self._plan_gradients(
            (x, y, sample_weight), teacher, variables, gradients, first_loss
        )
        gradients = self._mask_frozen_channels(gradients, variables)
        self._apply_gradients(gradients, variables)
        self.weights_changed()
        self._loss_tracker.update_state(total, sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, prediction, sample_weight=sample_weight)

    @staticmethod
    def _training_images(x):
        if isinstance(x, dict):
            if "compute_ratio" in x:
                raise ValueError(
                    "Training data must not carry `compute_ratio`: the training "
                    "plan (`set_training_plan`, or a callback) sets the ratios."
                )
            x = x["images"]
        return x

    def _plan_loss(self, index, x, y, sample_weight, teacher=None):
        """The weighted loss of plan entry `index`, distilled from `teacher`'s
        soft output when given, and the entry's prediction."""
        prediction, penalty = self._plan_prediction(x, index)
        loss = self._compile_loss(y, prediction, sample_weight)
        if teacher is not None:
            distillation = self._plan_distillation
            soft = keras.losses.categorical_crossentropy(teacher, prediction, from_logits=True)
            loss = (1.0 - distillation) * loss + distillation * tf.reduce_mean(soft)
        # The penalty (a compute budget) holds whatever the labels' weight.
        return self._plan_weights[index] * (loss + penalty), prediction

    def _plan_gradients(self, batch, teacher, variables, gradients, loss):
        """Adds the gradients (for `variables`) and losses of plan entries 1
        and on, each distilled from `teacher`, to entry 0's `gradients` and `loss`."""

        def accumulate(index, gradients, total):
            with tf.GradientTape() as tape:
                entry_loss, _ = self._plan_loss(index, *batch, teacher=teacher)
                scaled = self.optimizer.scale_loss(entry_loss)
            more = self._dense(tape.gradient(scaled, variables), variables)
            return index + 1, [g + m for g, m in zip(gradients, more)], total + entry_loss

        _, gradients, total = tf.while_loop(
            lambda index, *_: index < self._plan_size,
            accumulate,
            (tf.constant(1), gradients, loss),
        )
        return gradients, total

    def _plan_prediction(self, x, index):
        """The training prediction at plan entry `index`, and a penalty added
        to its loss (none here; models with a compute budget add one)."""
        uniform = lambda: self(x, compute_ratio=self._plan_ratios[index], training=True)
        if not self.num_width_groups:
            return uniform(), 0.0
        groups = self._plan_layer_ratios[index, : self.num_width_groups]
        prediction = tf.cond(
            self._plan_nonuniform > 0,
            lambda: self(x, layer_ratios=groups, training=True),
            uniform,
        )
        return prediction, 0.0

    # -- what a step updates (profile scheduling, TESLA's ATP) ---------------

    UPDATE_GROUPS = ("all", "weights", "profile")

    def freeze_channels(self, ratio):
        """Freezes the weight block every dynamic layer uses at `ratio`.

        IDP's profile scheduling: the gradients of the frozen block are
        masked to zero, so the sub-nets at ratios up to `ratio` stay exactly
        as they are while wider channels train. Layers that exist once per
        profile (`ProfileBranches`) are never frozen. `0` unfreezes.

        Frozen weights stay exactly fixed with optimizers whose update is
        zero for a zero gradient and zero state (SGD, Adam, RMSprop...,
        without weight decay): call `reset_optimizer_state()` when the frozen
        block changes, so that no momentum from earlier steps moves it.
        """
        ratio = float(ratio)
        if ratio != 0.0:
            check_ratio(ratio, "ratio")
        self._frozen_ratio.assign(ratio)

    @property
    def frozen_ratio(self):
        return float(self._frozen_ratio.numpy())

    def reset_optimizer_state(self):
        """Zeroes the optimizer's per-weight slots (momenta, second moments).

        Its step count, learning rate, loss scale and the weights' moving
        averages (`use_ema`) are kept, inside a wrapping optimizer too.
        """
        for variable in optimizer_slots(self.optimizer, self.trainable_variables):
            variable.assign(keras.ops.zeros_like(variable))

    @property
    def profile_variables(self):
        """The trainable profile vectors (gamma) of every dynamic layer."""
        layers = [l for l in self._flatten_layers() if isinstance(l, DynamicLayer)]
        return [l.profile_gamma for l in layers if l.profile_gamma is not None]

    def enable_profile_updates(self, learning_rate_factor=0.5):
        """Gives the trainable profile its own optimizer, for alternating updates.

        TESLA's ATP alternates rounds that update the weights (profile fixed)
        with rounds that update the profile (weights fixed) at a fraction of
        the learning rate. Each group keeps its own optimizer state, so a
        fixed group does not move by momentum. Select the group with
        `set_update_group`.
        """
        if not self.profile_variables:
            raise ValueError(
                "Alternating profile updates need a trainable profile: build the "
                "model with `profile=zoo.profiles.Profile(name, trainable=True)`."
            )
        if self.optimizer is None:
            raise ValueError("Compile the model before enabling profile updates.")
        learning_rate = self.optimizer.learning_rate
        if isinstance(
            self.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            raise ValueError(
                "Alternating profile updates scale a constant learning rate; "
                "the optimizer uses a schedule."
            )
        if self._profile_optimizer is None:
            config = self.optimizer.get_config()
            config["learning_rate"] = float(learning_rate) * float(learning_rate_factor)
            config["name"] = "profile_optimizer"
            optimizer = type(self.optimizer).from_config(config)
            optimizer.build(self.profile_variables)
            object.__setattr__(self, "_profile_optimizer", optimizer)
            # A step traced by an earlier `fit` has one optimizer built in.
            self.make_train_function(force=True)
        return self._profile_optimizer

    def set_update_group(self, group):
        """Which variables training steps update: "all", "weights" or "profile"."""
        if group not in self.UPDATE_GROUPS:
            raise ValueError(f"`group` must be one of {self.UPDATE_GROUPS}; got {group!r}.")
        if group != "all" and self._profile_optimizer is None:
            raise ValueError("Call `enable_profile_updates()` first.")
        self._update_group.assign(self.UPDATE_GROUPS.index(group))

    def _mask_frozen_channels(self, gradients, variables):
        index = {id(v): i for i, v in enumerate(variables)}

        def masked():
            context = RatioContext(tf.identity(self._frozen_ratio))
            result = list(gradients)
            for layer in self.dynamic_layers:
                for variable, mask in layer.frozen_gradient_masks(context):
                    i = index.get(id(variable))
                    if i is not None:
                        result[i] = result[i] * tf.cast(mask, result[i].dtype)
            return result

        return tf.cond(self._frozen_ratio > 0.0, masked, lambda: list(gradients))

    def _apply_gradients(self, gradients, variables):
        if self._profile_optimizer is None:
            self.optimizer.apply_gradients(zip(gradients, variables))
            return
        profile = {id(v) for v in self.profile_variables}
        pairs = list(zip(gradients, variables))
        weight_pairs = [(g, v) for g, v in pairs if id(v) not in profile]
        profile_pairs = [(g, v) for g, v in pairs if id(v) in profile]

        def update(optimizer, chosen):
            def apply():
                optimizer.apply([g for g, _ in chosen], [v for _, v in chosen])
                return tf.constant(0)

            return apply

        tf.switch_case(
            tf.identity(self._update_group),
            [
                update(self.optimizer, pairs),
                update(self.optimizer, weight_pairs),
                update(self._profile_optimizer, profile_pairs),
            ],
        )

    def weights_changed(self):
        """Marks cached sliced kernels stale.

        `fit`, `set_weights`, `load_weights` and `keras.saving.load_model`
        call it; a custom training loop or a direct `assign` to a kernel
        must call it too.
        """
        self._weights_version.assign_add(1)

    def fit(self, *args, **kwargs):
        try:
            return super().fit(*args, **kwargs)
        finally:
            # An optimizer with EMA swaps weights in at the end of `fit`.
            self.weights_changed()

    def set_weights(self, weights):
        super().set_weights(weights)
        self.weights_changed()

    def load_weights(self, *args, **kwargs):
        result = super().load_weights(*args, **kwargs)
        self.weights_changed()
        return result

    def load_own_variables(self, store):
        # `keras.saving.load_model` assigns the weights through this hook
        # (and the layers' own), not through `load_weights`.
        super().load_own_variables(self._without_legacy_plan(store))
        self.weights_changed()

    def _without_legacy_plan(self, store):
        """`store`, less the plan that files saved before 2026-11-26 hold.

        Those files kept the training plan as six weights, right after the
        model's own trainable ones; they load as if it had never been saved.
        """
        trainable = len(self._trainable_variables)
        count = trainable + len(self._non_trainable_variables)
        if len(store.keys()) != count + LEGACY_PLAN_WEIGHTS:
            return store
        return {
            str(i): store[str(i if i < trainable else i + LEGACY_PLAN_WEIGHTS)]
            for i in range(count)
        }

    @staticmethod
    def _dense(gradients, variables):
        return [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(gradients, variables)
        ]

    # -- introspection ---------------------------------------------------------

    @property
    def dynamic_layers(self):
        """Every dynamic layer, in the order the network runs them."""
        layers = [l for l in self._flatten_layers() if isinstance(l, DynamicLayer)]
        # A profile's own copy of a layer runs inside `ProfileBranches`.
        nested = {id(b) for l in layers if isinstance(l, ProfileBranches) for b in l.branches}
        return [l for l in layers if id(l) not in nested]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "input_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "operating_points": list(self.operating_points),
            "profile": self.profile.get_config(),
            "width": self.width,
            "channel_multiple": self.channel_multiple,
            "profile_boundaries": list(self.profile_boundaries) or None,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def at_least_one(value, argument):
    if int(value) != value or value < 1:
        raise ValueError(f"`{argument}` must be an integer >= 1; got {value}.")
    return int(value)

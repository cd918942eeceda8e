"""The base class of the zoo's uniform-width models: `DynamicModel`."""

import numpy as np
import tensorflow as tf

from zoo import profiles as profiles_lib
from zoo.channel_freezing import ChannelFreezing
from zoo.layer_walk import all_layers
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.layers.profile_branches import ProfileBranches
from zoo.ratio import RatioContext, check_boundaries, check_ratio, validated_ratio
from zoo.ratio_model import (
    DEFAULT_OPERATING_POINTS,
    RatioModel,
    at_least_one,
    replica_variable,
)
from zoo.training_plan import MAX_PLAN_SIZE, MAX_WIDTH_GROUPS
from zoo.width_groups import assign_groups, width_groups

__all__ = ["DynamicModel", "DEFAULT_OPERATING_POINTS", "MAX_PLAN_SIZE", "MAX_WIDTH_GROUPS"]


class DynamicModel(ChannelFreezing, RatioModel):
    """A model that runs at any compute ratio in (0, 1].

    Inputs, the training plan, the training state and export are those of
    `zoo.RatioModel`; freezing channels and alternating profile updates
    those of `zoo.channel_freezing.ChannelFreezing`.

    A batch is computed at its widest ratio: every dynamic layer slices its
    weights and activations to that width, so a batch that shares one ratio
    pays only for that width. When samples ask for different ratios, each
    channel-mixing layer also restricts every sample to its own input
    channels, so each gets exactly the result it would get alone.

    **Training plan.** `fit` trains at a plan of ratios with loss weights
    and in-place distillation (`set_training_plan`, or a callback); see
    `zoo.plan_train_step.PlanTrainStep` for the loss and how it is scaled
    under `tf.distribute`.

    **Batch norm across replicas.** Each operating point keeps its own
    moving statistics. Under `tf.distribute`, `synchronized_batch_norm=True`
    computes a training batch's statistics over the global batch (Keras's
    synchronized batch norm), so every replica normalizes and updates alike
    and training matches one device on the same global batch. Without it
    each replica normalizes by its own share of the batch, and the moving
    statistics are those of the replicas' batches (Keras's aggregation of
    a mirrored variable); recalibrate with `zoo.calibrate_batchnorm` after
    training in either case.

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
        synchronized_batch_norm: batch statistics over the global batch
            under `tf.distribute` (see above).
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
        synchronized_batch_norm=False,
        **kwargs,
    ):
        super().__init__(input_shape, num_classes, operating_points, **kwargs)
        self.profile_boundaries = check_boundaries(profile_boundaries, "profile_boundaries")
        self.profile = profiles_lib.get(profile)
        if isinstance(width, bool) or not float(width) > 0:
            raise ValueError(
                f"`width` multiplies every channel count: give a number > 0; got {width}."
            )
        self.width = float(width)
        self.channel_multiple = at_least_one(channel_multiple, "channel_multiple")
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.num_width_groups = 0
        self._init_channel_freezing(replica_variable)

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
            synchronized=self.synchronized_batch_norm,
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
            self.plan.num_width_groups = len(groups)

    # -- inference -------------------------------------------------------------

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

    # -- training --------------------------------------------------------------

    def plan_prediction(self, x, index):
        """The training prediction at plan entry `index`; no penalty."""
        if self.plan.structure.nonuniform:
            groups = self.plan.entry_layer_ratios(index)
            return self(x, layer_ratios=groups, training=True), 0.0
        return self(x, compute_ratio=self.plan.ratios[index], training=True), 0.0

    # -- cost ------------------------------------------------------------------

    def cost(self, compute_ratio=1.0, data=None, per_layer=False, layer_ratios=None):
        """Multiply-adds, parameters and dot products of the sub-net at
        `compute_ratio` (or at `layer_ratios`, one per width group), by
        counting its dynamic layers (`zoo.cost` explains the counts);
        `data` is ignored: the cost does not depend on the input."""
        from zoo.cost import layer_cost

        return layer_cost(self, compute_ratio, per_layer, layer_ratios)

    # -- introspection ---------------------------------------------------------

    @property
    def dynamic_layers(self):
        """Every dynamic layer, in the order the network runs them."""
        layers = [l for l in all_layers(self) if isinstance(l, DynamicLayer)]
        # A profile's own copy of a layer runs inside `ProfileBranches`.
        nested = {id(b) for l in layers if isinstance(l, ProfileBranches) for b in l.branches}
        return [l for l in layers if id(l) not in nested]

    def get_config(self):
        config = super().get_config()
        config.update(
            profile=self.profile.get_config(),
            width=self.width,
            channel_multiple=self.channel_multiple,
            profile_boundaries=list(self.profile_boundaries) or None,
        )
        if self.synchronized_batch_norm:
            config["synchronized_batch_norm"] = True
        return config

"""IDP's multiple profiles: one first (or last) layer per range of ratios."""

import keras
import numpy as np
import tensorflow as tf

from zoo.layers.dynamic_layer import DynamicLayer
from zoo.ratio import check_boundaries


@keras.saving.register_keras_serializable(package="zoo")
class ProfileBranches(DynamicLayer):
    """Runs one of several layers, chosen by the compute ratio's range.

    IDP's multi-profile training splits the ratios into ranges, e.g.
    `(0, 0.3]` and `(0.3, 1]`; each range (profile) has its own first and
    last layers while the middle layers are shared. This layer holds the
    per-profile copies of one such layer and runs only the copy whose range
    holds the ratio: a batch at one ratio runs one branch; a batch mixing
    ratios from different ranges runs each branch it needs and gives every
    sample its own branch's output.

    Branches are exclusive to their range, so profile scheduling never
    freezes them (`channel_axes` is empty); they train in their own stage.

    Args:
        branches: dynamic layers of the same kind and shape, one per range.
        boundaries: the upper ends of every range but the last (which ends
            at 1), increasing, e.g. `(0.3,)` for two profiles.
        **kwargs: standard layer arguments (`name`).

    Example:
    >>> first = ProfileBranches([DynamicDense(100, cut_inputs=False), DynamicDense(100, cut_inputs=False)], (0.3,))
    >>> y = first(np.ones((2, 784), "float32"), compute_ratio=0.2)  # runs branch 0
    """

    def __init__(self, branches, boundaries, **kwargs):
        branches = [
            b if isinstance(b, keras.layers.Layer) else keras.saving.deserialize_keras_object(b)
            for b in branches
        ]
        if not branches or not all(isinstance(b, DynamicLayer) for b in branches):
            raise ValueError("`branches` must be one or more dynamic layers.")
        boundaries = check_boundaries(boundaries)
        if len(boundaries) != len(branches) - 1:
            raise ValueError(
                f"{len(branches)} branches need {len(branches) - 1} boundaries; got {boundaries}."
            )
        first = branches[0]
        kwargs.setdefault("cut_inputs", first.cut_inputs)
        kwargs.setdefault("cut_outputs", first.cut_outputs)
        kwargs.setdefault("channel_multiple", first.channel_multiple)
        super().__init__(**kwargs)
        self.branches = branches
        self.boundaries = boundaries

    def build(self, input_shape):
        for branch in self.branches:
            branch.build(input_shape)
        self.input_channels = self.branches[0].input_channels

    def branch_index(self, ratio):
        """Index of the branch whose range holds `ratio` (a tensor)."""
        if not self.boundaries:
            return tf.zeros_like(ratio, dtype="int32")
        bounds = tf.constant(self.boundaries, "float32")
        return tf.reduce_sum(tf.cast(tf.expand_dims(ratio, -1) > bounds, "int32"), -1)

    def static_branch(self, ratio):
        if isinstance(ratio, (list, tuple, np.ndarray)):
            ratio = max(ratio)  # a non-uniform sub-net picks by its widest group
        return self.branches[int(np.searchsorted(self.boundaries, ratio, side="left"))]

    def call(self, inputs, compute_ratio=None, training=None):
        context = self.context(compute_ratio)
        if len(self.branches) == 1:
            return self.branches[0](inputs, compute_ratio=context, training=training)
        self._compute_widths(context)

        def run(branch):
            return branch(inputs, compute_ratio=context, training=training)

        if not context.is_mixed:
            return tf.switch_case(
                self.branch_index(context.ratio),
                [lambda branch=branch: run(branch) for branch in self.branches],
            )
        # A batch mixing ranges (rare: inference with per-sample ratios)
        # runs every branch and picks each sample's own.
        sample_branch = self.branch_index(context.sample_ratios)
        outputs = None
        for index, branch in enumerate(self.branches):
            y = run(branch)
            chosen = tf.reshape(tf.equal(sample_branch, index), [-1] + [1] * (y.shape.rank - 1))
            outputs = y if outputs is None else tf.where(chosen, y, outputs)
        return outputs

    def _compute_widths(self, context):
        # Widths are memoized in the context: computing them here, outside the
        # branches' conditionals, keeps the tensors usable by later layers.
        branch = self.branches[0]
        self.input_width(context, self.input_channels)
        self.output_width(context, getattr(branch, "units", None) or branch.filters)
        if context.is_mixed:
            context.sample_widths(self.input_channels, self.channel_multiple)

    def compute_output_shape(self, input_shape):
        return self.branches[0].compute_output_shape(input_shape)

    def static_layer(self, ratio):
        return self.static_branch(ratio).static_layer(ratio)

    def cost(self, ratio):
        return self.static_branch(ratio).cost(ratio)

    def get_config(self):
        config = super().get_config()
        for key in ("cut_inputs", "cut_outputs", "channel_multiple", "profile"):
            config.pop(key, None)
        config.update(
            {
                "branches": [keras.saving.serialize_keras_object(b) for b in self.branches],
                "boundaries": list(self.boundaries),
            }
        )
        return config

"""Base class of the dynamic-width layers."""

import keras
import numpy as np
import tensorflow as tf

from zoo import profiles as profiles_lib
from zoo.layers.leading_block import first_channels, leading_block
from zoo.profiles import CumulativeMinimum
from zoo.ratio import RatioContext, channel_width

# Kernels with at least this many weights keep their last sliced block for
# inference (see `DynamicLayer.inference_kernel`); smaller ones are cheaper
# to slice than to look up.
KERNEL_CACHE_MIN_SIZE = 16384
# The cache's key takes 16 floats (64 bytes, TensorFlow's alignment) so that
# the kernel after it is an aligned slice, which shares the buffer instead of
# being copied on every call.
CACHE_KEY_SLOTS = 16


class DynamicLayer(keras.layers.Layer):
    """A layer that computes only the first channels its compute ratio keeps.

    Subclasses slice their weights and inputs to the widths of the current
    `RatioContext`; nothing is computed for the channels left out. Each can
    also describe itself as a standard Keras layer at a fixed ratio
    (`static_layer`) and count its cost there (`cost`).

    Args:
        cut_inputs: whether the input channels follow the compute ratio
            (`False` for the first layer, which reads raw pixels).
        cut_outputs: whether the output channels follow the compute ratio
            (`False` for the classifier).
        channel_multiple: round widths up to a multiple of this (one value
            for the whole model, so producer and consumer agree).
        profile: IDP profile over the input channels: a name from
            `zoo.profiles.list_profiles()` or a `zoo.profiles.Profile`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> layer = zoo.layers.DynamicDense(64)  # a subclass
    >>> layer(np.ones((2, 32)), compute_ratio=0.25).shape  # 8 of 32 inputs, 16 of 64 outputs
    (2, 16)
    """

    def __init__(
        self,
        cut_inputs=True,
        cut_outputs=True,
        channel_multiple=1,
        profile=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cut_inputs = cut_inputs
        self.cut_outputs = cut_outputs
        self.channel_multiple = int(channel_multiple)
        if self.channel_multiple < 1:
            raise ValueError(f"`channel_multiple` must be a positive int; got {channel_multiple}.")
        self.profile = profiles_lib.get(profile)
        self._fixed_gamma = None
        # Not `gamma`: a batch norm's scale has that name.
        self.profile_gamma = None
        self._kernel_cache = None
        # Width groups (non-uniform sub-nets), set by `zoo.width_groups`.
        self._input_group = None
        self._output_group = None
        # Inputs concatenated from several groups, or flattened from several
        # positions (set by `zoo.dynamic`, see `set_input_layout`).
        self._input_segments = None
        self._input_positions = 1
        self._inputs_at_width = False

    def set_input_layout(self, segments, positions=1, output_group=None):
        """Where this layer's input channels come from (models made by `zoo.dynamic`).

        Args:
            segments: `[(channels, group)]`, the blocks concatenated into the
                input, each keeping its own first channels at a ratio (group
                `None`: never cut, e.g. the image's channels).
            positions: the input is `positions` copies of those blocks (a
                `Flatten` of that many pixels), each cut alike.
            output_group: the width group of the outputs (`None`: not cut).
        """
        segments = tuple((int(size), group) for size, group in segments)
        # In a converted graph every tensor is computed at exactly its
        # widths, so the input needs no slicing.
        object.__setattr__(self, "_inputs_at_width", True)
        if len(segments) == 1 and positions == 1:
            object.__setattr__(self, "_input_group", segments[0][1])
        else:
            object.__setattr__(self, "_input_segments", segments)
            object.__setattr__(self, "_input_positions", int(positions))
        object.__setattr__(self, "_output_group", output_group)

    def _build_profile(self, input_channels):
        """Creates gamma over `input_channels`, as a weight if it trains."""
        if not self.cut_inputs or self.profile.is_identity:
            return
        initial = self.profile(input_channels)
        if self.profile.trainable:
            self.profile_gamma = self.add_weight(
                name="profile",
                shape=(input_channels,),
                initializer=keras.initializers.Constant(initial),
                constraint=CumulativeMinimum(),
            )
        else:
            self._fixed_gamma = tf.constant(initial)

    def _build_bias(self, channels):
        """A zero-initialized bias over `channels`, or `None` without `use_bias`."""
        if not self.use_bias:
            return None
        return self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def _finish(self, y, n_out):
        """Adds the first `n_out` biases and applies the activation."""
        if self.use_bias:
            y = tf.nn.bias_add(y, first_channels(self.bias, n_out))
        return self.activation(y)

    def static_kernel_weights(self, ratio, output_channels):
        """`(n_in, n_out, weights)` of a layer with a kernel `[..., in, out]`
        and a bias over its outputs at `ratio`: the kernel block with the
        profile folded in, then the bias (dense, convolution)."""
        n_in = self.static_input_width(ratio, self.input_channels)
        n_out = self.static_output_width(ratio, output_channels)
        kernel = self.static_input_block(self.kernel.numpy()[..., :n_out], n_in, -2, ratio)
        gamma = self.gamma_values()
        if gamma is not None:
            kernel = kernel * gamma[:n_in, None]
        weights = [kernel]
        if self.use_bias:
            weights.append(sliced_numpy(self.bias, slice(0, n_out)))
        return n_in, n_out, weights

    def gamma_values(self):
        """Gamma as a NumPy vector over all input channels, or `None`."""
        if self.profile_gamma is not None:
            return self.profile_gamma.numpy()
        if self._fixed_gamma is not None:
            return self._fixed_gamma.numpy()
        return None

    def _gamma_tensor(self):
        return self.profile_gamma if self.profile_gamma is not None else self._fixed_gamma

    def input_width(self, context, channels):
        if not self.cut_inputs:
            return channels
        if self._input_segments is not None:
            widths = [self._segment_width(context, s, g) for s, g in self._input_segments]
            return self._input_positions * tf.add_n([tf.cast(w, "int32") for w in widths])
        if context.group_ratios is not None and self._input_group is not None:
            return context.group_width(self._input_group, channels, self.channel_multiple)
        return context.width(channels, self.channel_multiple)

    def output_width(self, context, channels):
        if not self.cut_outputs:
            return channels
        if context.group_ratios is not None and self._output_group is not None:
            return context.group_width(self._output_group, channels, self.channel_multiple)
        return context.width(channels, self.channel_multiple)

    def static_input_width(self, ratio, channels):
        """Width at `ratio`: a float, or a list of ratios per width group."""
        if not self.cut_inputs:
            return channels
        if self._input_segments is not None:
            return len(self.static_input_index(ratio))
        ratio = group_ratio(ratio, self._input_group)
        return channel_width(ratio, channels, self.channel_multiple)

    def static_output_width(self, ratio, channels):
        if not self.cut_outputs:
            return channels
        ratio = group_ratio(ratio, self._output_group)
        return channel_width(ratio, channels, self.channel_multiple)

    def _segment_width(self, context, size, group):
        if group is None:
            return size
        if context.group_ratios is not None:
            return context.group_width(group, size, self.channel_multiple)
        return context.width(size, self.channel_multiple)

    def _segment_ranges(self, widths):
        """`(start, width)` of every kept block of the full input channels."""
        ranges, offset = [], 0
        for _ in range(self._input_positions):
            for (size, _), width in zip(self._input_segments, widths):
                ranges.append((offset, width))
                offset += size
        return ranges

    def input_index(self, context):
        """Int tensor of the input channels kept under `context` (segmented inputs)."""
        widths = [self._segment_width(context, s, g) for s, g in self._input_segments]
        parts = [start + tf.range(width) for start, width in self._segment_ranges(widths)]
        return tf.concat(parts, 0)

    def static_input_index(self, ratio):
        """NumPy version of `input_index` at `ratio` (float or per-group list)."""
        widths = [
            size
            if group is None
            else channel_width(group_ratio(ratio, group), size, self.channel_multiple)
            for size, group in self._input_segments
        ]
        ranges = self._segment_ranges(widths)
        return np.concatenate([np.arange(start, start + width) for start, width in ranges])

    def kept_inputs_of(self, inputs, n_in):
        """The input's first `n_in` channels (all of it in a converted graph)."""
        return inputs if self._inputs_at_width else first_channels(inputs, n_in)

    def kernel_block(self, n_in, n_out, context):
        """The kernel `[..., in, out]` at the kept inputs and first `n_out` outputs."""
        if self._input_segments is None or not self.cut_inputs:
            return leading_block(self.kernel, {-2: n_in, -1: n_out})
        return tf.gather(first_channels(self.kernel, n_out), self.input_index(context), axis=-2)

    def input_block(self, weight, n_in, axis, context):
        """`weight` restricted, along its input-channel `axis`, to the kept inputs."""
        if self._input_segments is None or not self.cut_inputs:
            return leading_block(weight, {axis: n_in})
        return tf.gather(weight, self.input_index(context), axis=axis)

    def static_input_block(self, values, n_in, axis, ratio):
        """NumPy version of `input_block` at `ratio`."""
        values = np.asarray(values)
        if self._input_segments is None or not self.cut_inputs:
            return np.take(values, np.arange(n_in), axis=axis)
        return np.take(values, self.static_input_index(ratio), axis=axis)

    def scale_input_channels(self, kernel, n_in):
        """Folds the profile into a kernel whose input axis is `-2`."""
        gamma = self._gamma_tensor()
        if gamma is None:
            return kernel
        return kernel * tf.expand_dims(first_channels(gamma, n_in), -1)

    def keep_sample_channels(self, x, context, channels):
        """Zeroes, per sample, the input channels beyond its own width.

        Only runs for a batch that mixes ratios: the batch is computed at
        its widest ratio, and a narrower sample must not read the channels
        it would not have alone. A uniform batch never comes here.
        """
        if not (context.is_mixed and self.cut_inputs):
            return x
        n = tf.shape(x)[-1]
        if self._input_segments is not None:
            keep = tf.cast(self._sample_segment_keep(context), x.dtype)
        else:
            widths = context.sample_widths(channels, self.channel_multiple)
            keep = tf.cast(tf.range(n)[tf.newaxis, :] < widths[:, tf.newaxis], x.dtype)
        keep_shape = tf.concat([tf.shape(keep)[:1], tf.ones([x.shape.rank - 2], "int32"), [n]], 0)
        return x * tf.reshape(keep, keep_shape)

    def _sample_segment_keep(self, context):
        """`(batch, kept inputs)` bool: which kept input each sample may read."""
        parts = []
        for size, group in self._input_segments:
            width = self._segment_width(context, size, group)
            if group is None:
                parts.append(tf.ones([tf.size(context.sample_ratios), size], "bool"))
                continue
            own = context.sample_widths(size, self.channel_multiple)
            parts.append(tf.range(width)[tf.newaxis, :] < own[:, tf.newaxis])
        return tf.tile(tf.concat(parts, 1), [1, self._input_positions])

    def _build_kernel_cache(self, kernel_size):
        """An untracked variable holding the last sliced kernel, flattened,
        after its key."""
        if (
            kernel_size < KERNEL_CACHE_MIN_SIZE
            or not tf.executing_eagerly()
            or self.compute_dtype != "float32"
        ):
            return
        cache = tf.Variable(
            tf.bitcast(tf.constant([-1] * CACHE_KEY_SLOTS, "int32"), "float32"),
            shape=tf.TensorShape(None),
            trainable=False,
        )
        # Plain attribute: the cache is not a weight and is never saved.
        object.__setattr__(self, "_kernel_cache", cache)

    def inference_kernel(self, context, training, n_in, n_out, compute):
        """The sliced, profile-folded kernel, from the cache when it is fresh.

        Slicing a kernel block copies it, and at batch size 1 a large layer
        is bound by reading its weights, so the copy costs as much as the
        layer itself. At inference a big layer therefore keeps the last block
        it sliced, keyed by the widths and by the model's weights version
        (`DynamicModel` bumps it whenever weights change), and a call at the
        same widths reads it without copying. Training always slices.

        Key and kernel live in one variable, read once per call: calls from
        several threads each see a whole cache entry, theirs or another's,
        never a kernel of other widths under their key.
        """
        version = context.weights_version
        if training or version is None or self._kernel_cache is None:
            return compute()
        cache = self._kernel_cache
        wanted = tf.stack([tf.cast(n_in, "int32"), tf.cast(n_out, "int32"), version])
        entry = cache.read_value()
        fresh = tf.reduce_all(tf.equal(tf.bitcast(entry[:3], "int32"), wanted))
        shape = tf.concat([tf.shape(self.kernel)[:-2], wanted[:2]], 0)

        def refresh():
            value = compute()
            key = tf.concat([wanted, tf.fill([CACHE_KEY_SLOTS - 3], -1)], 0)
            stored = tf.concat([tf.bitcast(key, "float32"), tf.reshape(value, [-1])], 0)
            with tf.control_dependencies([cache.assign(stored, read_value=False)]):
                return tf.identity(value)

        kernel = tf.cond(fresh, lambda: tf.reshape(entry[CACHE_KEY_SLOTS:], shape), refresh)
        kernel.set_shape(tuple(self.kernel.shape[:-2]) + (None, None))
        return kernel

    def channel_axes(self, context):
        """`[(weight, {axis: width})]`: the axes of each trainable weight that
        follow the compute ratio, with their widths under `context`.

        The block of a weight inside these widths is what the layer uses at
        that ratio; `frozen_gradient_masks` freezes it.
        """
        return []

    def kernel_channel_axes(self, context, output_channels):
        """`channel_axes` of a layer with a kernel `[..., in, out]`, a bias
        over its outputs and a profile over its inputs (dense, convolution)."""
        n_in = self.input_width(context, self.input_channels)
        n_out = self.output_width(context, output_channels)
        axes = [(self.kernel, {-2: self.kept_inputs(context, n_in), -1: n_out})]
        if self.use_bias:
            axes.append((self.bias, {0: n_out}))
        if self.profile_gamma is not None:
            axes.append((self.profile_gamma, {0: n_in}))
        return axes

    def kept_inputs(self, context, n_in):
        """The kept inputs for `block_mask`: a width, or an index when segmented."""
        if self._input_segments is None or not self.cut_inputs:
            return n_in
        return self.input_index(context)

    def frozen_gradient_masks(self, context):
        """`[(weight, mask)]`, each mask 0 on the block used at `context`'s
        ratio and 1 elsewhere (IDP's profile scheduling freezes that block).
        """
        return [
            (variable, block_mask(variable.shape, widths))
            for variable, widths in self.channel_axes(context)
        ]

    @staticmethod
    def context(compute_ratio):
        return RatioContext.from_value(1.0 if compute_ratio is None else compute_ratio)

    def static_layer(self, ratio):
        """A built standard Keras layer equal to this one at `ratio`."""
        raise NotImplementedError

    def cost(self, ratio):
        """`{"flops", "params", "dot_products"}` of this layer at `ratio`."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cut_inputs": self.cut_inputs,
                "cut_outputs": self.cut_outputs,
                "channel_multiple": self.channel_multiple,
                "profile": self.profile.get_config(),
            }
        )
        return config


def sliced_numpy(variable, *slices):
    """NumPy copy of a weight restricted to `slices`."""
    return np.asarray(variable.numpy())[slices]


def group_ratio(ratio, group):
    """The float ratio a layer in width group `group` takes from `ratio`."""
    if isinstance(ratio, (list, tuple, np.ndarray)):
        return float(ratio[group]) if group is not None else float(max(ratio))
    return ratio


def block_mask(shape, widths):
    """Float mask of `shape`: 0 where every axis in `widths` is inside its
    block (below its width, or among its indices when given a vector)."""
    inside = tf.ones(shape, "bool")
    for axis, width in widths.items():
        axis = axis % len(shape)
        index_shape = [1] * len(shape)
        index_shape[axis] = shape[axis]
        if tf.convert_to_tensor(width).shape.rank == 1:
            kept = tf.scatter_nd(width[:, None], tf.ones_like(width, "bool"), [shape[axis]])
        else:
            kept = tf.range(shape[axis]) < width
        inside &= tf.reshape(kept, index_shape)
    return 1.0 - tf.cast(inside, "float32")

"""Compute ratios: validation, channel widths and the per-call ratio context.

A compute ratio `r` in (0, 1] selects the first `ceil(r * C)` channels of a
layer with `C` channels (rounded up to a `channel_multiple` when one is given,
never more than `C`). The helpers here turn one ratio per sample into the
widths each dynamic layer slices to, once per forward pass.
"""

import math

import numpy as np
import tensorflow as tf

RATIO_RANGE = "(0, 1]"

# `ceil(r * C)` in float32 can land one channel too high (0.3 * 10 is
# 3.0000001); widths are computed as `ceil(r * C - WIDTH_EPSILON)`.
WIDTH_EPSILON = 1e-3


def channel_width(ratio, channels, channel_multiple=1):
    """Number of channels kept at `ratio` (Python version, for static use).

    Args:
        ratio: float in (0, 1].
        channels: int, the layer's full channel count.
        channel_multiple: int, round the width up to a multiple of this.

    Returns:
        int in `[1, channels]`.

    Example:
    >>> channel_width(0.5, 64)
    32
    >>> channel_width(0.3, 10)
    3
    """
    check_ratio(ratio)
    # Same float32 arithmetic as the tensor version, so both agree.
    product = np.float32(ratio) * np.float32(channels) - np.float32(WIDTH_EPSILON)
    width = math.ceil(float(np.float32(product)))
    width = channel_multiple * math.ceil(width / channel_multiple)
    return int(min(max(width, 1), channels))


def check_ratio(ratio, argument="compute_ratio"):
    """Raises a `ValueError` naming `argument` unless every value of `ratio` is in (0, 1]."""
    values = np.asarray(ratio, dtype="float64")
    if values.size == 0:
        raise ValueError(f"`{argument}` is empty: give at least one ratio in {RATIO_RANGE}.")
    bad = values[~((values > 0) & (values <= 1))]
    if bad.size:
        raise ValueError(
            f"`{argument}` must be in {RATIO_RANGE} (NaN is not accepted); "
            f"got {bad.ravel()[:5].tolist()}."
        )


def check_ratio_list(ratios, argument="ratios", repeats_allowed=True):
    """The distinct ratios of `ratios` sorted widest first, or a clear error
    naming `argument` (an empty list, a ratio outside (0, 1], NaN, or a
    repeated ratio unless `repeats_allowed`)."""
    values = [] if ratios is None else [float(r) for r in np.atleast_1d(ratios)]
    check_ratio(values, argument)
    repeated = sorted({r for r in values if values.count(r) > 1})
    if repeated and not repeats_allowed:
        raise ValueError(
            f"`{argument}` repeats {repeated}: give each ratio once (got {sorted(values)})."
        )
    return sorted(set(values), reverse=True)


def check_operating_points(operating_points):
    """The operating points as a sorted tuple (narrowest first), or a clear error."""
    points = check_ratio_list(operating_points, "operating_points", repeats_allowed=False)
    return tuple(reversed(points))


def check_boundaries(boundaries, argument="boundaries"):
    """Profile boundaries as a tuple, or a clear error naming `argument`."""
    boundaries = tuple(float(b) for b in boundaries or ())
    if not all(0 < b < 1 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
        raise ValueError(
            f"`{argument}` must increase strictly, each in (0, 1), e.g. (0.3,) for the "
            f"ranges (0, 0.3] and (0.3, 1]; got {boundaries}."
        )
    return boundaries


def validated_ratio(ratio):
    """`ratio` (a float tensor) once every value is checked to be in (0, 1].

    Eagerly the check raises a `ValueError` at once; in a traced function it
    is an assertion that runs before the ratio is used.
    """
    valid = tf.reduce_all((ratio > 0.0) & (ratio <= 1.0))
    if tf.executing_eagerly():
        if not bool(valid):
            check_ratio(ratio.numpy())
        return ratio
    message = f"`compute_ratio` must be in {RATIO_RANGE} (NaN is not accepted)."
    with tf.control_dependencies([tf.debugging.Assert(valid, [message, ratio])]):
        return tf.identity(ratio)


def _width_tensor(ratio, channels, channel_multiple):
    width = tf.math.ceil(ratio * float(channels) - WIDTH_EPSILON)
    width = tf.cast(width, "int32")
    if channel_multiple > 1:
        width = channel_multiple * ((width + channel_multiple - 1) // channel_multiple)
    return tf.clip_by_value(width, 1, channels)


class RatioContext:
    """The compute ratio of one forward pass, shared by all dynamic layers.

    The batch is computed at its widest ratio (`ratio`); when samples ask for
    different ratios, `sample_ratios` holds them so that layers can keep each
    sample to its own channels. Widths are memoized per channel count, so a
    network computes each distinct width once per pass.

    Args:
        ratio: scalar float tensor, the widest ratio in the batch.
        sample_ratios: `(batch,)` float tensor, or `None` when the whole
            batch shares `ratio`.

    Example:
    >>> context = RatioContext.from_value(0.5)
    >>> int(context.width(64))
    32
    """

    def __init__(self, ratio, sample_ratios=None):
        self.ratio = ratio
        self.sample_ratios = sample_ratios
        # Set by `DynamicModel`: a counter bumped whenever weights change,
        # which keys the layers' inference kernel caches.
        self.weights_version = None
        # Non-uniform sub-nets: `(groups,)` ratios, one per width group
        # (see `zoo.width_groups`); layers in a group take its ratio.
        self.group_ratios = None
        self._widths = {}
        self._sample_widths = {}
        self._point_index = {}

    @classmethod
    def from_value(cls, compute_ratio):
        """Builds a context from a float, a scalar or a `(batch,)` tensor.

        A rank-1 ratio is taken per sample: the context is mixed unless all
        values are equal, which is decided by the caller (see
        `DynamicModel`); here a rank-1 input is always treated as mixed.
        """
        if isinstance(compute_ratio, RatioContext):
            return compute_ratio
        if isinstance(compute_ratio, (int, float)):
            check_ratio(compute_ratio)
            ratio = tf.constant(compute_ratio, "float32")
        else:
            ratio = validated_ratio(tf.cast(compute_ratio, "float32"))
        if ratio.shape.rank == 0:
            return cls(ratio)
        return cls(tf.reduce_max(ratio), ratio)

    @property
    def is_mixed(self):
        return self.sample_ratios is not None

    def width(self, channels, channel_multiple=1):
        """Scalar int tensor: channels computed for the batch."""
        key = (channels, channel_multiple)
        if key not in self._widths:
            self._widths[key] = _width_tensor(self.ratio, channels, channel_multiple)
        return self._widths[key]

    def group_width(self, group, channels, channel_multiple=1):
        """Scalar int tensor: channels computed for width group `group`."""
        key = ("group", group, channels, channel_multiple)
        if key not in self._widths:
            self._widths[key] = _width_tensor(self.group_ratios[group], channels, channel_multiple)
        return self._widths[key]

    def group_point_index(self, group, operating_points):
        """Index of the operating point nearest to width group `group`'s ratio."""
        key = (tuple(operating_points), ("group", group))
        if key not in self._point_index:
            self._point_index[key] = self._nearest(operating_points, self.group_ratios[group])
        return self._point_index[key]

    def sample_widths(self, channels, channel_multiple=1):
        """`(batch,)` int tensor: channels each sample may use."""
        key = (channels, channel_multiple)
        if key not in self._sample_widths:
            self._sample_widths[key] = _width_tensor(self.sample_ratios, channels, channel_multiple)
        return self._sample_widths[key]

    def point_index(self, operating_points):
        """Index of the operating point nearest to the batch's ratio."""
        return self._nearest(operating_points, self.ratio)

    def sample_point_index(self, operating_points):
        """`(batch,)` indices of the operating point nearest each sample's."""
        return self._nearest(operating_points, self.sample_ratios)

    def _nearest(self, operating_points, ratio):
        key = (tuple(operating_points), ratio is self.ratio)
        if key not in self._point_index:
            points = tf.constant(operating_points, dtype="float32")
            distance = tf.abs(tf.expand_dims(ratio, -1) - points)
            self._point_index[key] = tf.argmin(distance, axis=-1, output_type="int32")
        return self._point_index[key]


def nearest_point_index(ratio, operating_points):
    """Python version of `RatioContext.point_index`: the nearest point's index.

    In float32 like the graph, so that a ratio halfway between two points
    picks the same one in both.
    """
    points = np.asarray(operating_points, dtype="float32")
    return int(np.argmin(np.abs(points - np.float32(ratio))))

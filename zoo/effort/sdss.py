"""SDSS: significance-driven selective sampling (DyVEDeep's feature-level knob).

A feature map is first computed at every other row and column (a quarter
of its positions). Each position in between has two (same row or column)
or four (diagonal) computed neighbours. Per position and feature map: if
the neighbours are all insignificant (`|value| <= threshold * scale`) or
alike (`max - min <= threshold * scale`, judged only between two or more
distinct neighbours, so not on the last row or column of an even-sized
map), the position takes their mean;
otherwise it is computed exactly. `scale` is each map's standard deviation
on calibration data. A negative threshold computes every position; `inf`
fills every position whose neighbours are all within `inf` of zero, that
is every one (the map becomes its quarter-resolution samples, upsampled by
averaging neighbours).
"""

import tensorflow as tf


def _interleave(top_left, top_right, bottom_left, bottom_right, height, width):
    """Four `[B, h, w, C]` grids as one `[B, height, width, C]` grid."""
    even = tf.stack([top_left, top_right], axis=3)
    odd = tf.stack([bottom_left, bottom_right], axis=3)
    shape = tf.shape(top_left)
    rows = tf.stack([even, odd], axis=2)
    full = tf.reshape(rows, [shape[0], 2 * shape[1], 2 * shape[2], shape[3]])
    return full[:, :height, :width, :]


def fill(samples, threshold, scale, height, width):
    """Fills the positions between `samples` where their neighbours allow.

    Args:
        samples: the exact values at even rows and columns, `[B, h, w, C]`.
        threshold: float (see the module docstring).
        scale: `[C]`, each map's typical magnitude.
        height, width: the full map's size.

    Returns:
        `(values, exact)`, both `[B, height, width, C]`: the sampled and
        filled values, and where a position still needs its exact value.
    """
    padded = tf.pad(samples, [[0, 0], [0, 1], [0, 1], [0, 0]], mode="SYMMETRIC")
    here, right = padded[:, :-1, :-1], padded[:, :-1, 1:]
    down, diagonal = padded[:, 1:, :-1], padded[:, 1:, 1:]
    limit = threshold * scale
    # The padded last row and column repeat a neighbour: one value is not
    # "alike" evidence, so there only insignificance may fill.
    shape = tf.shape(samples)
    last_row = tf.reshape(tf.range(shape[1]) == shape[1] - 1, [1, -1, 1, 1])
    last_column = tf.reshape(tf.range(shape[2]) == shape[2] - 1, [1, 1, -1, 1])
    grids, needs = [here], [tf.zeros_like(here, "bool")]
    for neighbours, edge in (
        ((here, right), last_column),
        ((here, down), last_row),
        ((here, right, down, diagonal), last_row | last_column),
    ):
        stacked = tf.stack(neighbours, axis=0)
        high = tf.reduce_max(stacked, axis=0)
        low = tf.reduce_min(stacked, axis=0)
        insignificant = tf.maximum(tf.abs(high), tf.abs(low)) <= limit
        alike = (high - low <= limit) & tf.logical_not(edge)
        grids.append(tf.reduce_mean(stacked, axis=0))
        needs.append(tf.logical_not(insignificant | alike))
    values = _interleave(*grids, height, width)
    exact = _interleave(*needs, height, width)
    return values, exact


def decision_operations(height, width):
    """Scalar operations of the fill decisions over one map: per in-between
    position with `n` neighbours, `2(n - 1)` for max and min, 3 for the two
    tests, and `n` for the mean."""
    rows, columns = (height + 1) // 2, (width + 1) // 2
    same_row = rows * (width // 2)
    same_column = (height // 2) * columns
    diagonal = (height // 2) * (width // 2)
    return (same_row + same_column) * (2 + 3 + 2) + diagonal * (6 + 3 + 4)

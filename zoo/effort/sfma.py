"""SFMA: similarity-based feature map approximation (DyVEDeep's layer-level knob).

When two input feature maps of a convolution are alike for the current
input, `conv(Xi, Wi) + conv(Xj, Wj)` is replaced by `conv(Xi, Wi + Wj)`,
which saves one map's convolution. Finding every alike pair would cost
`C^2` map comparisons, so the maps are sorted by their mean and only
neighbours in that order are compared: a run of alike neighbours forms a
group, computed once with its first map and the summed kernel rows.
"""

import tensorflow as tf

EPSILON = 1e-12


def alike_groups(x, threshold):
    """Groups of alike input maps, per input.

    Two neighbouring maps (in the order of their means) are alike when
    `mean|Xi - Xj| / (mean|Xi| + mean|Xj|) <= threshold`: a distance in
    [0, 1], 0 for equal maps (two all-zero maps are equal). A negative
    threshold never merges; 1 or more merges all maps into one group.

    Args:
        x: inputs `[batch, height, width, channels]`.
        threshold: float.

    Returns:
        `(representative, group, num_groups)`: for each input and channel,
        the channel whose map stands in for it and its group index (both
        `[batch, channels]`, int32), and the number of groups `[batch]`.
    """
    channels = x.shape[-1]
    batch = tf.shape(x)[0]
    flat = tf.reshape(x, [batch, -1, channels])
    order = tf.argsort(tf.reduce_mean(flat, axis=1), axis=-1, stable=True)
    ordered = tf.gather(flat, order, axis=2, batch_dims=1)
    size = tf.reduce_mean(tf.abs(ordered), axis=1)
    difference = tf.reduce_mean(tf.abs(ordered[..., 1:] - ordered[..., :-1]), axis=1)
    distance = difference / (size[:, 1:] + size[:, :-1] + EPSILON)
    starts = tf.concat([tf.ones([batch, 1], "bool"), distance > threshold], axis=1)
    group_ordered = tf.cumsum(tf.cast(starts, "int32"), axis=1) - 1
    # The first position of each group, found per input through offset segment ids.
    positions = tf.tile(tf.range(channels)[tf.newaxis], [batch, 1])
    offsets = tf.range(batch)[:, tf.newaxis] * channels
    first = tf.math.unsorted_segment_min(positions, group_ordered + offsets, batch * channels)
    first = tf.reshape(first, [batch, channels])
    leader_position = tf.gather(first, group_ordered, batch_dims=1)
    leader_ordered = tf.gather(order, leader_position, batch_dims=1)
    inverse = tf.argsort(order, axis=-1)
    representative = tf.gather(leader_ordered, inverse, batch_dims=1)
    group = tf.gather(group_ordered, inverse, batch_dims=1)
    return representative, group, group_ordered[:, -1] + 1


def substitute(x, representative):
    """`x` with every map replaced by its group's representative map.

    `conv(substitute(x), W)` equals the merged `sum_g conv(X_g, sum W_g)`:
    the batched formulation, used when inputs of one batch merge
    differently.
    """
    return tf.gather(x, representative, axis=3, batch_dims=1)


def merged(x, kernel, representative, group, num_groups):
    """The merged input and kernel of one input (batch of 1): `G` channels.

    Returns `(maps [1, H, W, G], kernel [..., G, out])`, with
    `conv(maps, kernel) == conv(substitute(x), original kernel)`.
    """
    leaders = tf.math.unsorted_segment_min(representative[0], group[0], num_groups[0])
    maps = tf.gather(x, leaders, axis=3)
    rows = tf.experimental.numpy.moveaxis(kernel, -2, 0)
    summed = tf.math.unsorted_segment_sum(rows, group[0], num_groups[0])
    return maps, tf.experimental.numpy.moveaxis(summed, 0, -2)


def overhead(height_width, channels, num_groups, taps_outputs):
    """Scalar operations SFMA adds per input: means, sort, distances, kernel sums."""
    channels_f = float(channels)
    sort = channels_f * max(1, (channels - 1).bit_length())
    distances = (channels_f - 1) * (3 * height_width + 3) + channels_f * height_width * 2
    kernel_sums = (channels_f - tf.cast(num_groups, "float32")) * taps_outputs
    return channels_f * height_width + sort + distances + kernel_sums

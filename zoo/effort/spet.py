"""SPET: saturation prediction and early termination (DyVEDeep's neuron-level knob).

A neuron followed by ReLU first sums its most significant terms: the input
channels with the largest total weight magnitude, an order fixed once from
the weights. If that partial sum is clearly negative, the ReLU will output
zero, so the neuron stops there; only the others add their remaining terms.
"Clearly" is measured in units of the spread of the remaining terms, taken
on calibration data: a neuron stops when `partial < -margin * scale`.
"""

import math

import numpy as np
import tensorflow as tf


def check_arguments(activation, margin, fraction, layer_name):
    """Validates a knob layer's activation and SPET arguments; returns the
    activation as `"relu"` or `None`."""
    if activation not in (None, "linear", "relu"):
        raise ValueError(f"`activation` must be None or 'relu'; got {activation!r}.")
    activation = "relu" if activation == "relu" else None
    if margin is not None and activation != "relu":
        raise ValueError(f"SPET predicts ReLU saturation; layer {layer_name!r} has no ReLU.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"`spet_fraction` must be in (0, 1]; got {fraction}.")
    return activation


def significance_order(kernel):
    """Input channels (axis -2) by descending total |weight|, as int32."""
    kernel = np.asarray(kernel)
    axes = tuple(i for i in range(kernel.ndim) if i != kernel.ndim - 2)
    return np.argsort(-np.abs(kernel).sum(axis=axes), kind="stable").astype("int32")


def split(channels, fraction):
    """Number of leading channels in the partial sum."""
    return min(channels, max(1, math.ceil(fraction * channels)))


def saturated(partial, margin, scale):
    """Where the partial sums predict that ReLU cuts the neuron to zero.

    `margin=inf` never predicts saturation; `margin=-inf` always does.
    """
    return partial < -margin * tf.maximum(scale, 1e-12)


def output(partial, remainder, stopped):
    """ReLU of the full sum, zero where the neuron stopped early."""
    return tf.where(stopped, tf.zeros_like(partial), tf.nn.relu(partial + remainder))


def distinct_groups(group, channels_subset):
    """Per input, how many SFMA groups the channels `channels_subset` span."""
    chosen = tf.gather(group, channels_subset, axis=1)
    present = tf.reduce_max(tf.one_hot(chosen, group.shape[-1]), axis=1)
    return tf.reduce_sum(present, axis=-1)


def remainder_scale(partial, full):
    """Per output channel: the standard deviation of the remaining terms."""
    remainder = np.asarray(full) - np.asarray(partial)
    return remainder.reshape(-1, remainder.shape[-1]).std(axis=0).astype("float32")


def add_weights(layer, inputs, outputs):
    """SPET's calibrated state on `layer`: the input order and, per output,
    the spread of the remaining terms (neither trains)."""
    order = layer.add_weight(
        name="spet_order",
        shape=(inputs,),
        dtype="int32",
        initializer=lambda shape, dtype=None: tf.range(shape[0], dtype="int32"),
        trainable=False,
    )
    scale = layer.add_weight(
        name="remainder_scale", shape=(outputs,), initializer="ones", trainable=False
    )
    return order, scale

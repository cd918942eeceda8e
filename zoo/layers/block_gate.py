"""LC-Net's per-block predictors: which block and which channels to run."""

import math

import keras
import tensorflow as tf

CHANNEL_GATINGS = ("subset", "prefix")


@keras.saving.register_keras_serializable(package="zoo")
class BlockGate(keras.layers.Layer):
    """The L-Net and C-Net heads of one residual block.

    Reads cheap features of the block's input (its channel means) and the
    compute budget of each input, and predicts through one small hidden
    layer: a logit for running the block (L-Net), a logit for each of the
    block's inner channels (C-Net), and a scale for each kept channel. The
    scale is `1 + (1 - budget) * tanh(.)`, so at budget 1 it is exactly 1
    and the block is the backbone's.

    The C-Net either gates each channel on its own (`"subset"`) or predicts
    one width fraction `f` and keeps the first channels (`"prefix"`): the
    logit of channel `c` (from 0) is `f * (C + 1) - (c + 1)`, so a block
    keeps the prefix a width-sliced backbone was trained on, and its
    convolutions run on a contiguous slice.

    Args:
        channels: the block's inner channels (outputs of its first conv).
        hidden: width of the shared hidden layer.
        open_bias: initial logit of every gate (positive: start open); in
            `"prefix"` gating, the initial logit of the last channel.
        channel_gating: `"subset"` or `"prefix"`.
        **kwargs: standard layer arguments.

    Example:
    >>> gate = BlockGate(16)
    >>> block_logit, channel_logits, scale = gate(np.ones((2, 16)), np.full((2,), 0.5))
    """

    def __init__(self, channels, hidden=16, open_bias=3.0, channel_gating="subset", **kwargs):
        super().__init__(**kwargs)
        if channel_gating not in CHANNEL_GATINGS:
            raise ValueError(
                f"`channel_gating` must be one of {CHANNEL_GATINGS}; got {channel_gating!r}."
            )
        self.channels = int(channels)
        self.hidden = int(hidden)
        self.open_bias = float(open_bias)
        self.channel_gating = channel_gating
        prefix = channel_gating == "prefix"
        # A prefix head starts with its last channel's logit at `open_bias`:
        # 1 - sigmoid(b) ~ exp(-b), so b = open_bias + log(C + 1).
        channel_bias = self.open_bias + math.log(self.channels + 1) if prefix else self.open_bias
        self.hidden_layer = keras.layers.Dense(self.hidden, activation="relu", name="hidden")
        self.block_head = keras.layers.Dense(
            1, bias_initializer=keras.initializers.Constant(self.open_bias), name="block"
        )
        self.channel_head = keras.layers.Dense(
            1 if prefix else self.channels,
            bias_initializer=keras.initializers.Constant(channel_bias),
            name="channels",
        )
        self.scale_head = keras.layers.Dense(
            self.channels, kernel_initializer="zeros", name="scale"
        )

    def build(self, features_shape, budget_shape=None):
        self.input_channels = int(features_shape[-1])
        self.hidden_layer.build((None, self.input_channels + 1))
        for head in (self.block_head, self.channel_head, self.scale_head):
            head.build((None, self.hidden))

    def call(self, features, budget):
        budget = tf.reshape(tf.cast(budget, features.dtype), [-1, 1])
        hidden = self.hidden_layer(tf.concat([features, budget], axis=-1))
        scale = 1.0 + (1.0 - budget) * tf.tanh(self.scale_head(hidden))
        return self.block_head(hidden)[:, 0], self._channel_logits(hidden), scale

    def _channel_logits(self, hidden):
        logits = self.channel_head(hidden)
        if self.channel_gating == "subset":
            return logits
        width = tf.sigmoid(logits) * float(self.channels + 1)
        return width - tf.range(1, self.channels + 1, dtype=logits.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "hidden": self.hidden,
                "open_bias": self.open_bias,
                "channel_gating": self.channel_gating,
            }
        )
        return config


def gate_cost(input_channels, hidden, channels, channel_gating="subset"):
    """Multiply-adds of one `BlockGate` prediction."""
    channel_outputs = channels if channel_gating == "subset" else 1
    return (input_channels + 1) * hidden + hidden * (1 + channel_outputs + channels)

"""What a training step updates: frozen channels (IDP's profile scheduling)
and alternating weight and profile updates (TESLA's ATP)."""

import keras
import tensorflow as tf

from zoo.optimizer_slots import optimizer_slots
from zoo.ratio import RatioContext, check_ratio

UPDATE_GROUPS = ("all", "weights", "profile")


class ChannelFreezing:
    """Mixin of a `zoo.DynamicModel`: which weights a training step updates.

    - `freeze_channels(ratio)`: the weight block every dynamic layer uses at
      `ratio` gets zero gradients (IDP's profile scheduling).
    - `enable_profile_updates()` and `set_update_group(...)`: the trainable
      profile gets its own optimizer, and steps update either the weights
      or the profile (TESLA's alternating training, ATP).

    The frozen ratio is a variable that callbacks set between steps without
    retracing. The update group chooses which optimizer the traced step
    calls, so each group has a training step of its own, traced once and
    reused whenever the group comes back (an optimizer that reduces
    gradients across replicas cannot run inside a graph branch). Under
    `tf.distribute` every replica masks the same channels and updates the
    same group; gradients are reduced across replicas once per step.

    Example:
    >>> model.freeze_channels(0.5)   # sub-nets up to ratio 0.5 stay as they are
    >>> model.fit(x, y)
    >>> model.freeze_channels(0)     # unfreeze
    """

    UPDATE_GROUPS = UPDATE_GROUPS

    def _init_channel_freezing(self, make_variable):
        object.__setattr__(self, "_frozen_ratio", make_variable("frozen_ratio", 0.0))
        object.__setattr__(self, "_profile_optimizer", None)
        object.__setattr__(self, "update_group", "all")

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
        return [l.profile_gamma for l in self.dynamic_layers if l.profile_gamma is not None]

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
        config = self.optimizer.get_config()
        if not isinstance(config["learning_rate"], (int, float)):
            raise ValueError(
                "Alternating profile updates scale a constant learning rate; "
                "the optimizer uses a schedule."
            )
        if self._profile_optimizer is None:
            config["learning_rate"] = float(config["learning_rate"]) * float(learning_rate_factor)
            config["name"] = "profile_optimizer"
            # Under `tf.distribute` its state must be mirrored like the model's.
            with self.distribute_strategy.scope():
                optimizer = type(self.optimizer).from_config(config)
                optimizer.build(self.profile_variables)
            object.__setattr__(self, "_profile_optimizer", optimizer)
        return self._profile_optimizer

    def set_update_group(self, group):
        """Which variables training steps update: "all", "weights" or "profile"."""
        if group not in UPDATE_GROUPS:
            raise ValueError(f"`group` must be one of {UPDATE_GROUPS}; got {group!r}.")
        if group != "all" and self._profile_optimizer is None:
            raise ValueError("Call `enable_profile_updates()` first.")
        if group != self.update_group:
            object.__setattr__(self, "update_group", group)
            self.training_step_changed()

    def training_step_key(self):
        return (super().training_step_key(), self.update_group)

    def apply_plan_gradients(self, gradients, variables):
        gradients = self._mask_frozen_channels(gradients, variables)
        if self.update_group == "all":
            self.optimizer.apply_gradients(zip(gradients, variables))
            return
        profile = {id(v) for v in self.profile_variables}
        chosen = [
            (g, v)
            for g, v in zip(gradients, variables)
            if (id(v) in profile) == (self.update_group == "profile")
        ]
        optimizer = self._profile_optimizer if self.update_group == "profile" else self.optimizer
        optimizer.apply_gradients(chosen)

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

"""Single-path sub-net sampling and the sandwich rule."""

import keras
import numpy as np

from callbacks.state import CallbackState, check_ratio_list

STEP = 0


class SubnetSampler(keras.callbacks.Callback):
    """Trains one model for many widths by sampling a sub-net per step or epoch.

    - **Single path** (Yang and Fan): one uniform sub-net (one ratio for
      every layer) per epoch (`per="epoch"`) or per batch (`per="batch"`),
      drawn from `ratios` or uniformly from `ratio_range`.
    - **Sandwich rule** (slimmable networks, `sandwich=True`): every step
      trains the widest and the narrowest ratio and `num_ratios - 2` random
      ones, the narrower ones distilled in place from the widest's soft
      output (`distillation`).

    Draws depend only on `seed` and a step counter kept in the model's
    `training_state`, so a run resumed under `BackupAndRestore` draws the
    same sequence.

    Args:
        ratios: ratios to draw from (exclusive with `ratio_range`).
        ratio_range: `(low, high)` to draw from uniformly.
        per: `"batch"` or `"epoch"`.
        sandwich: use the sandwich rule (implies `per="batch"`).
        num_ratios: ratios per step under the sandwich rule (at least 2).
        distillation: in-place distillation weight in [0, 1] for the
            sandwich rule.
        seed: seed of the draws.

    Example:
    >>> callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=4)
    """

    def __init__(
        self,
        ratios=None,
        ratio_range=None,
        per="batch",
        sandwich=False,
        num_ratios=4,
        distillation=1.0,
        seed=0,
    ):
        super().__init__()
        if (ratios is None) == (ratio_range is None):
            raise ValueError("Give exactly one of `ratios` and `ratio_range`.")
        if ratios is not None:
            self.ratios = check_ratio_list(ratios)
            self.low, self.high = min(self.ratios), max(self.ratios)
        else:
            low, high = (float(v) for v in ratio_range)
            if not 0.0 < low < high <= 1.0:
                raise ValueError(
                    f"`ratio_range` must be (low, high) with 0 < low < high <= 1; got {ratio_range}."
                )
            self.ratios, self.low, self.high = None, low, high
        if per not in ("batch", "epoch"):
            raise ValueError(f"`per` must be 'batch' or 'epoch'; got {per!r}.")
        if sandwich and int(num_ratios) < 2:
            raise ValueError(f"The sandwich rule needs `num_ratios` >= 2; got {num_ratios}.")
        if not 0.0 <= distillation <= 1.0:
            raise ValueError(f"`distillation` must be in [0, 1]; got {distillation}.")
        self.per = "batch" if sandwich else per
        self.sandwich = sandwich
        self.num_ratios = int(num_ratios)
        self.distillation = float(distillation)
        self.seed = int(seed)

    def sample(self, step):
        """The ratios trained at `step` (widest first under the sandwich rule)."""
        rng = np.random.default_rng([self.seed, int(step)])
        if not self.sandwich:
            return [self._draw(rng)]
        middle = sorted((self._draw(rng) for _ in range(self.num_ratios - 2)), reverse=True)
        return [self.high] + middle + [self.low]

    def _draw(self, rng):
        if self.ratios is not None:
            return float(rng.choice(self.ratios))
        return float(rng.uniform(self.low, self.high))

    def on_train_begin(self, logs=None):
        self.state = CallbackState(self.model, type(self).__name__)

    def _apply(self):
        step = self.state[STEP]
        ratios = self.sample(step)
        distillation = self.distillation if self.sandwich else 0.0
        self.model.set_training_plan(ratios, distillation=distillation)
        self.state[STEP] = step + 1

    def on_train_batch_begin(self, batch, logs=None):
        if self.per == "batch":
            self._apply()

    def on_epoch_begin(self, epoch, logs=None):
        if self.per == "epoch":
            self._apply()

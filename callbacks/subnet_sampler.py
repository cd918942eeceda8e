"""Single-path sub-net sampling and the sandwich rule."""

import zoo
from callbacks.plan_callback import PlanCallback
from zoo.dynamic_model import MAX_PLAN_SIZE
from zoo.ratio import check_ratio_list

STEP, REORDERED = range(2)


class SubnetSampler(PlanCallback):
    """Trains one model for many widths by sampling a sub-net per step or epoch.

    - **Single path** (Yang and Fan): one uniform sub-net (one ratio for
      every layer) per epoch (`per="epoch"`) or per batch (`per="batch"`),
      drawn from `ratios` or uniformly from `ratio_range`.
    - **Sandwich rule** (slimmable networks, `sandwich=True`): every step
      trains the widest and the narrowest ratio and `num_ratios - 2` random
      ones, the narrower ones distilled in place from the widest's soft
      output (`distillation`). With `ratios` and `replace=False` the random
      ones are distinct and strictly between the widest and the narrowest:
      `ratios=[0.25, 0.5, 0.75, 1.0], num_ratios=4, replace=False` trains
      every operating point at every step.

    - **Non-uniform sub-nets** (`nonuniform=True`, Yang and Fan; chain
      models such as mlp, vgg16, mobilenet): every draw gives each width
      group (`zoo.width_groups`) its own ratio. Before the first step the
      channels are reordered by importance (`reorder`, the norm of their
      weights, see `zoo.reorder_channels`), once per model, so that the
      channels each group keeps are its most important ones.

    Draws depend only on `seed` and a step counter kept in the model's
    `training_state`, so a run resumed under `BackupAndRestore` draws the
    same sequence; an epoch rerun after a mid-epoch backup (`save_freq=N`)
    repeats that epoch's draws.

    Args:
        ratios: ratios to draw from (exclusive with `ratio_range`).
        ratio_range: `(low, high)` to draw from uniformly.
        per: `"batch"` or `"epoch"`.
        sandwich: use the sandwich rule (implies `per="batch"`).
        num_ratios: ratios per step under the sandwich rule (at least 2).
        replace: whether the sandwich rule's random ratios are drawn with
            replacement; `False` needs `ratios` with at least
            `num_ratios` of them.
        distillation: in-place distillation weight in [0, 1] for the
            sandwich rule.
        seed: seed of the draws.
        nonuniform: draw a ratio per width group.
        reorder: `"l1"`, `"l2"` or `None`: importance reordering before
            non-uniform training.

    Example:
    >>> callbacks.SubnetSampler(ratio_range=(0.1, 1.0), sandwich=True, num_ratios=4)
    """

    state_window = "SubnetSampler"

    def __init__(
        self,
        ratios=None,
        ratio_range=None,
        per="batch",
        sandwich=False,
        num_ratios=4,
        distillation=1.0,
        seed=0,
        nonuniform=False,
        reorder="l1",
        replace=True,
    ):
        super().__init__(seed)
        if (ratios is None) == (ratio_range is None):
            raise ValueError("Give exactly one of `ratios` and `ratio_range`.")
        if ratios is not None:
            self.ratios = check_ratio_list(ratios)
            self.low, self.high = min(self.ratios), max(self.ratios)
        else:
            low, high = _pair(ratio_range)
            if not 0.0 < low < high <= 1.0:
                raise ValueError(
                    f"`ratio_range` must be (low, high) with 0 < low < high <= 1; got {ratio_range}."
                )
            self.ratios, self.low, self.high = None, low, high
        if per not in ("batch", "epoch"):
            raise ValueError(f"`per` must be 'batch' or 'epoch'; got {per!r}.")
        if sandwich and not 2 <= int(num_ratios) <= MAX_PLAN_SIZE:
            raise ValueError(
                f"The sandwich rule trains 2 to {MAX_PLAN_SIZE} ratios a step "
                f"(`num_ratios`); got {num_ratios}."
            )
        if not 0.0 <= distillation <= 1.0:
            raise ValueError(f"`distillation` must be in [0, 1]; got {distillation}.")
        if sandwich and not replace and (self.ratios is None or len(self.ratios) < int(num_ratios)):
            raise ValueError(
                "`replace=False` draws distinct ratios from `ratios`, so it needs `ratios` with "
                f"at least `num_ratios` ({num_ratios}) of them; got ratios={ratios}."
            )
        if sandwich and not replace and nonuniform:
            raise ValueError(
                "`replace=False` draws distinct uniform ratios; non-uniform sub-nets draw a "
                "ratio per width group, so use it with `nonuniform=False`."
            )
        self.replace = bool(replace)
        self.per = "batch" if sandwich else per
        self.sandwich = sandwich
        self.num_ratios = int(num_ratios)
        self.distillation = float(distillation)
        if reorder not in ("l1", "l2", None):
            raise ValueError(f"`reorder` must be 'l1', 'l2' or None; got {reorder!r}.")
        self.nonuniform = bool(nonuniform)
        self.reorder = reorder

    def sample(self, step):
        """The ratios trained at `step` (widest first under the sandwich rule)."""
        rng = self.step_rng(step)
        if not self.sandwich:
            return [self._draw(rng)]
        if self.replace:
            middle = [self._draw(rng) for _ in range(self.num_ratios - 2)]
        else:
            inner = [r for r in self.ratios if self.low < r < self.high]
            middle = [float(r) for r in rng.choice(inner, self.num_ratios - 2, replace=False)]
        return [self.high] + sorted(middle, reverse=True) + [self.low]

    def sample_layers(self, step, groups):
        """Per-group ratios of each sub-net trained at `step` (non-uniform)."""
        rng = self.step_rng(step)
        if not self.sandwich:
            return [[self._draw(rng) for _ in range(groups)]]
        middle = [[self._draw(rng) for _ in range(groups)] for _ in range(self.num_ratios - 2)]
        return [[self.high] * groups] + middle + [[self.low] * groups]

    def _draw(self, rng):
        if self.ratios is not None:
            return float(rng.choice(self.ratios))
        return float(rng.uniform(self.low, self.high))

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.nonuniform:
            zoo.width_groups(self.model)  # a clear error for non-chain models
            if self.reorder and not self.state[REORDERED]:
                zoo.reorder_channels(self.model, self.reorder)
                self.state[REORDERED] = 1

    def _apply(self):
        step = self.state[STEP]
        distillation = self.distillation if self.sandwich else 0.0
        if self.nonuniform:
            layers = self.sample_layers(step, self.model.num_width_groups)
            ratios = [max(group) for group in layers]
            self.model.set_training_plan(ratios, distillation=distillation, layer_ratios=layers)
        else:
            self.model.set_training_plan(self.sample(step), distillation=distillation)
        self.state[STEP] = step + 1

    def on_train_batch_begin(self, batch, logs=None):
        self.progress.batch_begin(batch)
        if self.per == "batch":
            self._apply()

    def on_epoch_begin(self, epoch, logs=None):
        begun = self.progress.begun
        if self.progress.epoch_begin(self.params):
            # The interrupted epoch runs again from its first batch: rewind.
            self.state[STEP] -= begun if self.per == "batch" else 1
        if self.per == "epoch":
            self._apply()

    def on_epoch_end(self, epoch, logs=None):
        self.progress.epoch_end()


def _pair(ratio_range):
    try:
        low, high = (float(v) for v in ratio_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"`ratio_range` must be (low, high) with 0 < low < high <= 1; got {ratio_range!r}."
        ) from None
    return low, high

"""Batch-norm calibration for every operating point, as a callback."""

import keras

from zoo.batchnorm import calibrate_batchnorm


class BatchNormCalibration(keras.callbacks.Callback):
    """Recomputes batch-norm statistics at every operating point.

    Training at a few ratios leaves the other operating points' statistics
    stale (or never set); this recomputes them exactly from `steps` batches
    of training data, at the end of training or after every epoch.

    Keras runs callbacks in list order. List this one before
    `OperatingPointLogger`, so that the logger sees calibrated statistics.
    `EarlyStopping(restore_best_weights=True)` puts back the best epoch's
    weights, moving statistics included, in its `on_train_end`: list this
    callback after it, or use `frequency="epoch"` so that every epoch's
    weights (the best one's too) hold calibrated statistics.

    Args:
        data: training images, `(images, labels)` or a batched dataset,
            augmented as in training (see `zoo.calibrate_batchnorm`).
        ratios: operating points to calibrate (default: all of the model's).
        steps: batches per ratio.
        frequency: `"train_end"` or `"epoch"`.

    Example:
    >>> callbacks.BatchNormCalibration(x_train[:2048], frequency="epoch")
    """

    def __init__(self, data, ratios=None, steps=10, frequency="train_end"):
        super().__init__()
        if frequency not in ("train_end", "epoch"):
            raise ValueError(f"`frequency` must be 'train_end' or 'epoch'; got {frequency!r}.")
        if int(steps) < 1:
            raise ValueError(f"`steps` must be at least 1; got {steps}.")
        self.data, self.ratios, self.steps, self.frequency = data, ratios, int(steps), frequency

    def calibrate(self):
        calibrate_batchnorm(self.model, self.data, self.ratios, steps=self.steps)

    def on_epoch_end(self, epoch, logs=None):
        if self.frequency == "epoch":
            self.calibrate()

    def on_train_end(self, logs=None):
        self.calibrate()

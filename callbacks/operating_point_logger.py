"""Validation metrics at every operating point, in the logs and in TensorBoard."""

import io
import os

import keras
import numpy as np
import tensorflow as tf

from callbacks.state import format_ratio, require_dynamic_model
from zoo.cost import cost
from zoo.evaluation import evaluate_ratios
from zoo.ratio import check_ratio_list


class OperatingPointLogger(keras.callbacks.Callback):
    """Evaluates every operating point at each epoch end and logs it.

    - Adds `val_accuracy@R` and `val_loss@R` to the epoch logs (`R` as in
      `0.25`, `1.0`), so `History` keeps them and `EarlyStopping` and
      `ModelCheckpoint` can `monitor` them (list this callback before
      them). A `ModelCheckpoint` file name cannot hold them: `str.format`
      reads the `.` in `{val_accuracy@0.25}` as an attribute.
    - With `log_dir`, writes TensorBoard summaries: one run per operating
      point (`log_dir/r=0.25/`, ...) with the scalars
      `operating_point/accuracy`, `operating_point/loss` and
      `operating_point/mult_adds`, so one chart overlays all points; in
      `log_dir` itself, a custom-scalars layout of those charts, an image
      of accuracy against multiply-adds each epoch, and the run's
      hyperparameters for the HParams plugin.

    Batch norm uses each point's statistics as they are; put a
    `BatchNormCalibration(frequency="epoch")` before this callback to log
    calibrated ones.

    Args:
        validation_data: `(images, labels)` or a batched `tf.data.Dataset`.
        ratios: operating points (default: the model's).
        log_dir: TensorBoard directory, a string or path (optional).
        hparams: extra hyperparameters to record (a flat dict).
        batch_size: batch size for arrays.

    Example:
    >>> callbacks.OperatingPointLogger((xv, yv), ratios=[1.0, 0.5, 0.25], log_dir="logs/run1")
    """

    def __init__(self, validation_data, ratios=None, log_dir=None, hparams=None, batch_size=256):
        super().__init__()
        if validation_data is None:
            raise ValueError("`validation_data` is required.")
        self.validation_data = validation_data
        self.ratios = None if ratios is None else check_ratio_list(ratios)
        self.log_dir = os.fspath(log_dir) if log_dir else None
        self.hparams = dict(hparams or {})
        self.batch_size = batch_size
        self._writers = {}
        self._cost_images = None

    def on_train_begin(self, logs=None):
        require_dynamic_model(self.model, type(self).__name__)
        if self.ratios is None:
            self.ratios = sorted(self.model.operating_points, reverse=True)
        self.mult_adds = self._mult_adds()
        if self.log_dir:
            self._open_writers()
            self._write_layout()
            self._write_hparams()

    def _mult_adds(self):
        """Multiply-adds per ratio; averaged over validation images for a
        model whose cost depends on the input (LC-Net's gates)."""
        data = None
        if self.model.cost_depends_on_data:
            if self._cost_images is None:
                self._cost_images = self._some_validation_images()
            data = self._cost_images
        return {r: cost(self.model, r, data=data)["flops"] for r in self.ratios}

    def _some_validation_images(self, count=1024):
        if isinstance(self.validation_data, tf.data.Dataset):
            batches, total = [], 0
            for images, _ in self.validation_data:
                batches.append(np.asarray(images))
                total += len(batches[-1])
                if total >= count:
                    break
            return np.concatenate(batches)[:count]
        return np.asarray(self.validation_data[0][:count])

    def on_epoch_end(self, epoch, logs=None):
        if self.model.cost_depends_on_data:
            self.mult_adds = self._mult_adds()  # the gates learn
        accuracy, loss = evaluate_ratios(
            self.model, self.validation_data, self.ratios, self.batch_size, return_loss=True
        )
        if logs is not None:
            for ratio in self.ratios:
                logs[f"val_accuracy@{format_ratio(ratio)}"] = accuracy[ratio]
                logs[f"val_loss@{format_ratio(ratio)}"] = loss[ratio]
        if self.log_dir:
            self._write_epoch(epoch, accuracy, loss)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # -- TensorBoard -------------------------------------------------------

    def _open_writers(self):
        self._writers = {
            ratio: tf.summary.create_file_writer(
                os.path.join(self.log_dir, f"r={format_ratio(ratio)}")
            )
            for ratio in self.ratios
        }
        self._writers[None] = tf.summary.create_file_writer(self.log_dir)

    def _write_epoch(self, epoch, accuracy, loss):
        for ratio in self.ratios:
            with self._writers[ratio].as_default(step=epoch):
                tf.summary.scalar("operating_point/accuracy", accuracy[ratio])
                tf.summary.scalar("operating_point/loss", loss[ratio])
                tf.summary.scalar("operating_point/mult_adds", self.mult_adds[ratio])
            self._writers[ratio].flush()
        with self._writers[None].as_default(step=epoch):
            tf.summary.image("accuracy_vs_mult_adds", self._plot(accuracy, epoch))
        self._writers[None].flush()

    def _plot(self, accuracy, epoch):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5, 3.5), dpi=80)
        points = sorted(self.ratios)
        axes.plot(
            [self.mult_adds[r] / 1e6 for r in points], [100 * accuracy[r] for r in points], "o-"
        )
        for r in points:
            axes.annotate(format_ratio(r), (self.mult_adds[r] / 1e6, 100 * accuracy[r]), fontsize=7)
        axes.set_xlabel("multiply-adds (millions)")
        axes.set_ylabel("validation accuracy (%)")
        axes.set_title(f"epoch {epoch + 1}")
        axes.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        return tf.image.decode_png(buffer.getvalue(), channels=4)[tf.newaxis]

    def _write_layout(self):
        from tensorboard.plugins.custom_scalar import layout_pb2
        from tensorboard.plugins.custom_scalar import summary as custom_scalar

        charts = [
            layout_pb2.Chart(
                title=f"{name} per operating point",
                multiline=layout_pb2.MultilineChartContent(tag=[rf"operating_point/{name}"]),
            )
            for name in ("accuracy", "loss")
        ]
        layout = layout_pb2.Layout(
            category=[layout_pb2.Category(title="operating points", chart=charts)]
        )
        with self._writers[None].as_default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar.pb(layout).SerializeToString(), step=0
            )

    def _write_hparams(self):
        from tensorboard.plugins.hparams import api as hp

        hparams = {
            "model": self.model.name,
            "operating_points": ",".join(format_ratio(r) for r in self.ratios),
            "optimizer": type(self.model.optimizer).__name__ if self.model.optimizer else "none",
        }
        learning_rate = getattr(self.model.optimizer, "learning_rate", None)
        if learning_rate is not None and np.ndim(learning_rate) == 0:
            hparams["learning_rate"] = float(np.asarray(learning_rate))
        hparams.update(self.hparams)
        with self._writers[None].as_default():
            hp.hparams(hparams)

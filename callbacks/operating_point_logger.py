"""Validation metrics at every operating point, in the logs and in TensorBoard."""

import glob
import io
import json
import os
import re

import keras
import numpy as np
import tensorflow as tf

from callbacks.state import format_ratio, require_dynamic_model
from zoo.atomic_files import write_json
from zoo.cost import cost
from zoo.evaluation import evaluate_ratios
from zoo.ratio import check_ratio_list

POINTS_FILE = "operating_points.json"
UNITS = ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands"), (0, "units"))


class OperatingPointLogger(keras.callbacks.Callback):
    """Evaluates every operating point at each epoch end and logs it.

    - Adds `val_accuracy@R` and `val_loss@R` to the epoch logs (`R` as in
      `0.25`, `1.0`), so `History` keeps them and `EarlyStopping` and
      `ModelCheckpoint` can `monitor` them (list this callback before
      them). A `ModelCheckpoint` file name cannot hold them: `str.format`
      reads the `.` in `{val_accuracy@0.25}` as an attribute.
    - With `log_dir`, writes TensorBoard summaries: one run per operating
      point (`log_dir/r=0.25/`, ...) with the scalars
      `operating_point/accuracy` and `operating_point/loss`, so one chart
      overlays all points; in `log_dir` itself, `accuracy@R` per point (a
      chart per point compares runs), a custom-scalars layout of both kinds
      of chart, an image of accuracy against multiply-adds drawn each epoch
      with every run of `log_dir`'s parent folder, and the hyperparameters
      for the HParams plugin: a trial named after the run, with the model,
      the training callbacks and their settings (`model.training_methods`),
      the plan, epochs, batch size, optimizer, learning rate and each
      point's multiply-adds.

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
        self._hparams_written = False
        if self.log_dir:
            self._open_writers()
            self._write_layout()

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
            if not self._hparams_written:
                # At the first epoch's end every callback has begun and
                # recorded its settings in `model.training_methods`.
                self._write_hparams()
                self._hparams_written = True
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
            self._writers[ratio].flush()
        with self._writers[None].as_default(step=epoch):
            # Per point in the run itself too: a chart per point compares runs.
            for ratio in self.ratios:
                tf.summary.scalar(f"accuracy@{format_ratio(ratio)}", accuracy[ratio])
            self._record_points(epoch, accuracy)
            tf.summary.image("accuracy_vs_mult_adds", self._plot(epoch))
        self._writers[None].flush()

    @property
    def run_name(self):
        return os.path.basename(os.path.normpath(self.log_dir))

    def _record_points(self, epoch, accuracy):
        """This run's latest points, beside its events, for the image of
        every run in the parent folder."""
        points = [[self.mult_adds[r], accuracy[r], r] for r in sorted(self.ratios)]
        write_json(
            os.path.join(self.log_dir, POINTS_FILE),
            {"run": self.run_name, "step": epoch, "points": points},
        )

    def _runs_to_plot(self):
        """This run's points and those of its sibling runs (same parent folder)."""
        parent = os.path.dirname(os.path.normpath(self.log_dir))
        runs = []
        for path in sorted(glob.glob(os.path.join(parent, "*", POINTS_FILE))):
            try:
                with open(path) as file:
                    runs.append(json.load(file))
            except (OSError, ValueError):
                continue  # another run writing it: atomic, so only a race on the name
        return runs

    def _plot(self, epoch):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        runs = self._runs_to_plot()
        largest = max(p[0] for run in runs for p in run["points"])
        scale, unit = next((s, u) for s, u in UNITS if largest >= s)
        figure, axes = plt.subplots(figsize=(8, 5.5), dpi=100)
        for run in runs:
            mine = run["run"] == self.run_name
            x = [p[0] / scale for p in run["points"]]
            y = [100 * p[1] for p in run["points"]]
            label = f"{run['run']} (step {run['step']})"
            axes.plot(x, y, "o-", linewidth=2.5 if mine else 1.5, label=label)
            if mine:
                for (_, _, ratio), xi, yi in zip(run["points"], x, y):
                    axes.annotate(
                        format_ratio(ratio), (xi, yi), textcoords="offset points", xytext=(4, -10)
                    )
        axes.set_xlabel(f"multiply-adds per image ({unit})", fontsize=12)
        axes.set_ylabel("validation accuracy (%)", fontsize=12)
        axes.set_title(f"accuracy against multiply-adds at step {epoch}", fontsize=13)
        axes.tick_params(labelsize=11)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=10)
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        return tf.image.decode_png(buffer.getvalue(), channels=4)[tf.newaxis]

    def _write_layout(self):
        from tensorboard.plugins.custom_scalar import layout_pb2
        from tensorboard.plugins.custom_scalar import summary as custom_scalar

        def chart(title, tag):
            return layout_pb2.Chart(
                title=title, multiline=layout_pb2.MultilineChartContent(tag=[tag])
            )

        per_metric = [
            chart(f"{name}: a line per operating point", rf"^operating_point/{name}$")
            for name in ("accuracy", "loss")
        ]
        per_point = [
            chart(
                f"accuracy at {format_ratio(r)}: a line per run",
                rf"^accuracy@{re.escape(format_ratio(r))}$",
            )
            for r in self.ratios
        ]
        layout = layout_pb2.Layout(
            category=[
                layout_pb2.Category(title="operating points of each run", chart=per_metric),
                layout_pb2.Category(title="runs compared at each operating point", chart=per_point),
            ]
        )
        with self._writers[None].as_default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar.pb(layout).SerializeToString(), step=0
            )

    def hyperparameters(self):
        """What the HParams plugin records for this run: the model, the
        training methods with their settings, the optimizer, and each
        point's multiply-adds."""
        model = self.model
        methods = {k: v for k, v in model.training_methods.items() if k != "fit"}
        plan = model.plan.as_dict()
        hparams = {
            "model": model.name,
            "method": "+".join(sorted(methods)) or "plan",
            "plan_ratios": ",".join(f"{r:g}" for r in plan["ratios"]),
            "distillation": plan["distillation"],
            "operating_points": ",".join(format_ratio(r) for r in self.ratios),
            "epochs": self.params.get("epochs") if self.params else None,
            "steps_per_epoch": self.params.get("steps") if self.params else None,
            "optimizer": type(model.optimizer).__name__ if model.optimizer else "none",
        }
        hparams.update(model.training_methods.get("fit", {}))
        for method, settings in methods.items():
            hparams.update({f"{method}.{key}": value for key, value in settings.items()})
        learning_rate = getattr(model.optimizer, "learning_rate", None)
        if learning_rate is not None and np.ndim(learning_rate) == 0:
            hparams["learning_rate"] = float(np.asarray(learning_rate))
        for ratio in self.ratios:
            hparams[f"mult_adds@{format_ratio(ratio)}"] = float(self.mult_adds[ratio])
        hparams.update(self.hparams)
        return {key: value for key, value in hparams.items() if value is not None}

    def _write_hparams(self):
        from tensorboard.plugins.hparams import api as hp

        with self._writers[None].as_default():
            hp.hparams(self.hyperparameters(), trial_id=self.run_name)

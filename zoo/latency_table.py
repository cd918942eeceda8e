"""Latency per ratio and batch size, and the widest ratio that meets a deadline."""

import json
import os
import time

import numpy as np
import tensorflow as tf

from zoo.atomic_files import write_json
from zoo.latency import inference_function, probe_images
from zoo.ratio import check_ratio_list


class LatencyTable:
    """Measured latency (median and 95th percentile, in milliseconds) of a
    model at each ratio and batch size, on the machine that measured it.

    Args:
        rows: `[{"ratio", "batch_size", "median_ms", "p95_ms"}, ...]`.
        source: what was measured (a model name or a `.tflite` path).

    Example:
    >>> table = zoo.latency_table(zoo.load("resnet20_cifar10"), batch_sizes=[1, 8])
    >>> table.ratio_for(deadline_ms=2.0)          # widest ratio whose p95 meets 2 ms at batch 1
    >>> table.save("resnet20_latency.json"); zoo.LatencyTable.load("resnet20_latency.json")
    """

    def __init__(self, rows, source=""):
        self.rows = [dict(row) for row in rows]
        self.source = source

    def latency(self, ratio, batch_size=1, statistic="p95_ms"):
        for row in self.rows:
            if row["ratio"] == ratio and row["batch_size"] == batch_size:
                return row[statistic]
        raise KeyError(f"No measurement at ratio {ratio}, batch size {batch_size}.")

    def ratio_for(self, deadline_ms, batch_size=1):
        """The widest measured ratio whose p95 latency at `batch_size` is
        within `deadline_ms`; a `ValueError` naming the fastest when none is."""
        rows = [row for row in self.rows if row["batch_size"] == batch_size]
        if not rows:
            sizes = sorted({row["batch_size"] for row in self.rows})
            raise ValueError(f"No measurements at batch size {batch_size}; measured: {sizes}.")
        meeting = [row["ratio"] for row in rows if row["p95_ms"] <= deadline_ms]
        if not meeting:
            fastest = min(rows, key=lambda row: row["p95_ms"])
            raise ValueError(
                f"No ratio meets {deadline_ms} ms at batch size {batch_size}: the fastest, "
                f"{fastest['ratio']}, takes {fastest['p95_ms']:.3f} ms (95th percentile)."
            )
        return max(meeting)

    def to_dict(self):
        return {"source": self.source, "rows": self.rows}

    def save(self, path):
        write_json(os.fspath(path), self.to_dict(), sort_keys=False)

    @classmethod
    def load(cls, path):
        with open(path) as file:
            data = json.load(file)
        return cls(data["rows"], data.get("source", ""))

    def __repr__(self):
        lines = [f"{'ratio':>6} {'batch':>6} {'median ms':>10} {'p95 ms':>8}"]
        for row in sorted(self.rows, key=lambda r: (r["batch_size"], -r["ratio"])):
            lines.append(
                f"{row['ratio']:>6.2f} {row['batch_size']:>6} {row['median_ms']:>10.3f} "
                f"{row['p95_ms']:>8.3f}"
            )
        return "\n".join(lines)


def latency_table(model, ratios=None, batch_sizes=(1,), repeats=50, warmup=5):
    """Measures a `LatencyTable` of a zoo model, or of a LiteRT file made by
    `zoo.export_litert` (a path: one signature per ratio).

    Args:
        model: a zoo model, or the path of a `.tflite` file.
        ratios: ratios to measure (default: the model's operating points, or
            the file's signatures).
        batch_sizes: batch sizes to measure.
        repeats: timed calls per ratio and batch size.
        warmup: untimed calls before them.
    """
    if isinstance(model, (str, os.PathLike)):
        calls, source, shape = litert_calls(os.fspath(model), ratios)
    else:
        calls, source, shape = keras_calls(model, ratios)
    rows = []
    for batch_size in batch_sizes:
        images = np.asarray(probe_images(batch_size, shape))
        for ratio, call in calls.items():
            times = timed(call, images, repeats, warmup)
            rows.append(
                {
                    "ratio": ratio,
                    "batch_size": int(batch_size),
                    "median_ms": float(np.median(times)),
                    "p95_ms": float(np.percentile(times, 95)),
                }
            )
    return LatencyTable(rows, source)


def timed(call, images, repeats, warmup):
    """Milliseconds of each of `repeats` calls `call(images)`."""
    for _ in range(warmup):
        call(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(images)
        times.append(1000 * (time.perf_counter() - start))
    return times


def keras_calls(model, ratios):
    ratios = check_ratio_list(ratios if ratios is not None else model.operating_points, "ratios")
    forward = inference_function(model)

    def call_at(ratio):
        return lambda images: forward(images, tf.fill([len(images)], ratio)).numpy()

    return {r: call_at(r) for r in ratios}, model.name, model.image_shape


def litert_calls(path, ratios):
    from ai_edge_litert.interpreter import Interpreter

    from zoo.litert_export import signature_name

    interpreter = Interpreter(path)
    signatures = interpreter.get_signature_list()
    available = {int(name.split("_")[1]) / 100: name for name in signatures}
    wanted = sorted(available, reverse=True) if ratios is None else check_ratio_list(ratios)
    missing = [r for r in wanted if signature_name(r) not in signatures]
    if missing:
        raise ValueError(
            f"{path} has no signature for ratios {missing}; it has {sorted(signatures)}."
        )
    runners = {r: interpreter.get_signature_runner(signature_name(r)) for r in wanted}
    details = next(iter(runners.values())).get_input_details()["images"]
    return (
        {r: (lambda images, run=runners[r]: run(images=images)) for r in wanted},
        path,
        tuple(details["shape"][1:]),
    )

"""Wall-clock latency of a forward pass on this machine."""

import time

import numpy as np
import tensorflow as tf


def time_call(function, *args, repeats=30, warmup=5):
    """Median seconds of `function(*args)`, including fetching the result."""
    for _ in range(warmup):
        function(*args).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_function(model):
    """A compiled forward pass `f(images, compute_ratio)` of a dynamic model.

    The ratio is a tensor argument, so one trace serves every ratio.
    """

    @tf.function(reduce_retracing=True)
    def forward(images, compute_ratio):
        return model(images, compute_ratio=compute_ratio, training=False)

    return forward


def measure_latency(model, ratios, batch_size=1, repeats=30):
    """`{ratio: median seconds}` of the dynamic model at each ratio."""
    forward = inference_function(model)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch_size,) + model.image_shape).astype("float32"))
    return {
        float(r): time_call(forward, images, tf.fill([batch_size], float(r)), repeats=repeats)
        for r in ratios
    }

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


def paired_speedup(reference, candidate, repeats=30, warmup=5, confidence=0.9, seed=0):
    """How many times faster `candidate()` runs than `reference()`, with a
    confidence interval.

    The two are timed in alternation, in turns of one call each (the order
    within a turn alternating too), so a slow spell of the machine (another
    process, a frequency change) slows both alike instead of whichever was
    timed during it. Each turn gives one ratio of the two times; the
    speedup is their median, and the interval a bootstrap of that median.

    Args:
        reference: a function of no arguments returning a tensor (fetched).
        candidate: the same, for the function compared with `reference`.
        repeats: number of turns.
        warmup: untimed calls of each before the first turn.
        confidence: the interval's coverage.
        seed: seed of the bootstrap.

    Returns:
        A dict: `"speedup"` (median of reference time over candidate time),
        `"low"` and `"high"` (its interval), `"reference"` and `"candidate"`
        (median seconds of each).

    Example:
    >>> paired_speedup(lambda: full(images), lambda: half(images))["speedup"]
    """
    for _ in range(warmup):
        reference().numpy()
        candidate().numpy()
    times = np.empty((repeats, 2))
    for turn in range(repeats):
        order = (0, 1) if turn % 2 == 0 else (1, 0)
        for index in order:
            function = (reference, candidate)[index]
            start = time.perf_counter()
            function().numpy()
            times[turn, index] = time.perf_counter() - start
    ratios = times[:, 0] / times[:, 1]
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, (1000, repeats)), axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return {
        "speedup": float(np.median(ratios)),
        "low": float(low),
        "high": float(high),
        "reference": float(np.median(times[:, 0])),
        "candidate": float(np.median(times[:, 1])),
    }


def inference_function(model):
    """A compiled forward pass `f(images, compute_ratio)` of a dynamic model.

    The ratio is a tensor argument, so one trace serves every ratio.
    """

    @tf.function(reduce_retracing=True)
    def forward(images, compute_ratio):
        return model(images, compute_ratio=compute_ratio, training=False)

    return forward


def probe_images(batch_size, image_shape):
    """A fixed batch of random images (0 to 255) to time a model on."""
    shape = (batch_size,) + tuple(image_shape)
    return tf.constant(np.random.default_rng(0).uniform(0, 255, shape).astype("float32"))


def measure_latency(model, ratios, batch_size=1, repeats=30):
    """`{ratio: median seconds}` of the dynamic model at each ratio."""
    forward = inference_function(model)
    images = probe_images(batch_size, model.image_shape)
    return {
        float(r): time_call(forward, images, tf.fill([batch_size], float(r)), repeats=repeats)
        for r in ratios
    }

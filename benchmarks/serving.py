"""Serving `resnet20_cifar10` under load: fixed ratios against the controller.

One LiteRT file of the preset (`zoo.export_litert`, ratios 1.0, 0.75, 0.5,
0.25) serves CIFAR-10 test images one at a time (batch 1, XNNPACK on one
thread) to an open-loop Poisson stream of requests generated in this
process, at 0.5, 1, 2 and 4 times the full-width capacity (the inverse of
its median latency). Three policies serve the same arrivals: fixed ratio
1.0, fixed 0.25, and `zoo.serving.RatioController` with the latency table
measured first (`zoo.latency_table`). A request's latency runs from its
arrival to the end of its inference; the deadline is three times the full
width's p95 latency. Each setting serves 2,000 requests (bounded in time).

Usage: `python benchmarks/serving.py [--quick]`
"""

import argparse
import collections
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from zoo.litert_export import signature_name  # noqa: E402

PRESET = "resnet20_cifar10"
RATIOS = (1.0, 0.75, 0.5, 0.25)
LOADS = (0.5, 1.0, 2.0, 4.0)
DEADLINE_OVER_P95 = 3.0
RATE_WINDOW = 0.05  # seconds of arrivals the server counts to know the current rate


def runners(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(path, num_threads=1)
    return {r: interpreter.get_signature_runner(signature_name(r)) for r in RATIOS}


def serve(run, images, labels, arrivals, policy, deadline_ms):
    """Serves each request at its arrival (or when the server frees up)."""
    count = len(arrivals)
    latency, chosen, correct = np.empty(count), np.empty(count), np.empty(count, bool)
    start = time.perf_counter()
    for i in range(count):
        now = time.perf_counter() - start
        if arrivals[i] > now:
            time.sleep(arrivals[i] - now)
            now = time.perf_counter() - start
        arrived = int(np.searchsorted(arrivals, now, side="right"))
        recent = arrived - int(np.searchsorted(arrivals, now - RATE_WINDOW, side="right"))
        rate = recent / (1000 * RATE_WINDOW)  # requests per ms over the last window
        ratio = policy(max(arrived - i, 1), 1000 * (now - arrivals[i]), rate)
        logits = run[ratio](images=images[i % len(images)][np.newaxis])["logits"]
        latency[i] = 1000 * (time.perf_counter() - start - arrivals[i])
        chosen[i] = ratio
        correct[i] = int(np.argmax(logits)) == labels[i % len(labels)]
    mix = collections.Counter(chosen.tolist())
    return {
        "p50_ms": float(np.percentile(latency, 50)),
        "p95_ms": float(np.percentile(latency, 95)),
        "p99_ms": float(np.percentile(latency, 99)),
        "within_deadline": float(np.mean(latency <= deadline_ms)),
        "accuracy": float(np.mean(correct)),
        "ratio_mix": {f"{r:g}": mix[r] / count for r in RATIOS if mix[r]},
    }


def main(quick=False):
    model = zoo.load(PRESET)
    images, labels = zoo.datasets.load_arrays("cifar10", "test[:2000]")
    images = images.astype("float32")
    count = 300 if quick else 2000
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        zoo.export_litert(model, path, ratios=RATIOS)
        table = zoo.latency_table(path, repeats=50 if quick else 300)
        run = runners(path)
        full_median = table.latency(1.0, 1, "median_ms")
        deadline = DEADLINE_OVER_P95 * table.latency(1.0, 1, "p95_ms")
        capacity = 1000.0 / full_median
        controller = zoo.serving.RatioController(table, deadline)
        policies = {
            "fixed 1.0": lambda waiting, waited, rate: 1.0,
            "fixed 0.25": lambda waiting, waited, rate: 0.25,
            "controller": controller.choose,
        }
        rows = []
        for load in LOADS:
            rate = load * capacity
            arrivals = np.cumsum(np.random.default_rng(0).exponential(1 / rate, count))
            for name, policy in policies.items():
                served = serve(run, images, labels, arrivals, policy, deadline)
                rows.append({"load": load, "requests_per_second": rate, "policy": name, **served})
                print(rows[-1], flush=True)
    results = {
        "preset": PRESET,
        "deadline_ms": deadline,
        "capacity_per_second": capacity,
        "latency_table": table.to_dict(),
        "requests_per_setting": count,
        "machine": machine(),
        "rows": rows,
    }
    name = "serving_quick" if quick else "serving"
    write_results(name, results, markdown(results), readme=not quick)
    return results


def markdown(results):
    lines = [
        f"`{results['preset']}` served one image at a time from its LiteRT file (one thread); "
        f"deadline {results['deadline_ms']:.2f} ms (three times the full width's p95), "
        f"full-width capacity {results['capacity_per_second']:.0f} requests/s; "
        f"{results['requests_per_setting']} Poisson arrivals per setting.",
        "",
        "| load | policy | p50 ms | p95 ms | p99 ms | within deadline | accuracy (%) | ratios served |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        mix = ", ".join(f"{r}: {100 * f:.0f}%" for r, f in row["ratio_mix"].items())
        lines.append(
            f"| {row['load']:g}x | {row['policy']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {100 * row['within_deadline']:.1f}% | "
            f"{100 * row['accuracy']:.2f} | {mix} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 requests per setting")
    main(parser.parse_args().quick)

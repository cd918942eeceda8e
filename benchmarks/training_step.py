"""How fast the training step runs: the split core against the old one and plain Keras.

Times `fit` on ResNet-20 (CIFAR-10 shapes, batch 128, SGD with momentum) in
images per second, each measurement in a fresh process, the versions in
alternation, over several rounds, median reported:

- `plan_1`: the dynamic model at plan `[1.0]` (plain IDP training);
- `sandwich_3`: plan `[1.0, 0.5, 0.25]` with in-place distillation 1.0;
- `plain`: a plain Keras model of the same network (`zoo.extract_subnet`
  at 1.0: standard layers, Keras's own `train_step`);
- `plan_1_two_replicas`: `plan_1` under `MirroredStrategy` on two logical
  CPUs (this machine's two cores; no speedup is expected, the figure is
  the overhead of replication).

Each measurement also times the process's first epoch, whose tracing of
the step is most of it.

`plan_1` and `sandwich_3` run on this checkout and on `--against REV` (a
git worktree). Targets: the new step within 5% of the old, and within 10%
of plain Keras at `plan_1`. Run it with the machine to itself.

Results go to `benchmarks/results/training_step.{json,md}`.

Usage:
    python benchmarks/training_step.py --against 7601d11 [--rounds 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = 128
STEPS = 10
TIMED_EPOCHS = 4
CONFIGS = ("plan_1", "sandwich_3", "plain", "plan_1_two_replicas")
VERSIONED = ("plan_1", "sandwich_3")


def measure(root, config):
    """Images per second of `fit` for `config`, with the code under `root`."""
    if config.endswith("two_replicas"):
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    sys.path.insert(0, root)
    import keras
    import tensorflow as tf

    import zoo

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH * STEPS, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))
    two = config.endswith("two_replicas")
    strategy = (
        tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]) if two else tf.distribute.get_strategy()
    )
    with strategy.scope():
        model = zoo.build(
            "resnet20", num_classes=10, **({"synchronized_batch_norm": True} if two else {})
        )
        if config == "plain":
            model = zoo.extract_subnet(model, 1.0)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    if config == "sandwich_3":
        model.set_training_plan([1.0, 0.5, 0.25], distillation=1.0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # trace and warm up
    first_epoch = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=BATCH, epochs=TIMED_EPOCHS, verbose=0)
    images = TIMED_EPOCHS * len(x)
    rate = images / (time.perf_counter() - start)
    return rate, 1e3 * (time.process_time() - cpu) / images, first_epoch


def run_measure(root, config):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, __file__, "--measure", root, config],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return tuple(float(value) for value in result.stdout.strip().splitlines()[-1].split())


def markdown(medians, cpu, first_epoch, against):
    new, old, plain = medians["new"], medians["old"], medians["new"]["plain"]
    lines = [
        "| step | new code (images/s) | old code | new / old | new / plain Keras "
        "| CPU ms per image, new | old | old / new | first epoch (s), new | old |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in VERSIONED:
        new_cpu, old_cpu = cpu["new"][config], cpu["old"][config]
        lines.append(
            f"| {config} | {new[config]:.0f} | {old[config]:.0f} | {new[config] / old[config]:.3f} "
            f"| {new[config] / plain:.3f} | {new_cpu:.2f} | {old_cpu:.2f} | {old_cpu / new_cpu:.3f} "
            f"| {first_epoch['new'][config]:.1f} | {first_epoch['old'][config]:.1f} |"
        )
    lines.append(
        f"| plain Keras model of the same network | {plain:.0f} | | | 1.000 "
        f"| {cpu['new']['plain']:.2f} | | | {first_epoch['new']['plain']:.1f} | |"
    )
    two = new["plan_1_two_replicas"]
    lines.append(
        f"| plan_1 on two replicas (MirroredStrategy, 2 logical CPUs) | {two:.0f} | | "
        f"| {two / plain:.3f} | {cpu['new']['plan_1_two_replicas']:.2f} | | "
        f"| {first_epoch['new']['plan_1_two_replicas']:.1f} | |"
    )
    lines += [
        "",
        f"ResNet-20, batch {BATCH}, random CIFAR-10-shaped images, SGD with momentum, accuracy "
        "as the compiled metric; median of "
        "the rounds (the order reversed every other round), each measurement a fresh process "
        f"timing {TIMED_EPOCHS} epochs of {STEPS} steps after one of warm-up; old code: "
        f"`{against}`. Images per second are wall-clock, CPU milliseconds per image the "
        "process's CPU time. On this shared virtual machine both move with the host's load: "
        "rounds of the same code differ by up to 30% (`samples` in the JSON), so smaller "
        "differences are not resolved. Targets: new within 5% of old, and within 10% of "
        f"plain Keras at plan_1. The first epoch ({STEPS} steps) is mostly the tracing of "
        "the step.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="the earlier revision (a commit)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of measurements (default: 3)")
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(*measure(*args.measure))
        return
    work = tempfile.mkdtemp()
    old_root = os.path.join(work, "old")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "-q", old_root, args.against], check=True)
    samples = {"new": {c: [] for c in CONFIGS}, "old": {c: [] for c in VERSIONED}}
    try:
        for round_index in range(args.rounds):
            # Every other round the other order: no version always runs first.
            for config in CONFIGS if round_index % 2 == 0 else reversed(CONFIGS):
                versions = [("new", ROOT)] + ([("old", old_root)] if config in VERSIONED else [])
                for version, root in versions if round_index % 2 == 0 else reversed(versions):
                    samples[version][config].append(run_measure(root, config))
                print(config, {k: v.get(config) for k, v in samples.items()}, flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old_root], check=True)
    medians, cpu, first_epoch = (
        {
            k: {c: float(np.median([m[i] for m in v])) for c, v in d.items()}
            for k, d in samples.items()
        }
        for i in (0, 1, 2)
    )
    sys.path.insert(0, ROOT)
    from benchmarks.common import machine, write_results

    against = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", args.against],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    data = {"against": against, "images_per_second": medians, "cpu_ms_per_image": cpu}
    data.update(first_epoch_seconds=first_epoch, samples=samples, batch_size=BATCH)
    data.update(machine=machine())
    markdown_text = markdown(medians, cpu, first_epoch, against)
    write_results("training_step", data, markdown_text, readme=False)
    print(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()

"""The training step, weight for weight, against an earlier checkout.

Trains every training method (IDP, a weighted plan with distillation, the
sandwich rule, single-path sampling, TESLA, R-TESLA, ATP, profile-scheduler
stages, non-uniform sampling) for two epochs on 48 random images, seed 0,
on each of the five architectures where the method applies, once with this
checkout and once with `--against REV` (a git worktree), each in its own
process, and reports the largest weight difference per (architecture,
method). A refactoring of the training core must leave it at 0.

Results go to `benchmarks/results/training_equivalence.{json,md}`.

Usage:
    python benchmarks/training_equivalence.py --against 7601d11
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def train_all(root, out, only=()):
    """Trains every (architecture, method) with the code under `root`."""
    sys.path.insert(0, root)
    import keras

    import callbacks
    import zoo

    rng = np.random.RandomState(0)

    def data(shape, n=48):
        return rng.uniform(0, 255, (n,) + shape).astype("float32"), rng.randint(0, 10, n)

    def build(arch, **kw):
        if arch == "mlp":
            return zoo.build(
                "mlp",
                input_shape=(8, 8, 1),
                num_classes=10,
                operating_points=[0.25, 0.5, 1.0],
                **kw,
            )
        if arch == "lcnet_resnet20":
            return zoo.build(arch, num_classes=10, operating_points=[0.25, 0.5, 1.0], **kw)
        return zoo.build(
            arch,
            num_classes=10,
            operating_points=[0.25, 0.5, 1.0],
            **({"width": 0.25} if arch == "vgg16" else {}),
            **kw,
        )

    def methods(arch, x, y):
        val = (x[:16], y[:16])
        R = [1.0, 0.5, 0.25]
        m = {
            "idp": (lambda: {}, []),
            "distill_plan": (lambda: {}, "plan"),
            "sandwich": (
                lambda: {},
                [callbacks.SubnetSampler(ratios=R, sandwich=True, num_ratios=3, seed=0)],
            ),
            "single_path": (lambda: {}, [callbacks.SubnetSampler(ratios=R, seed=0)]),
        }
        if arch != "lcnet_resnet20":
            m["tesla"] = (
                lambda: {"profile": "linear"},
                [
                    callbacks.TaskwiseEarlyStopping(
                        R, validation_data=val, patience=1, steps_per_round=2, seed=0
                    )
                ],
            )
            m["r_tesla"] = (
                lambda: {"profile": "linear"},
                [
                    callbacks.TaskwiseEarlyStopping(
                        R,
                        validation_data=val,
                        patience=1,
                        steps_per_round=2,
                        order="random",
                        seed=0,
                    )
                ],
            )
            m["atp"] = (
                lambda: {"profile": zoo.profiles.Profile("linear", trainable=True)},
                [
                    callbacks.TaskwiseEarlyStopping(
                        R,
                        validation_data=val,
                        patience=1,
                        steps_per_round=2,
                        alternate_profile=True,
                        seed=0,
                    )
                ],
            )
            m["profile_stages"] = (
                lambda: {},
                [callbacks.ProfileScheduler(stages=[((0.0, 0.5), 1), ((0.5, 1.0), 1)])],
            )
        if arch in ("mlp", "vgg16"):
            m["nonuniform"] = (
                lambda: {},
                [
                    callbacks.SubnetSampler(
                        ratios=R, sandwich=True, num_ratios=3, nonuniform=True, seed=0
                    )
                ],
            )
        return m

    for arch in only or ["mlp", "resnet20", "mobilenet", "vgg16", "lcnet_resnet20"]:
        x, y = data((8, 8, 1) if arch == "mlp" else (32, 32, 3))
        for name, (kwargs, cbs) in methods(arch, x, y).items():
            keras.utils.set_random_seed(0)
            model = build(arch, **kwargs())
            model.compile(
                optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            if cbs == "plan":
                model.set_training_plan([1.0, 0.5, 0.25], weights=[1.0, 0.7, 0.5], distillation=0.6)
                cbs = []
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=cbs)
            np.savez(os.path.join(out, f"{arch}__{name}.npz"), *model.get_weights())


def compare(old_dir, new_dir):
    rows = {}
    for path in sorted(glob.glob(os.path.join(new_dir, "*.npz"))):
        name = os.path.basename(path)
        old, new = np.load(os.path.join(old_dir, name)), np.load(path)
        rows[name[:-4].replace("__", "/")] = max(
            float(np.nanmax(np.abs(old[k] - new[k])))
            if np.array_equal(np.isnan(old[k]), np.isnan(new[k]))
            else float("inf")
            for k in old.files
        )
    return rows


def markdown(rows, against):
    lines = ["| architecture / method | largest weight difference |", "| --- | --- |"]
    lines += [f"| {key} | {value:.3g} |" for key, value in rows.items()]
    lines += ["", f"Two epochs of each method, this checkout against `{against}`, seed 0."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="the earlier revision (a commit)")
    parser.add_argument("--train", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two folders")
    args = parser.parse_args()
    if args.train:
        return train_all(*args.train)
    if args.compare:
        old_dir, new_dir = args.compare
    else:
        work = tempfile.mkdtemp()
        old_root = os.path.join(work, "old")
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "-q", old_root, args.against], check=True
        )
        old_dir, new_dir = os.path.join(work, "old_out"), os.path.join(work, "new_out")
        for root, out in ((old_root, old_dir), (ROOT, new_dir)):
            os.makedirs(out)
            subprocess.run([sys.executable, __file__, "--train", root, out], check=True)
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old_root], check=True)
    from benchmarks.common import machine, write_results

    rows = compare(old_dir, new_dir)
    data = {"against": args.against, "largest_weight_difference": rows, "machine": machine()}
    write_results("training_equivalence", data, markdown(rows, args.against), readme=False)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

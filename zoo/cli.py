"""`python -m zoo`: train or evaluate a zoo model, print a table per ratio.

With no arguments it trains the MLP on the `digits` dataset that
scikit-learn ships (offline; about a minute on a 2-core CPU, an estimate,
not benchmarked) at the ratios 1.0, 0.75, 0.5 and 0.25 together, then
prints accuracy, multiply-adds and measured latency at each.
"""

import argparse
import math
import os
import sys
import tempfile
import zipfile

import keras
import numpy as np

from zoo import datasets, distribution, profiles
from zoo.batchnorm import calibrate_batchnorm
from zoo.cost import cost
from zoo.evaluation import evaluate_ratios
from zoo.latency import measure_latency
from zoo.latency_table import latency_table
from zoo.layers import DynamicBatchNormalization
from zoo.models import build, list_models
from zoo.presets import get_preset, list_presets, load
from zoo.ratio import check_ratio_list

DEFAULT_RATIOS = "1.0,0.75,0.5,0.25"


def parse_ratios(text):
    try:
        ratios = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"ratios must be comma-separated numbers; got {text!r}"
        ) from None
    try:
        return check_ratio_list(ratios, "--ratios")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def output_path(text):
    """A `.keras` path whose folder exists and can be written: checked before
    any training, so a finished run is never lost to a bad path."""
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"must end with .keras; got {text!r}")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"the folder {folder} cannot be written")
    return text


def model_source(text):
    """A saved `.keras` file, or a preset name."""
    if text in preset_names():
        return text
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a file nor a preset; presets: {', '.join(preset_names())}"
        )
    if not zipfile.is_zipfile(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a .keras file (the zip archive `model.save` writes): it is "
            "empty, truncated or of another format"
        )
    return text


def tflite_path(text):
    if not text.endswith(".tflite"):
        raise argparse.ArgumentTypeError(f"must end with .tflite; got {text!r}")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"the folder {folder} does not exist or cannot be written")
    return text


def export(args):
    """Writes the LiteRT file, then runs every signature against the Keras model."""
    from ai_edge_litert.interpreter import Interpreter

    from zoo.litert_export import export_litert

    model, dataset = load_for_evaluation(args.model_path, None)
    calibration = None
    if args.quantize == "int8":
        calibration = calibration_images(args.model_path, dataset, model)
    names = export_litert(
        model,
        args.output,
        ratios=args.ratios,
        quantize=args.quantize,
        representative_data=calibration,
    )
    interpreter = Interpreter(args.output)
    images = np.random.default_rng(0).uniform(0, 255, (8, *model.image_shape)).astype("float32")
    print(f"Wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB)")
    print(f"{'signature':>10} {'largest difference from Keras (relative)':>42}")
    for name, ratio in names.items():
        logits = interpreter.get_signature_runner(name)(images=images)["logits"]
        expected = model(images, compute_ratio=ratio).numpy()
        difference = np.max(np.abs(logits - expected)) / np.max(np.abs(expected))
        print(f"{name:>10} {difference:>42.2e}")
    return names


def calibration_images(source, dataset, model, count=300):
    """Training images for int8 calibration: as a preset's recipe fed them."""
    from zoo import recipes

    train = datasets.load_arrays(dataset, "train[:2000]")
    if source in preset_names() and get_preset(source)["recipe"].get("augment"):
        batches = recipes.training_dataset(train, get_preset(source)["recipe"], seed=0)
        images = np.concatenate([b.numpy() for b, _ in batches.take(-(-count // 32))])
        return images[:count]
    return train[0][:count].astype("float32")


def profile_source(text):
    """A `.tflite` file, or what `model_source` accepts."""
    if text.endswith(".tflite"):
        if not os.path.isfile(text):
            raise argparse.ArgumentTypeError(f"no such file: {text!r}")
        return text
    return model_source(text)


def profile(args):
    source = args.model_path
    if not source.endswith(".tflite"):
        source = load_for_evaluation(source, None)[0]
    table = latency_table(source, batch_sizes=[args.batch_size], repeats=args.repeats)
    print(table)
    if args.output:
        table.save(args.output)
    if args.deadline_ms:
        try:
            ratio = table.ratio_for(args.deadline_ms, args.batch_size)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        print(f"Widest ratio within {args.deadline_ms} ms (95th percentile): {ratio}")
    return table


def preset_names():
    return [preset["name"] for preset in list_presets()]


def make_parser():
    parser = argparse.ArgumentParser(
        prog="python -m zoo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{train,evaluate,presets,models}")
    defaults = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}
    train = commands.add_parser("train", help="train a model, then evaluate it", **defaults)
    train.add_argument("--model", default="mlp", choices=list_models(), help="architecture")
    train.add_argument("--epochs", type=positive_int, default=40, help="passes over the data")
    train.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per training step"
    )
    train.add_argument(
        "--learning-rate", type=positive_float, default=2e-3, help="Adam's learning rate"
    )
    train.add_argument("--width", type=positive_float, default=1.0, help="channel multiplier")
    train.add_argument(
        "--profile",
        default="uniform",
        choices=profiles.list_profiles(),
        help="IDP profile: how much each channel counts",
    )
    train.add_argument(
        "--output", type=output_path, help="save the trained model to this .keras file"
    )
    train.add_argument(
        "--log-dir",
        help="write TensorBoard logs here: Keras's scalars, and accuracy per ratio on the "
        "test images (one run per ratio); open with `tensorboard --logdir DIR`",
    )
    train.add_argument(
        "--distribute",
        default="none",
        choices=distribution.STRATEGIES,
        help="train under a tf.distribute strategy: mirrored (every local GPU, or the CPU); "
        "--batch-size is then the global batch",
    )
    train.add_argument(
        "--preset",
        choices=preset_names(),
        metavar="PRESET",
        help="reproduce a preset from its recipe (see `python -m zoo presets`); its weights go "
        "to --weights-dir and its registry entry is updated",
    )
    train.add_argument(
        "--weights-dir",
        help="where preset weights are written (default: the project's saved_models/, "
        "whose hashes the registry records)",
    )
    train.add_argument(
        "--checkpoint-dir",
        help="checkpoint folder (ShardedBackupAndRestore): an interrupted preset run resumes "
        "from it (default: ZOO_RUNS_DIR or KERAS_HOME/zoo/runs, then PRESET-<recipe hash>)",
    )
    train.add_argument(
        "--recalibrate",
        action="store_true",
        help="with --preset: no training; recalibrate the published weights' batch norm "
        "and publish them again",
    )
    train.add_argument(
        "--from-weights",
        metavar="PATH",
        help="with --preset: no training; publish these weights, trained elsewhere by the "
        "preset's recipe (a benchmark run's .weights.h5)",
    )
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model or a preset", **defaults
    )
    evaluate.add_argument(
        "model_path",
        type=model_source,
        metavar="MODEL",
        help="a .keras file saved by `train --output`, or a preset name",
    )
    export = commands.add_parser(
        "export", help="write a LiteRT file with a signature per ratio, and check it", **defaults
    )
    export.add_argument(
        "model_path", type=model_source, metavar="MODEL", help="a preset name or a .keras file"
    )
    export.add_argument("output", type=tflite_path, help="the .tflite file to write")
    export.add_argument(
        "--quantize",
        choices=["dynamic", "int8"],
        help="dynamic-range (int8 weights) or full-integer int8, calibrated on 300 training "
        "images as the preset's recipe fed them (default: float32)",
    )
    export.add_argument(
        "--ratios", type=parse_ratios, help="operating points to export (default: the model's)"
    )
    profile = commands.add_parser(
        "profile", help="measure latency per ratio; the ratio that meets a deadline", **defaults
    )
    profile.add_argument(
        "model_path",
        type=profile_source,
        metavar="MODEL",
        help="a preset name, a .keras file, or a .tflite file from zoo.export_litert",
    )
    profile.add_argument(
        "--deadline-ms", type=positive_float, help="print the widest ratio whose p95 meets it"
    )
    profile.add_argument("--batch-size", type=positive_int, default=1, help="images per call")
    profile.add_argument("--repeats", type=positive_int, default=50, help="timed calls per ratio")
    profile.add_argument("--output", help="save the table as JSON here")
    commands.add_parser("presets", help="print the pretrained presets as a table", **defaults)
    commands.add_parser("models", help="print the architectures", **defaults)
    for command in (train, evaluate):
        command.add_argument(
            "--dataset",
            choices=datasets.list_datasets(),
            help="dataset (default: digits for train, the preset's own for a preset)",
        )
        command.add_argument(
            "--data-dir", help=f"local data directory (default: ${datasets.DATA_DIR_ENV})"
        )
        command.add_argument(
            "--ratios",
            type=parse_ratios,
            default=parse_ratios(DEFAULT_RATIOS),
            help="compute ratios to train and evaluate, comma-separated, each in (0, 1]",
        )
        command.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def print_models():
    print(f"{'architecture':<16} {'parameters':>11} {'multiply-adds at 1.0':>21}")
    for name in list_models():
        model = build(name)
        counted = cost(model, 1.0, data=default_images(model))
        print(f"{name:<16} {model.count_params():>11,} {counted['flops']:>21,.0f}")


def default_images(model):
    """A few images for a model whose cost depends on its input, else None."""
    if not model.cost_depends_on_data:
        return None
    return np.random.default_rng(0).uniform(0, 255, (8, *model.image_shape)).astype("float32")


def reproduce_preset(args):
    """`train --preset NAME`: train it from its recipe, or publish it again
    (`--recalibrate`) or from weights trained elsewhere (`--from-weights`)."""
    from zoo import preset_training

    if args.recalibrate and args.from_weights:
        raise SystemExit("Give --recalibrate or --from-weights, not both.")
    if args.recalibrate:
        return preset_training.recalibrate_preset(
            args.preset, args.data_dir, args.weights_dir, args.seed
        )
    if args.from_weights:
        return preset_training.publish_trained_weights(
            args.preset, args.from_weights, args.data_dir, args.weights_dir, args.seed
        )
    return preset_training.train_preset(
        args.preset, args.data_dir, args.weights_dir, args.checkpoint_dir, args.seed
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser()
    args = parser.parse_args(argv or ["train"])
    if args.command is None:
        parser.error("give a command: train, evaluate, export, profile, presets or models")
    if args.command == "presets":
        return print(list_presets())
    if args.command == "models":
        return print_models()
    if args.command == "profile":
        return profile(args)
    if args.command == "export":
        return export(args)
    keras.utils.set_random_seed(args.seed)
    if args.command == "train" and not args.preset:
        if args.recalibrate:
            raise SystemExit("--recalibrate republishes a preset: give it with --preset NAME.")
        if args.from_weights:
            raise SystemExit("--from-weights publishes a preset: give it with --preset NAME.")
    if args.command == "train" and args.preset:
        return reproduce_preset(args)
    if args.command == "evaluate":
        model, dataset = load_for_evaluation(args.model_path, args.dataset)
    else:
        dataset = args.dataset or "digits"
        train = datasets.load_arrays(dataset, "train", args.data_dir)
    test = datasets.load_arrays(dataset, "test", args.data_dir)
    if args.command == "train":
        model = train_model(args, train, test, dataset)
    print_table(model, test, args.ratios)
    return model


def load_for_evaluation(source, dataset):
    """The model of a preset name or a `.keras` file, and the dataset to
    evaluate it on (a preset's own by default)."""
    if source in preset_names():
        return load(source), dataset or get_preset(source)["dataset"]
    return keras.saving.load_model(source), dataset or "digits"


def train_model(args, train, test, dataset):
    distributed = args.distribute != "none"
    with distribution.scope(args.distribute) as strategy:
        model = build(
            args.model,
            input_shape=train[0].shape[1:],
            num_classes=datasets.NUM_CLASSES[dataset],
            operating_points=args.ratios,
            width=args.width,
            profile=args.profile,
            synchronized_batch_norm=distributed,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    if distributed:
        print(f"Training on {strategy.num_replicas_in_sync} replica(s) ({args.distribute})")
    # Every step trains all the ratios, widest first: one model for all.
    model.set_training_plan(args.ratios)
    print(f"Training {args.model} on {dataset} at ratios {args.ratios}")
    model.fit(
        *train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=2 if not sys.stdout.isatty() else 1,
        callbacks=tensorboard_callbacks(args.log_dir, test, args.ratios),
    )
    if any(isinstance(l, DynamicBatchNormalization) for l in model.dynamic_layers):
        calibrate_batchnorm(model, train[0], args.ratios)
    if args.output:
        save(model, args.output)
    return model


def tensorboard_callbacks(log_dir, test, ratios):
    if not log_dir:
        return []
    from callbacks import OperatingPointLogger

    return [
        keras.callbacks.TensorBoard(log_dir),
        OperatingPointLogger(test, ratios=ratios, log_dir=log_dir),
    ]


def save(model, path):
    """Saves the trained model; if that fails anyway (a disk full, a folder
    removed meanwhile), saves it in the temporary folder and says where."""
    try:
        model.save(path)
        print(f"Saved {path}")
    except OSError as error:
        fallback = os.path.join(tempfile.mkdtemp(prefix="zoo-"), os.path.basename(path))
        model.save(fallback)
        print(f"Could not save {path} ({error}); saved the model to {fallback} instead.")


def print_table(model, test, ratios):
    progress = keras.utils.Progbar(len(ratios), unit_name="ratio")
    print("Evaluating")
    accuracy = evaluate_ratios(model, test, ratios, progress=progress)
    latency = measure_latency(model, ratios, batch_size=1)
    full = mult_adds(model, 1.0, test[0])
    print(f"\n{'ratio':>6} {'accuracy':>9} {'mult-adds':>12} {'of full':>8} {'latency b=1':>12}")
    for ratio in ratios:
        flops = mult_adds(model, ratio, test[0])
        print(
            f"{ratio:>6.2f} {100 * accuracy[ratio]:>8.2f}% {flops:>12,.0f} "
            f"{flops / full:>8.1%} {1000 * latency[ratio]:>9.3f} ms"
        )
    return accuracy


def mult_adds(model, ratio, images):
    """Multiply-adds per input; for LC-Net, whose cost depends on the input,
    the mean over (at most 1000 of) `images`."""
    data = images[:1000] if model.cost_depends_on_data else None
    return cost(model, ratio, data=data)["flops"]

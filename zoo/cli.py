"""`python -m zoo`: train or evaluate a zoo model, print a table per ratio.

With no arguments it trains the MLP on the `digits` dataset that
scikit-learn ships (offline; about a minute on a 2-core CPU, an estimate,
not benchmarked) at the ratios 1.0, 0.75, 0.5 and 0.25 together, then
prints accuracy, multiply-adds and measured latency at each.
"""

import argparse
import sys

import keras

from zoo import datasets, distribution
from zoo.batchnorm import calibrate_batchnorm
from zoo.cost import cost
from zoo.evaluation import evaluate_ratios
from zoo.latency import measure_latency
from zoo.layers import DynamicBatchNormalization
from zoo.models import build, list_models
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


def make_parser():
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="train a model, then evaluate it")
    train.add_argument("--model", default="mlp", choices=list_models())
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    train.add_argument("--profile", default="uniform")
    train.add_argument("--output", help="save the trained model to this .keras file")
    train.add_argument(
        "--distribute",
        default="none",
        choices=distribution.STRATEGIES,
        help="train under a tf.distribute strategy: mirrored (every local GPU, or the CPU); "
        "--batch-size is then the global batch (default: none)",
    )
    train.add_argument(
        "--preset",
        help="reproduce a preset from its recipe (zoo.list_presets()); its weights go to "
        "--weights-dir and its registry entry is updated",
    )
    train.add_argument(
        "--weights-dir",
        help="where preset weights are written (default: the project's saved_models/, "
        "whose hashes the registry records)",
    )
    train.add_argument(
        "--checkpoint-dir",
        help="Checkpoint folder (ShardedBackupAndRestore): an interrupted preset run resumes from it "
        "(default: ZOO_RUNS_DIR or KERAS_HOME/zoo/runs, then PRESET-<recipe hash>)",
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
    evaluate = commands.add_parser("evaluate", help="evaluate a saved model")
    evaluate.add_argument("model_path", help="a .keras file saved by `train`")
    for command in (train, evaluate):
        command.add_argument("--dataset", default="digits", choices=datasets.list_datasets())
        command.add_argument(
            "--data-dir", help=f"local data directory (default: ${datasets.DATA_DIR_ENV})"
        )
        command.add_argument("--ratios", type=parse_ratios, default=parse_ratios(DEFAULT_RATIOS))
        command.add_argument("--seed", type=int, default=0)
    return parser


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
    args = make_parser().parse_args(argv or ["train"])
    keras.utils.set_random_seed(args.seed)
    if args.command == "train" and not args.preset:
        if args.recalibrate:
            raise SystemExit("--recalibrate republishes a preset: give it with --preset NAME.")
        if args.from_weights:
            raise SystemExit("--from-weights publishes a preset: give it with --preset NAME.")
    if args.command == "train" and args.preset:
        return reproduce_preset(args)
    test = datasets.load_arrays(args.dataset, "test", args.data_dir)
    if args.command == "evaluate":
        model = keras.saving.load_model(args.model_path)
    else:
        train = datasets.load_arrays(args.dataset, "train", args.data_dir)
        model = train_model(args, train)
    print_table(model, test, args.ratios)
    return model


def train_model(args, train):
    distributed = args.distribute != "none"
    with distribution.scope(args.distribute) as strategy:
        model = build(
            args.model,
            input_shape=train[0].shape[1:],
            num_classes=datasets.NUM_CLASSES[args.dataset],
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
    print(f"Training {args.model} on {args.dataset} at ratios {args.ratios}")
    model.fit(
        *train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=2 if not sys.stdout.isatty() else 1,
    )
    if any(isinstance(l, DynamicBatchNormalization) for l in model.dynamic_layers):
        calibrate_batchnorm(model, train[0], args.ratios)
    if args.output:
        model.save(args.output)
        print(f"Saved {args.output}")
    return model


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

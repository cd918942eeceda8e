"""Training recipes: how each preset is trained, as callbacks for `model.fit`.

A recipe is a dict saved in the preset registry, e.g.

```python
{"method": "r_tesla", "epochs": 60, "batch_size": 128, "learning_rate": 1e-3,
 "ratios": [1.0, 0.9, ..., 0.1], "round": 200, "patience": 3}
```

Optimization keys (all optional): `"optimizer"` (`"adam"`, the default,
or `"sgd"`: Nesterov momentum 0.9), `"learning_rate"`, `"schedule"`
(`"constant"`; `"cosine"`: linear warm-up over `"warmup_epochs"`, then
cosine decay to zero at the last epoch; `"linear"`: the same warm-up, then
linear decay to zero, a one-cycle schedule with a long warm-up),
`"weight_decay"` (decoupled, on kernels only), `"label_smoothing"`,
`"ema"` (the momentum of an exponential moving average of the weights,
e.g. 0.999, swapped in when training ends) and `"augment"` (random
4-pixel-shift crops and horizontal flips for CIFAR-10, see
`zoo.datasets.load`).

Weight decay is Keras's decoupled one: each step multiplies a kernel by
`1 - learning_rate * weight_decay`. Under SGD with momentum 0.9 that is
ten times weaker than the coupled L2 penalty of the same value that
papers written with PyTorch mean (its gradient accumulates in the
momentum): their `5e-4` is `5e-3` here.

Methods: `"idp"` (full-width training with the model's profile),
`"idp_multi_profile"` (`ProfileScheduler` stages over `boundaries`),
`"tesla"` / `"r_tesla"` (`TaskwiseEarlyStopping`, `"atp": true` for the
trainable profile, `"max_rounds_per_task"` to cap TESLA's tasks),
`"single_path"` and `"sandwich"` (`SubnetSampler`; its random ratios come
from `"ratios"` if given, else `"ratio_range"`, and `"replace": false`
draws them distinct).
"""

import math
import os

import keras
import tensorflow as tf

from zoo.augmentation import augment_image
from zoo.batchnorm import calibrate_batchnorm
from zoo.losses import classification_loss
from zoo.schedules import LinearWarmupDecay

METHODS = ("idp", "idp_multi_profile", "tesla", "r_tesla", "single_path", "sandwich")


def recipe_callbacks(recipe, validation_data, seed=0):
    """The callbacks that implement `recipe["method"]`."""
    import callbacks  # the project's callback suite

    method = recipe["method"]
    if method not in METHODS:
        raise ValueError(f"Unknown recipe method {method!r}; known: {list(METHODS)}.")
    ratios = recipe.get("ratios")
    if method == "idp":
        return []
    if method == "idp_multi_profile":
        bounds = [0.0] + list(recipe["boundaries"]) + [1.0]
        epochs = recipe["epochs"] // (len(bounds) - 1)
        stages = [((low, high), epochs) for low, high in zip(bounds, bounds[1:])]
        return [callbacks.ProfileScheduler(stages=stages)]
    if method in ("tesla", "r_tesla"):
        return [
            callbacks.TaskwiseEarlyStopping(
                ratios,
                validation_data=validation_data,
                patience=recipe.get("patience", 3),
                alpha=recipe.get("alpha", 0.5),
                order="random" if method == "r_tesla" else "descending",
                steps_per_round=recipe.get("round"),
                max_rounds_per_task=recipe.get("max_rounds_per_task"),
                alternate_profile=recipe.get("atp", False),
                seed=seed,
            )
        ]
    if method == "single_path":
        return [callbacks.SubnetSampler(ratios=ratios, per=recipe.get("per", "batch"), seed=seed)]
    ratio_range = tuple(recipe.get("ratio_range", (0.1, 1.0)))
    draws = {"ratios": ratios} if ratios else {"ratio_range": ratio_range}
    return [
        callbacks.SubnetSampler(
            **draws,
            sandwich=True,
            num_ratios=recipe.get("num_ratios", 4),
            replace=recipe.get("replace", True),
            distillation=recipe.get("distillation", 1.0),
            seed=seed,
        )
    ]


SCHEDULES = ("constant", "cosine", "linear")
OPTIMIZERS = ("adam", "sgd")


def make_schedule(recipe, steps_per_epoch):
    """The learning rate of `recipe`: a number or a schedule."""
    learning_rate = recipe.get("learning_rate", 1e-3)
    schedule = recipe.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; known: {list(SCHEDULES)}.")
    if schedule == "constant":
        return learning_rate
    total = recipe["epochs"] * steps_per_epoch
    warmup = int(recipe.get("warmup_epochs", 0) * steps_per_epoch)
    if schedule == "linear":
        return LinearWarmupDecay(learning_rate, warmup, total)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=max(total - warmup, 1),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(recipe, steps_per_epoch):
    """The optimizer of `recipe`, with its learning-rate schedule."""
    learning_rate = make_schedule(recipe, steps_per_epoch)
    weight_decay = recipe.get("weight_decay")
    name = recipe.get("optimizer", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; known: {list(OPTIMIZERS)}.")
    ema = recipe.get("ema")
    common = {"weight_decay": weight_decay, "use_ema": bool(ema), "ema_momentum": ema or 0.99}
    if name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, **common)
    else:
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, **common)
    if weight_decay:
        # Batch-norm scales and offsets, biases and the profile are not decayed.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "profile"])
    return optimizer


def training_dataset(train_data, recipe, seed=0, first_epoch=0):
    """`(x, y)` arrays as augmented training batches, epoch `first_epoch` on, without end.

    Each epoch is shuffled, cropped and (for colour images) flipped as a
    function of `seed` and the epoch's number alone, so a run resumed at
    epoch `E` in a new process (`keras.callbacks.BackupAndRestore`) trains
    on the batches the uninterrupted run would have. A per-process random
    state would replay the first epochs' crops after every resume: crops
    the network has already fitted. Epochs end on their own last, partial
    batch, so `fit` reads it with `steps_per_epoch=ceil(len(x) / batch_size)`.

    Example:
    >>> batches = training_dataset((x, y), {"batch_size": 128}, seed=0, first_epoch=41)
    >>> model.fit(batches, epochs=64, initial_epoch=41, steps_per_epoch=352)
    """
    x, y = train_data
    count = len(x)
    # One element, the whole arrays, handed to every example without a copy.
    arrays = tf.data.Dataset.from_tensors((x, y)).repeat()
    flip = x.shape[-1] == 3
    batch_size = recipe.get("batch_size", 128)

    seed_tensor = tf.constant(seed, tf.int64)

    def epoch_batches(epoch):
        key = tf.stack([seed_tensor, epoch])
        order = tf.argsort(tf.random.stateless_uniform([count], seed=key))

        def example(index, images_and_labels):
            images, labels = images_and_labels
            pair = tf.stack([seed_tensor, epoch * count + tf.cast(index, tf.int64)])
            return augment_image(tf.gather(images, index), flip, pair), tf.gather(labels, index)

        examples = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(order), arrays)
        return examples.map(example, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)

    epochs = tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches)
    return epochs.prefetch(tf.data.AUTOTUNE)


def calibrate_after_training(model, train_data, recipe, seed=0, steps=20):
    """Calibrates `model`'s batch norm on the training images as `recipe` fed them.

    With `"augment"` the statistics come from the augmented training
    pipeline, not from the clean images: the layers after each batch norm
    were trained on the statistics of padded crops, and clean statistics
    cost the first-published `resnet20_cifar10` preset 1.8 to 2.7 points of
    test accuracy (`zoo/presets.json` before and after commit `bb6e643`).
    """
    if recipe.get("augment"):
        images = training_dataset(train_data, recipe, seed)
    else:
        images = train_data[0]
    return calibrate_batchnorm(model, images, steps=steps)


def calibrate_gates_after_training(model, train_data, recipe, budget_images, seed=0, rounds=2):
    """Calibrates batch norm and the budget shift of a budget-gated model after training.

    For a model whose gates read a budget (`lcnet_resnet20`): batch norm as
    `calibrate_after_training` does, then the gates' budget shift
    (`calibrate_budget`), in turn, `rounds` times. Batch norm keeps
    statistics per operating point, gathered as the gates read that point's
    budget; `calibrate_budget` then moves the budget they read, so
    statistics gathered before the move are those of other gate decisions.
    The next round gathers them at the moved budget, then bisects the shift
    again for the statistics that changed.

    Args:
        model: the trained model, with `calibrate_budget`.
        train_data: `(images, labels)` it was trained on.
        recipe: the recipe it was trained by (its `"augment"` decides which
            images batch norm sees).
        budget_images: training images to meet each budget on.
        seed: the augmentation's seed.
        rounds: how many times to calibrate the two in turn.

    Returns:
        `{operating point: mean spent fraction}` of the last shift.

    Example:
    >>> zoo.recipes.calibrate_gates_after_training(model, (x, y), recipe, x[:5000])
    {0.25: 0.251, 0.5: 0.499, 0.75: 0.752, 1.0: 1.0}
    """
    if rounds < 1:
        raise ValueError(f"`rounds` must be at least 1; got {rounds}.")
    for _ in range(rounds):
        calibrate_after_training(model, train_data, recipe, seed)
        achieved = model.calibrate_budget(budget_images)
    return achieved


def train_recipe(
    model,
    recipe,
    train_data,
    validation_data,
    checkpoint_dir=None,
    seed=0,
    verbose=1,
    callbacks=(),
):
    """Compiles and fits `model` by `recipe`; resumable through `checkpoint_dir`.

    With `checkpoint_dir`, `callbacks.ShardedBackupAndRestore` saves the
    model (weights, optimizer and the callbacks' progress) every epoch, in
    files of at most 16 MB, so a run interrupted at any point resumes where
    it stopped, and its checkpoint can be committed to carry it over. `callbacks` are
    passed to `fit` after the recipe's own and the backup.
    """
    keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(train_data[0]) / recipe.get("batch_size", 128))
    model.compile(
        optimizer=make_optimizer(recipe, steps_per_epoch),
        loss=classification_loss(recipe.get("label_smoothing", 0.0)),
        metrics=["accuracy"],
    )
    extra = []
    first_epoch = 0
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
        from callbacks import ShardedBackupAndRestore  # `callbacks` is an argument here

        backup = ShardedBackupAndRestore(checkpoint_dir)
        first_epoch = backup.resume_epoch()
        extra.append(backup)
    if recipe.get("augment"):
        inputs = {
            "x": training_dataset(train_data, recipe, seed, first_epoch),
            "steps_per_epoch": steps_per_epoch,
            "shuffle": False,
        }
    else:
        inputs = {
            "x": train_data[0],
            "y": train_data[1],
            "batch_size": recipe.get("batch_size", 128),
        }
    model.fit(
        **inputs,
        epochs=recipe["epochs"],
        callbacks=recipe_callbacks(recipe, validation_data, seed) + extra + list(callbacks),
        verbose=verbose,
    )
    return model

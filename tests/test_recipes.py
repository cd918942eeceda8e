import keras
import numpy as np
import pytest
from conftest import Interrupt

import zoo
from zoo.recipes import make_optimizer, train_recipe, training_dataset


def schedule_of(optimizer):
    """The learning-rate schedule `optimizer` was built with."""
    return keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])


SGD_COSINE = {
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "schedule": "cosine",
    "warmup_epochs": 1,
    "weight_decay": 5e-4,
    "epochs": 3,
}


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = schedule_of(make_optimizer(SGD_COSINE, steps_per_epoch=10))
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(5)) == pytest.approx(0.05)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-7)


def test_linear_schedule_warms_up_then_decays_linearly_to_zero():
    recipe = {**SGD_COSINE, "schedule": "linear"}
    schedule = schedule_of(make_optimizer(recipe, steps_per_epoch=10))
    assert [round(float(schedule(s)), 6) for s in (0, 5, 10, 20, 30)] == [0.0, 0.05, 0.1, 0.05, 0.0]
    restored = zoo.schedules.LinearWarmupDecay.from_config(schedule.get_config())
    assert float(restored(15)) == pytest.approx(float(schedule(15)))
    with pytest.raises(ValueError, match="warmup_steps"):
        zoo.schedules.LinearWarmupDecay(0.1, warmup_steps=10, total_steps=10)


def test_linear_schedule_without_warm_up_starts_at_its_peak():
    schedule = zoo.schedules.LinearWarmupDecay(0.1, warmup_steps=0, total_steps=20)
    assert [round(float(schedule(s)), 6) for s in (0, 10, 20, 25)] == [0.1, 0.05, 0.0, 0.0]


def test_label_smoothing_takes_integer_labels():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
    labels = np.array([0, 2])
    smoothed = zoo.losses.SparseCategoricalCrossentropyWithSmoothing(0.1, from_logits=True)
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    assert float(smoothed(labels, logits)) == pytest.approx(
        float(reference(np.eye(3)[labels], logits)), rel=1e-6
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        zoo.losses.SparseCategoricalCrossentropyWithSmoothing(1.0)


def test_ema_recipe_averages_the_weights():
    optimizer = make_optimizer({**SGD_COSINE, "ema": 0.999}, steps_per_epoch=10)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.999


def test_weight_decay_spares_batch_norm_and_profile():
    model = zoo.build(
        "resnet20", num_classes=10, width=0.25, profile={"name": "linear", "trainable": True}
    )
    # Without warm-up: decoupled decay scales with the rate, 0 at a warm-up's start.
    optimizer = make_optimizer({**SGD_COSINE, "warmup_epochs": 0}, steps_per_epoch=10)
    variables = model.trainable_variables
    for variable in variables:
        variable.assign(keras.ops.ones_like(variable))
    # A zero gradient moves a variable only through weight decay.
    optimizer.apply([keras.ops.zeros_like(v) for v in variables], variables)
    decayed = {v.path.split("/")[-1] for v in variables if np.any(v.numpy() != 1.0)}
    assert decayed == {"kernel"}


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"optimizer": "rmsprop"}, "Unknown optimizer 'rmsprop'"),
        ({"schedule": "step"}, "Unknown schedule 'step'"),
    ],
)
def test_unknown_optimizer_or_schedule_is_named(recipe, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer({"epochs": 1, **recipe}, steps_per_epoch=1)


def test_augmented_dataset_shifts_and_keeps_shapes():
    x = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8, dtype="int32")
    images, labels = next(iter(training_dataset((x, y), {"batch_size": 8}, seed=1)))
    assert images.shape == (8, 32, 32, 3) and images.dtype == "float32"
    assert sorted(labels.numpy()) == list(range(8))
    assert not np.array_equal(np.sort(images.numpy().ravel()), np.sort(x.astype("float32").ravel()))


def test_augmented_sgd_recipe_trains():
    x = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    model = zoo.build(
        "resnet20", blocks_per_stage=1, num_classes=2, width=0.25, operating_points=[0.5, 1.0]
    )
    recipe = {**SGD_COSINE, "method": "idp", "augment": True, "batch_size": 32, "epochs": 1}
    train_recipe(model, recipe, (x, y), (x, y), verbose=0)
    assert int(model.optimizer.iterations) == 2


def test_a_recipe_with_a_checkpoint_dir_resumes_and_passes_its_callbacks(tmp_path):

    x = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    recipe = {**SGD_COSINE, "method": "idp", "batch_size": 32, "epochs": 2}
    build = lambda: zoo.build("resnet20", blocks_per_stage=1, num_classes=2, width=0.25)

    with pytest.raises(RuntimeError, match="interrupted"):
        train_recipe(
            build(),
            recipe,
            (x, y),
            (x, y),
            tmp_path / "run",
            verbose=0,
            callbacks=[Interrupt(epoch=1)],
        )
    assert (tmp_path / "run" / "checkpoint-000000" / "model.weights.json").exists()
    model = train_recipe(build(), recipe, (x, y), (x, y), str(tmp_path / "run"), verbose=0)
    assert int(model.optimizer.iterations) == 4  # two epochs of two steps, one of them resumed
    assert not (tmp_path / "run").exists()


def test_sandwich_recipe_draws_from_its_ratios_when_given():
    from zoo.recipes import recipe_callbacks

    grid = [1.0, 0.7, 0.4, 0.1]
    (sampler,) = recipe_callbacks({"method": "sandwich", "ratios": grid, "num_ratios": 4}, None)
    drawn = {ratio for step in range(50) for ratio in sampler.sample(step)}
    assert drawn <= set(grid) and len(drawn) == 4
    (sampler,) = recipe_callbacks({"method": "sandwich", "ratio_range": [0.25, 1.0]}, None)
    assert sampler.ratios is None and (sampler.low, sampler.high) == (0.25, 1.0)
    every_point = {"method": "sandwich", "ratios": grid, "num_ratios": 4, "replace": False}
    (sampler,) = recipe_callbacks(every_point, None)
    assert sampler.sample(0) == sampler.sample(1) == grid


def test_calibration_after_augmented_training_reads_the_augmented_pipeline():
    from zoo.layers import DynamicBatchNormalization
    from zoo.recipes import calibrate_after_training

    x = np.full((64, 32, 32, 3), 200, dtype=np.uint8)
    y = np.zeros(64, "int32")
    model = zoo.build(
        "resnet20", blocks_per_stage=1, num_classes=2, width=0.25, operating_points=[1.0]
    )
    stem_bn = next(l for l in model.dynamic_layers if isinstance(l, DynamicBatchNormalization))

    def stem_mean(recipe):
        calibrate_after_training(model, (x, y), {"batch_size": 32, **recipe}, steps=2)
        return stem_bn.moving_mean.numpy().copy()

    clean = stem_mean({})
    zoo.calibrate_batchnorm(model, x)
    np.testing.assert_allclose(stem_bn.moving_mean.numpy(), clean, rtol=1e-5)
    # Padded crops bring black borders into the statistics, as in training.
    assert not np.allclose(stem_mean({"augment": True}), clean, atol=1e-3)


def _epoch_batches(dataset, epochs, steps):
    batches = list(dataset.take(epochs * steps))
    return [batches[e * steps : (e + 1) * steps] for e in range(epochs)]


def test_training_batches_are_keyed_by_epoch_not_by_process():
    x = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    y = np.arange(20, dtype="int32")
    recipe = {"batch_size": 8}  # three batches an epoch, the last one of 4
    from_start = _epoch_batches(training_dataset((x, y), recipe, seed=3), 3, 3)
    resumed = _epoch_batches(training_dataset((x, y), recipe, seed=3, first_epoch=2), 1, 3)
    assert [len(labels) for _, labels in from_start[2]] == [8, 8, 4]
    for (images, labels), (again, again_labels) in zip(from_start[2], resumed[0]):
        np.testing.assert_array_equal(images, again)
        np.testing.assert_array_equal(labels, again_labels)
    # A resumed run does not replay epoch 0: each epoch has its own order and crops.
    first, third = (np.concatenate([i for i, _ in epoch]) for epoch in (from_start[0], resumed[0]))
    assert not np.array_equal(first, third)


def test_an_augmented_run_resumed_in_a_new_fit_ends_as_the_uninterrupted_one(tmp_path):
    from callbacks import ShardedBackupAndRestore

    x = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    recipe = {**SGD_COSINE, "method": "idp", "augment": True, "batch_size": 32}
    build = lambda: zoo.build("resnet20", blocks_per_stage=1, num_classes=2, width=0.25)
    straight = train_recipe(build(), recipe, (x, y), (x, y), str(tmp_path / "a"), verbose=0)

    run = str(tmp_path / "b")
    with pytest.raises(RuntimeError, match="interrupted"):
        train_recipe(build(), recipe, (x, y), (x, y), run, verbose=0, callbacks=[Interrupt(2)])
    assert ShardedBackupAndRestore(run).resume_epoch() == 2
    resumed = train_recipe(build(), recipe, (x, y), (x, y), run, verbose=0)
    assert int(resumed.optimizer.iterations) == 6
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert ShardedBackupAndRestore(run).resume_epoch() == 0  # checkpoint deleted at the end

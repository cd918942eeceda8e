import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.effort import EffortConv2D, EffortDense, sdss

RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(3, 9, 9, 6)).astype("float32")
NEVER = {"spet_margin": math.inf, "sdss_threshold": -1.0, "sfma_threshold": -1.0}


def effort_conv(reference, **knobs):
    if not reference.built:
        reference.build(INPUTS.shape)
    layer = EffortConv2D(
        reference.filters,
        reference.kernel_size,
        strides=reference.strides,
        padding=reference.padding,
        activation="relu",
        **knobs,
    )
    layer.build(INPUTS.shape)
    layer.kernel.assign(reference.kernel)
    layer.bias.assign(reference.bias)
    layer.calibrate(INPUTS)
    return layer


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "same"), (1, "valid"), (2, "valid")])
@pytest.mark.parametrize("knob", [*NEVER, "all"])
def test_never_skip_gives_the_unmodified_convolution(strides, padding, knob):
    reference = keras.layers.Conv2D(8, 3, strides=strides, padding=padding, activation="relu")
    expected = reference(INPUTS).numpy()
    knobs = NEVER if knob == "all" else {knob: NEVER[knob]}
    layer = effort_conv(reference, **knobs)
    # SPET sums its two parts separately: float32 rounding only.
    np.testing.assert_allclose(layer(INPUTS).numpy(), expected, atol=1e-5)
    counts = layer.operations(INPUTS)
    assert np.all(counts["dot_products"].numpy() == layer.dense_operations)


def test_never_skip_gives_the_unmodified_dense_layer():
    reference = keras.layers.Dense(5, activation="relu")
    x = RNG.normal(size=(4, 12)).astype("float32")
    expected = reference(x).numpy()
    layer = EffortDense(5, activation="relu", spet_margin=math.inf)
    layer.build(x.shape)
    layer.kernel.assign(reference.kernel)
    layer.bias.assign(reference.bias)
    layer.calibrate(x)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)


def test_always_stopping_spet_outputs_zero():
    layer = effort_conv(keras.layers.Conv2D(8, 3, padding="same"), spet_margin=-math.inf)
    assert np.all(layer(INPUTS).numpy() == 0.0)


def test_always_filling_sdss_upsamples_the_quarter_resolution_map():
    reference = keras.layers.Conv2D(8, 3, padding="same", activation="relu")
    exact = reference(INPUTS).numpy()
    output = effort_conv(reference, sdss_threshold=math.inf)(INPUTS).numpy()
    np.testing.assert_allclose(output[:, ::2, ::2], exact[:, ::2, ::2], atol=1e-5)
    np.testing.assert_allclose(output[:, 0, 1], (exact[:, 0, 0] + exact[:, 0, 2]) / 2, atol=1e-5)
    np.testing.assert_allclose(output[:, 1, 0], (exact[:, 0, 0] + exact[:, 2, 0]) / 2, atol=1e-5)
    corners = exact[:, 0, 0] + exact[:, 0, 2] + exact[:, 2, 0] + exact[:, 2, 2]
    np.testing.assert_allclose(output[:, 1, 1], corners / 4, atol=1e-5)


def test_always_merging_sfma_convolves_one_map_with_the_summed_kernel():
    reference = keras.layers.Conv2D(8, 3, padding="same")
    layer = effort_conv(reference, sfma_threshold=1.0)
    layer.activation = None
    leader = np.argmin(INPUTS.mean(axis=(1, 2)), axis=-1)
    summed = reference.kernel.numpy().sum(axis=2, keepdims=True)
    for index, channel in enumerate(leader):
        single = INPUTS[index : index + 1, ..., channel : channel + 1]
        expected = tf.nn.conv2d(single, summed, 1, "SAME").numpy() + reference.bias.numpy()
        np.testing.assert_allclose(layer(INPUTS[index : index + 1]).numpy(), expected, atol=1e-4)
        np.testing.assert_allclose(layer(INPUTS).numpy()[index : index + 1], expected, atol=1e-4)


def test_sfma_merges_identical_maps_exactly():
    x = INPUTS.copy()
    x[..., 4] = x[..., 1]
    x[..., 5] = 0.0
    reference = keras.layers.Conv2D(8, 3, padding="same")
    layer = effort_conv(reference, sfma_threshold=0.0)
    layer.activation = None
    np.testing.assert_allclose(layer(x[:1]).numpy(), reference(x[:1]).numpy(), atol=1e-5)
    groups = zoo.effort.sfma.alike_groups(tf.constant(x), 0.0)[2].numpy()
    assert list(groups) == [5, 5, 5]


def test_dense_spet_operations_match_a_count_by_hand():
    layer = EffortDense(3, activation="relu", spet_margin=0.0, spet_fraction=0.5)
    layer.build((None, 4))
    # Inputs 0 and 1 carry the large weights, so they make the partial sum.
    layer.kernel.assign([[1.0, -1.0, 2.0], [1.0, -1.0, -2.0], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    layer.calibrate(np.ones((2, 4), "float32"))
    x = np.array([[1.0, 1.0, 1.0, 1.0]], "float32")  # partial sums 2, -2, 0: neuron 1 stops
    counts = {k: float(v[0]) for k, v in layer.operations(x).items()}
    # 3 neurons x (2 partial terms x 2) + 3 comparisons + 2 continuing neurons x (2 terms x 2).
    assert counts == {"total": 12 + 3 + 8, "dot_products": 20, "spet": 3, "sdss": 0, "sfma": 0}
    np.testing.assert_allclose(layer(x).numpy(), [[2.2, 0.0, 0.2]], atol=1e-6)


def test_sdss_operations_match_a_count_by_hand():
    layer = EffortConv2D(1, 1, use_bias=False, sdss_threshold=0.5)
    layer.build((None, 4, 4, 1))
    layer.kernel.assign(np.ones((1, 1, 1, 1), "float32"))
    flat = np.full((1, 4, 4, 1), 3.0, "float32")
    spike = flat.copy()
    spike[0, 2, 2, 0] = 9.0  # a sampled position
    counts_flat = float(layer.operations(flat)["total"][0])
    counts_spike = float(layer.operations(spike)["total"][0])
    # 4 sampled neurons x 2 + decisions: 8 two-neighbour positions x 7 + 4 diagonal x 13.
    assert sdss.decision_operations(4, 4) == 8 * 7 + 4 * 13
    # Positions on the last row and column have one sampled neighbour, and
    # one value is no evidence of alikeness: all 7 are computed exactly, as
    # are the 3 others next to the spike at (2, 2): (2, 1), (1, 2), (1, 1).
    assert counts_flat == 4 * 2 + 108 + 7 * 2
    assert counts_spike == counts_flat + 3 * 2
    np.testing.assert_allclose(layer(spike).numpy(), spike, atol=1e-6)


def small_cnn():
    x, y = zoo.datasets.load_arrays("digits", "train")
    x = x.astype("float32") / 16.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model, zoo.datasets.load_arrays("digits", "test")


@pytest.fixture(scope="module")
def tuned():
    model, (x, y) = small_cnn()
    x = x.astype("float32") / 16.0
    return model, zoo.effort.tune(model, (x, y), max_accuracy_drop=0.02), (x, y)


def test_tuning_respects_the_budget_and_records_its_choices(tuned):
    model, fast, (x, y) = tuned
    baseline = zoo.effort.tuning.accuracy(zoo.effort.without_knobs(fast), x, y)
    assert baseline == pytest.approx(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    assert zoo.effort.tuning.accuracy(fast, x, y) >= baseline - 0.02
    chosen = zoo.effort.settings(fast)
    assert chosen and set(chosen) <= {layer.name for layer in zoo.effort.effort_layers(fast)}
    result = zoo.effort.report(fast, (x, y), batch_sizes=(1,), repeats=2)
    assert result["operations"] < result["dense_operations"]
    assert result["accuracy"] >= result["baseline_accuracy"] - 0.02
    tuning = json.loads(json.dumps(fast.effort_tuning))  # the benchmark stores it as JSON
    assert all(set(tried) == {"tolerances", "accuracy", "drop_bound"} for tried in tuning["search"])
    # A knob is on in a layer only where one of its candidates is within the tolerance.
    for layer, knobs in chosen.items():
        for knob in set(knobs) & set(zoo.effort.tuning.KNOBS):
            smallest = tuning["smallest_candidate_error"][layer][knob]
            assert smallest <= tuning["tolerances"][knob]


def test_several_knobs_save_at_least_as_much_as_the_best_one_alone(tuned):
    model, fast, (x, y) = tuned

    def total(tuned_model):
        return sum(
            np.sum(layer["total"]) for layer in zoo.effort.operations(tuned_model, x).values()
        )

    alone = [
        zoo.effort.tune(model, (x, y), max_accuracy_drop=0.02, knobs=(knob,))
        for knob in ("spet", "sdss")
    ]
    assert total(fast) <= min(total(one) for one in alone) * 1.001
    assert set(fast.effort_tuning["tolerances"]) <= {"spet", "sdss", "sfma"}


def test_drop_bound_matches_a_count_by_hand():
    baseline = np.array([True] * 80 + [False] * 20)
    hits = baseline.copy()
    hits[:6] = False  # 6 images lost
    hits[80:82] = True  # 2 gained
    point = zoo.effort.tuning._Budget(baseline, 0.05, 0.5)
    assert point.bound(hits) == pytest.approx(0.04)
    assert point.holds(hits)
    sure = zoo.effort.tuning._Budget(baseline, 0.05, 0.9)
    spread = np.sqrt(6 + 2 - 100 * 0.04**2) / 100
    assert sure.bound(hits) == pytest.approx(0.04 + 1.2815516 * spread)
    assert not sure.holds(hits)


def test_confidence_keeps_a_margin_below_the_budget(tuned):
    model, fast, (x, y) = tuned
    sure = zoo.effort.tune(model, (x, y), max_accuracy_drop=0.02, knobs=("spet",), confidence=0.9)
    assert sure.effort_tuning["confidence"] == 0.9
    accepted = [
        step["drop_bound"]
        for step in sure.effort_tuning["search"]
        if step["tolerances"] == sure.effort_tuning["tolerances"]
    ]
    assert all(bound <= 0.02 for bound in accepted)
    drop = fast.effort_tuning["baseline_accuracy"] - zoo.effort.tuning.accuracy(sure, x, y)
    assert drop <= 0.02


@pytest.mark.parametrize("confidence", [0.3, 1.0, "high"])
def test_confidence_outside_half_one_is_rejected(confidence):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"confidence.*\[0.5, 1\)"):
        zoo.effort.tune(model, (np.zeros((2, 4)), np.zeros(2)), confidence=confidence)


def test_tuned_model_saves_and_loads(tuned, tmp_path):
    _, fast, (x, _) = tuned
    path = str(tmp_path / "fast.keras")
    fast.save(path)
    loaded = keras.saving.load_model(path)
    assert zoo.effort.settings(loaded) == zoo.effort.settings(fast)
    np.testing.assert_allclose(
        loaded.predict(x[:50], verbose=0), fast.predict(x[:50], verbose=0), atol=1e-5
    )


def test_knobs_work_within_a_zoo_model_ratio():
    model = zoo.build("resnet20", num_classes=10, width=0.25)
    x = RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    prepared = zoo.effort.prepare(model, compute_ratio=0.5)
    np.testing.assert_allclose(prepared(x).numpy(), model(x, compute_ratio=0.5).numpy(), atol=1e-4)
    first = zoo.effort.effort_layers(prepared)[1]
    assert first.kernel.shape[-1] == zoo.ratio.channel_width(0.5, 4)


@pytest.mark.parametrize("budget", [-0.1, 1.0, 5, float("nan"), "half"])
def test_budget_outside_zero_one_is_rejected(budget):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"max_accuracy_drop.*\[0, 1\)"):
        zoo.effort.tune(model, (np.zeros((2, 4)), np.zeros(2)), max_accuracy_drop=budget)


def test_model_without_a_knob_layer_is_rejected():
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    with pytest.raises(ValueError, match="No layer .* takes the knobs"):
        zoo.effort.tune(model, (np.zeros((2, 8, 8, 1)), np.zeros(2)))

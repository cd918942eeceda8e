import keras
import numpy as np
import pytest

import callbacks
import zoo

SMALL = {
    "blocks_per_stage": 1,
    "input_shape": (8, 8, 1),
    "num_classes": 10,
    "operating_points": [0.5, 0.75, 1.0],
}
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 16, (6, 8, 8, 1)).astype("float32")


def small_model(**kwargs):
    keras.utils.set_random_seed(0)
    return zoo.build("lcnet_resnet20", **{**SMALL, **kwargs})


def close_block(model, index):
    gate = model.blocks[index]["gate"]
    gate.block_head.bias.assign([-100.0])
    gate.block_head.kernel.assign(np.zeros_like(gate.block_head.kernel.numpy()))


def test_budget_one_opens_every_gate_and_is_the_backbone():
    model = small_model()
    for block in model.blocks:  # gates that would close everything below budget 1
        block["gate"].block_head.bias.assign([-100.0])
        block["gate"].channel_head.bias.assign(np.full(block["channels"], -100.0, "float32"))
    logits = model({"images": IMAGES, "compute_ratio": 1.0}).numpy()
    backbone = model.soft_forward(IMAGES, np.ones(len(IMAGES), "float32"), training=False)[
        0
    ].numpy()
    np.testing.assert_allclose(logits, backbone, atol=1e-4)
    assert all(d["run"].all() and d["channels"].all() for d in model.decisions(IMAGES, 1.0))
    np.testing.assert_allclose(zoo.cost(model, 1.0, data=IMAGES)["per_input"], model.backbone_cost)


def test_a_skipped_block_is_not_executed(monkeypatch):
    model = small_model()
    close_block(model, 1)
    calls = []
    original = model._block_residual
    monkeypatch.setattr(
        model,
        "_block_residual",
        lambda block, *a: calls.append(block["gate"].name) or original(block, *a),
    )
    model({"images": IMAGES, "compute_ratio": 0.5})
    assert "stage1_block0_gate" not in calls and len(calls) == len(model.blocks) - 1
    skipped = model.blocks[1]["channel_cost"] * model.blocks[1]["channels"]
    spent = zoo.cost(model, 0.5, data=IMAGES)["per_input"]
    np.testing.assert_allclose(spent, model.backbone_cost - skipped)
    assert not any(
        d["run"].any() for d in model.decisions(IMAGES, 0.5) if d["name"] == "stage1_block0"
    )


def test_skipped_channels_are_not_computed_and_match_the_training_pass():
    model = small_model()
    gate = model.blocks[0]["gate"]
    bias = np.full(model.blocks[0]["channels"], 3.0, "float32")
    bias[::2] = -100.0  # every other inner channel closed
    gate.channel_head.bias.assign(bias)
    budget = np.full(len(IMAGES), 0.5, "float32")
    inference = model({"images": IMAGES, "compute_ratio": 0.5}).numpy()
    training_pass = model.soft_forward(IMAGES, budget, training=False)[0].numpy()
    np.testing.assert_allclose(inference, training_pass, atol=1e-4)
    kept = model.decisions(IMAGES, 0.5)[0]["channels"]
    assert kept.sum(axis=1).tolist() == [model.blocks[0]["channels"] // 2] * len(IMAGES)


def test_prefix_gating_keeps_the_first_channels():
    model = small_model(channel_gating="prefix")
    block = model.blocks[0]
    channels, kept = block["channels"], block["channels"] // 2
    fraction = (kept + 0.5) / (channels + 1)  # the logit of channel `kept` is -0.5
    head = block["gate"].channel_head
    head.kernel.assign(np.zeros_like(head.kernel.numpy()))
    head.bias.assign([np.log(fraction / (1 - fraction))])
    budget = np.full(len(IMAGES), 0.5, "float32")
    inference = model({"images": IMAGES, "compute_ratio": 0.5}).numpy()
    training_pass = model.soft_forward(IMAGES, budget, training=False)[0].numpy()
    np.testing.assert_allclose(inference, training_pass, atol=1e-4)
    decided = model.decisions(IMAGES, 0.5)[0]["channels"]
    assert (decided == (np.arange(channels) < kept)).all()
    spent = zoo.cost(model, 0.5, data=IMAGES)["per_input"]
    np.testing.assert_allclose(
        spent, model.backbone_cost - (channels - kept) * block["channel_cost"], rtol=1e-6
    )


def test_prefix_gates_start_open():
    model = small_model(channel_gating="prefix")
    assert all(d["channels"].all() for d in model.decisions(IMAGES, 0.5))


def test_unknown_channel_gating_is_rejected():
    with pytest.raises(ValueError, match=r"`channel_gating` must be one of \('subset', 'prefix'\)"):
        small_model(channel_gating="random")


@pytest.fixture(scope="module")
def trained():
    x, y = zoo.datasets.load_arrays("digits", "train")
    model = small_model(budget_weight=20.0)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    sampler = callbacks.SubnetSampler(
        ratio_range=(0.5, 1.0), sandwich=True, num_ratios=3, distillation=0.5
    )
    model.fit(x, y, epochs=12, batch_size=64, verbose=0, callbacks=[sampler])
    return model, x, zoo.datasets.load_arrays("digits", "test")


def test_mean_spent_compute_tracks_the_budget(trained):
    model, x, (x_test, _) = trained
    model.calibrate_budget(x, tolerance=0.01)
    for budget in (0.5, 0.75):
        spent = zoo.cost(model, budget, data=x_test)
        assert spent["flops"] / model.backbone_cost == pytest.approx(budget, abs=0.05)
        assert spent["per_input"].std() > 0 or budget == 1.0  # inputs spend differently


def test_calibration_warns_of_a_budget_the_gates_cannot_meet(monkeypatch):
    model = small_model(operating_points=[0.5, 0.75, 1.0])
    # Gates that spend half the network whatever budget they read.
    monkeypatch.setattr(model, "_mean_spent", lambda images, budget, batch_size: 0.5)
    with pytest.warns(UserWarning, match=r"Operating point 0.75: .* at most 0.500") as caught:
        achieved = model.calibrate_budget(np.zeros((4, 8, 8, 1), "float32"))
    assert achieved == {0.5: 0.5, 0.75: 0.5, 1.0: 1.0}
    assert len([w for w in caught if "Operating point" in str(w.message)]) == 1


def test_gates_read_the_budget_shifted_by_its_calibrated_offset():
    model = small_model(operating_points=[0.25, 0.5, 1.0])
    model.budget_offsets.assign([-0.02, 0.04, 0.0])
    np.testing.assert_allclose(model.gate_budget([0.25, 0.5, 1.0]), [0.23, 0.54, 1.0], atol=1e-6)
    # Between operating points the offset is interpolated; a number gives a number.
    assert model.gate_budget(0.375).shape == ()
    assert float(model.gate_budget(0.375)) == pytest.approx(0.375 + 0.01)
    assert float(model.gate_budget(0.75)) == pytest.approx(0.75 + 0.02)


def test_prefix_model_saves_and_loads(tmp_path):
    model = small_model(channel_gating="prefix")
    path = str(tmp_path / "prefix.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.blocks[0]["gate"].channel_gating == "prefix"
    np.testing.assert_allclose(
        loaded({"images": IMAGES, "compute_ratio": 0.5}).numpy(),
        model({"images": IMAGES, "compute_ratio": 0.5}).numpy(),
        atol=1e-5,
    )


def test_trained_model_saves_and_loads(trained, tmp_path):
    model, _, (x_test, _) = trained
    path = str(tmp_path / "lcnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for budget in (0.5, 1.0):
        np.testing.assert_allclose(
            loaded({"images": x_test[:20], "compute_ratio": budget}).numpy(),
            model({"images": x_test[:20], "compute_ratio": budget}).numpy(),
            atol=1e-5,
        )


@pytest.mark.parametrize("budget", [0.0, 1.5, float("nan"), -0.2])
def test_bad_budgets_are_rejected(budget):
    model = small_model()
    with pytest.raises(ValueError, match=r"compute_ratio"):
        model({"images": IMAGES, "compute_ratio": budget})
    with pytest.raises(ValueError, match=r"compute_ratio"):
        zoo.cost(model, budget, data=IMAGES)


def test_cost_needs_the_inputs():
    with pytest.raises(ValueError, match="pass the inputs as `data=`"):
        zoo.cost(small_model(), 0.5)


def test_load_backbone_starts_from_a_trained_uniform_resnet():
    keras.utils.set_random_seed(1)
    resnet = zoo.build("resnet20", **SMALL)
    for variable in resnet.weights:  # non-default weights and statistics, so the copy shows
        if "plan" not in variable.path and "training_state" not in variable.path:
            variable.assign(
                variable.numpy() * RNG.uniform(0.5, 1.5, variable.shape).astype("float32")
            )
    resnet.weights_changed()
    model = small_model()
    model.load_backbone(resnet)
    expected = resnet(IMAGES, compute_ratio=1.0).numpy()
    np.testing.assert_allclose(
        model({"images": IMAGES, "compute_ratio": 1.0}).numpy(), expected, rtol=1e-4, atol=1e-4
    )


def test_load_backbone_rejects_another_architecture():
    resnet = zoo.build("resnet20", **{**SMALL, "num_classes": 3})
    with pytest.raises(ValueError, match="uniform-width ResNet-20.*classifier"):
        small_model().load_backbone(resnet)


def test_batch_norm_keeps_statistics_per_budget(trained):
    model, x, (x_test, y_test) = trained
    zoo.calibrate_batchnorm(model, x[:512], steps=2)
    stem, inner = model.stem_bn, model.blocks[-1]["bn2"]
    # Before any gate every budget sees the same activations; after gates, not.
    np.testing.assert_allclose(stem.moving_mean[0], stem.moving_mean[-1], rtol=1e-4, atol=1e-5)
    assert not np.allclose(inner.moving_variance[0], inner.moving_variance[-1], rtol=1e-2)
    budgets = np.array([0.5, 1.0, 0.75, 0.5, 1.0, 0.75], "float32")
    mixed = model({"images": x_test[:6], "compute_ratio": budgets}).numpy()
    for i, budget in enumerate(budgets):
        alone = model({"images": x_test[i : i + 1], "compute_ratio": float(budget)}).numpy()
        np.testing.assert_allclose(mixed[i : i + 1], alone, atol=1e-4)
    logits = model({"images": x_test, "compute_ratio": 0.5}).numpy()
    assert np.mean(np.argmax(logits, -1) == y_test) > 0.7


def test_budget_penalty_holds_under_full_distillation():
    losses = []
    for weight in (0.0, 10.0):  # gates open: budget 0.5 overspent by half the backbone
        model = small_model(budget_weight=weight)
        model.set_training_plan([1.0, 0.5], distillation=1.0)
        model.compile(
            keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        losses.append(model.train_on_batch(IMAGES, np.zeros(len(IMAGES), "int32")))
    assert losses[1] - losses[0] == pytest.approx(10.0 * 0.5**2, rel=0.05)


def test_operating_point_logger_logs_lcnet_by_its_mean_cost(tmp_path):
    x, y = zoo.datasets.load_arrays("digits", "train")
    model = small_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = callbacks.OperatingPointLogger((x[:64], y[:64]), ratios=[1.0, 0.5], log_dir=tmp_path)
    model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[logger])
    assert 0 < logger.mult_adds[0.5] <= logger.mult_adds[1.0] == model.backbone_cost


@pytest.mark.parametrize(
    "cap, runs", [(None, [False] * 6), (1, [False, True] * 3), (0, [True] * 6)]
)
def test_the_skip_cap_overrules_gates_past_it_in_each_stage(cap, runs):
    model = small_model(blocks_per_stage=2, max_skips_per_stage=cap)
    for index in range(len(model.blocks)):
        close_block(model, index)
    decisions = model.decisions(IMAGES, 0.5)
    assert [bool(d["run"].any()) for d in decisions] == runs
    hard = zoo.cost(model, 0.5, data=IMAGES)["per_input"]
    budget = np.full(len(IMAGES), 0.5, "float32")
    soft = model.soft_forward(IMAGES, budget, training=False)[1].numpy() * model.backbone_cost
    np.testing.assert_allclose(soft, hard, rtol=1e-5)


def test_the_skip_cap_is_saved_and_checked(tmp_path):
    model = small_model(blocks_per_stage=2, max_skips_per_stage=1)
    path = str(tmp_path / "capped.keras")
    model.save(path)
    assert keras.saving.load_model(path).max_skips_per_stage == 1
    for cap in (-1, 3, 1.5, True):
        with pytest.raises(ValueError, match=r"max_skips_per_stage must be None .* received"):
            small_model(blocks_per_stage=2, max_skips_per_stage=cap)


def test_block_skip_charge_prices_skipped_blocks_in_the_penalty_only():
    losses, costs = {}, {}
    for charge in (0.0, 1.0):
        model = small_model(block_skip_charge=charge)
        for index in range(len(model.blocks)):
            close_block(model, index)
        model.set_training_plan([1.0, 0.5], distillation=1.0)
        model.compile(
            keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        losses[charge] = model.train_on_batch(IMAGES, np.zeros(len(IMAGES), "int32"))
        costs[charge] = zoo.cost(model, 0.5, data=IMAGES)["flops"]
    budget = np.full(len(IMAGES), 0.5, "float32")
    _, spent, skipped = model.soft_forward(IMAGES, budget, training=False)
    np.testing.assert_allclose(spent + skipped, 1.0, rtol=1e-5)  # every block skipped
    fixed = model.fixed_cost / model.backbone_cost
    expected = 10.0 * ((1.0 - 0.5) ** 2 - (fixed - 0.5) ** 2)
    assert losses[1.0] - losses[0.0] == pytest.approx(expected, rel=0.05)
    assert costs[1.0] == costs[0.0] == pytest.approx(model.fixed_cost)


def test_block_skip_charge_is_saved_and_checked(tmp_path):
    path = str(tmp_path / "charged.keras")
    small_model(block_skip_charge=0.5).save(path)
    assert keras.saving.load_model(path).block_skip_charge == 0.5
    for charge in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match=r"block_skip_charge must be a number .* received"):
            small_model(block_skip_charge=charge)


def test_batch_norm_is_calibrated_again_at_the_shifted_budget(monkeypatch):
    recipes = zoo.recipes
    model = small_model()
    x = RNG.uniform(0, 16, (32, 8, 8, 1)).astype("float32")
    shifts = iter([[0.5, 0.25, 0.0], [0.45, 0.2, 0.0]])
    offsets_at_batchnorm = []

    def calibrate_budget(images):
        model.budget_offsets.assign(next(shifts))
        return {0.5: 0.5, 0.75: 0.75, 1.0: 1.0}

    def calibrate_after_training(model, *args):
        offsets_at_batchnorm.append(model.budget_offsets.numpy().tolist())

    monkeypatch.setattr(model, "calibrate_budget", calibrate_budget)
    monkeypatch.setattr(recipes, "calibrate_after_training", calibrate_after_training)
    achieved = recipes.calibrate_gates_after_training(model, (x, None), {}, x)
    # The second batch-norm pass reads the budgets the first shift set; the
    # shift is then bisected again for the statistics it changed.
    assert offsets_at_batchnorm == [[0.0, 0.0, 0.0], [0.5, 0.25, 0.0]]
    assert model.budget_offsets.numpy().tolist() == pytest.approx([0.45, 0.2, 0.0])
    assert achieved == {0.5: 0.5, 0.75: 0.75, 1.0: 1.0}
    with pytest.raises(ValueError, match="`rounds` must be at least 1; got 0"):
        recipes.calibrate_gates_after_training(model, (x, None), {}, x, rounds=0)

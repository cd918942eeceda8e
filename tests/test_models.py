import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_images, randomize_batchnorm

import zoo

SMALL = {
    "mlp": dict(),
    "vgg16": dict(width=0.125),
    "resnet20": dict(width=0.5),
    "mobilenet": dict(width=0.25),
}
RATIOS = [1.0, 0.75, 0.5, 0.3, 0.1]


@pytest.fixture(scope="module", params=sorted(SMALL))
def model(request):
    keras.utils.set_random_seed(0)
    model = zoo.build(request.param, profile="linear", **SMALL[request.param])
    randomize_batchnorm(model)
    return model


def test_list_models():
    assert zoo.list_models() == ["lcnet_resnet20", "mlp", "mobilenet", "resnet20", "vgg16"]


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="Known models"):
        zoo.build("alexnet")


def test_images_alone_mean_ratio_one(model):
    x = random_images(model)
    np.testing.assert_allclose(model(x).numpy(), model(x, compute_ratio=1.0).numpy())
    ratio = np.ones(len(x), "float32")
    np.testing.assert_allclose(
        model({"images": x, "compute_ratio": ratio}).numpy(), model(x).numpy()
    )


def test_mixed_batch_equals_per_ratio_runs(model):
    x = random_images(model, batch=5)
    ratios = np.array([0.5, 1.0, 0.1, 0.5, 0.75], "float32")
    mixed = model({"images": x, "compute_ratio": ratios}).numpy()
    for i, ratio in enumerate(ratios):
        alone = model(x[i : i + 1], compute_ratio=float(ratio)).numpy()
        np.testing.assert_allclose(mixed[i], alone[0], rtol=1e-4, atol=1e-4)


def test_mixed_batch_in_a_compiled_function(model):
    x = random_images(model, batch=3)
    ratios = np.array([0.25, 1.0, 0.25], "float32")
    forward = tf.function(lambda x, r: model({"images": x, "compute_ratio": r}))
    np.testing.assert_allclose(
        forward(x, ratios).numpy()[0],
        model(x[:1], compute_ratio=0.25).numpy()[0],
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("ratio", RATIOS)
def test_extract_subnet_equals_dynamic_model(model, ratio):
    x = random_images(model)
    subnet = zoo.extract_subnet(model, ratio)
    assert not any(type(l).__module__.startswith("zoo") for l in subnet._flatten_layers())
    np.testing.assert_allclose(
        subnet(x).numpy(), model(x, compute_ratio=ratio).numpy(), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("ratio", RATIOS)
def test_cost_matches_count_from_the_subnet(model, ratio):
    assert zoo.cost(model, ratio) == zoo.static_cost(zoo.extract_subnet(model, ratio))


def test_cost_falls_about_quadratically():
    model = zoo.build("vgg16")
    full = zoo.cost(model, 1.0)["flops"]
    assert full == 313_463_808
    assert 0.24 < zoo.cost(model, 0.5)["flops"] / full < 0.26


def test_published_sizes():
    assert zoo.cost(zoo.build("resnet20"), 1.0)["params"] == 269_722  # 0.27M, He et al.
    assert zoo.cost(zoo.build("mlp"), 1.0)["flops"] == 784 * 100 + 100 * 100 + 100 * 10


def test_keras_round_trip(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects needed
    assert type(loaded) is type(model) and loaded.operating_points == model.operating_points
    x = random_images(model)
    for ratio in (1.0, 0.5, 0.2):
        np.testing.assert_allclose(
            loaded(x, compute_ratio=ratio).numpy(), model(x, compute_ratio=ratio).numpy(), rtol=1e-6
        )


def test_loaded_model_computes_with_the_loaded_weights(tmp_path):
    # Building runs the model once, which fills the inference kernel cache
    # with the initial kernels; loading must make that cache stale.
    model = zoo.build("mlp")
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.1, w.shape) for w in model.get_weights()])
    x = random_images(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for ratio in (1.0, 0.5):
        inputs = {"images": x, "compute_ratio": np.full((4,), ratio, "float32")}
        np.testing.assert_allclose(
            loaded.predict_on_batch(inputs), model.predict_on_batch(inputs), rtol=1e-5, atol=1e-5
        )


def test_subnet_saves_and_exports(tmp_path):
    model = zoo.build("resnet20", width=0.25)
    randomize_batchnorm(model)
    subnet = zoo.extract_subnet(model, 0.5)
    x = random_images(model)
    expected = model(x, compute_ratio=0.5).numpy()
    subnet.save(tmp_path / "subnet.keras")
    # Loading needs no zoo code: only standard layers are inside.
    reloaded = keras.saving.load_model(tmp_path / "subnet.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    subnet.export(str(tmp_path / "saved_model"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    np.testing.assert_allclose(served.serve(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_dynamic_model_exports_with_a_ratio_per_image(tmp_path):
    model = zoo.build("resnet20", width=0.25)
    randomize_batchnorm(model)
    model.export(str(tmp_path / "saved_model"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    x = random_images(model)
    for ratios in ([0.5] * 4, [1.0, 0.25, 0.5, 0.25]):
        inputs = {"images": x, "compute_ratio": np.array(ratios, "float32")}
        np.testing.assert_allclose(
            served.serve(inputs).numpy(), model(inputs).numpy(), rtol=1e-4, atol=1e-4
        )
    signature = served.signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["compute_ratio", "images"]
    np.testing.assert_allclose(
        signature(images=x, compute_ratio=np.full(4, 0.5, "float32"))["output_0"].numpy(),
        model(x, compute_ratio=0.5).numpy(),
        rtol=1e-4,
        atol=1e-4,
    )
    for ratios in (np.full(2, 0.5, "float32"), np.array([0.5, 1.0], "float32")):
        with pytest.raises(tf.errors.InvalidArgumentError, match="one value per image"):
            signature(images=x, compute_ratio=ratios)


def test_subnet_serves_uint8_images(tmp_path):
    model = zoo.build("resnet20", width=0.25)
    randomize_batchnorm(model)
    x = np.random.default_rng(0).integers(0, 256, (4, *model.image_shape)).astype("uint8")
    expected = model(x, compute_ratio=0.5).numpy()
    subnet = zoo.extract_subnet(model, 0.5, input_dtype="uint8")
    assert zoo.static_cost(subnet) == zoo.cost(model, 0.5)
    subnet.export(str(tmp_path / "saved_model"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    (signature,) = served.signatures["serving_default"].structured_input_signature[1].values()
    assert signature.dtype == tf.uint8
    np.testing.assert_allclose(served.serve(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_width_and_operating_points_arguments():
    model = zoo.build(
        "mlp", width=0.5, operating_points=[0.5, 1.0], input_shape=(8, 8, 1), num_classes=3
    )
    assert model.hidden[0].units == 50 and model.operating_points == (0.5, 1.0)
    assert model(np.zeros((2, 8, 8, 1))).shape == (2, 3)


def test_repeated_operating_points_are_refused():
    with pytest.raises(ValueError, match=r"`operating_points` repeats \[0.5\]"):
        zoo.build("mlp", operating_points=[0.5, 1.0, 0.5])
    with pytest.raises(ValueError, match="repeats"):
        zoo.layers.DynamicBatchNormalization(operating_points=(0.25, 0.25))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), r"`width` .* > 0; got 0"),
        (dict(width=-1.0), r"`width` .* > 0; got -1.0"),
        (dict(num_classes=0), r"`num_classes` must be an integer >= 1; got 0"),
        (dict(channel_multiple=0), r"`channel_multiple` must be an integer >= 1"),
        (dict(operating_points=[0, 0.5]), r"`operating_points` must be in \(0, 1\]"),
        (dict(profile_boundaries=(1.5,)), r"`profile_boundaries` must increase strictly"),
        (dict(profile_boundaries=(0.6, 0.3)), r"`profile_boundaries` must increase strictly"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.build("mlp", input_shape=(8, 8, 1), **kwargs)


def test_config_keeps_trainable_and_dtype():
    model = zoo.build("mlp", input_shape=(8, 8, 1), trainable=False, dtype="float32")
    config = model.get_config()
    assert config["trainable"] is False
    rebuilt = type(model).from_config(config)
    assert rebuilt.trainable is False and rebuilt.dtype_policy.name == "float32"


def test_mlp_cutting_one_layer_as_idps_code_keeps_the_rest_whole(tmp_path):
    model = zoo.build("mlp", cut_hidden=(True, False), profile="linear")
    subnet = zoo.extract_subnet(model, 0.1)
    assert [layer.units for layer in subnet.layers if hasattr(layer, "units")] == [10, 100, 10]
    x = random_images(model, batch=3)
    np.testing.assert_allclose(subnet(x), model(x, compute_ratio=0.1), rtol=1e-5, atol=1e-5)
    # 784 x 10 + 10 x 100 + 100 x 10 multiply-adds.
    assert zoo.cost(model, 0.1)["flops"] == 784 * 10 + 10 * 100 + 100 * 10
    model.save(tmp_path / "mlp.keras")
    loaded = keras.models.load_model(tmp_path / "mlp.keras")
    assert loaded.cut_hidden == (True, False)
    np.testing.assert_allclose(loaded(x, compute_ratio=0.1), model(x, compute_ratio=0.1), rtol=1e-6)


@pytest.mark.parametrize("cut_hidden", [(True,), (False, False)])
def test_mlp_cut_hidden_needs_a_flag_per_layer_and_one_cut(cut_hidden):
    for _ in range(2):
        with pytest.raises(ValueError, match="`cut_hidden` needs one flag per hidden layer"):
            zoo.build("mlp", cut_hidden=cut_hidden)

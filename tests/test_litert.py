"""`zoo.export_litert`: one `.tflite` file, a signature per operating point,
run with the LiteRT interpreter itself."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from conftest import random_images, randomize_batchnorm, real_dataset

import zoo

RATIOS = [1.0, 0.5, 0.25]


@pytest.fixture(scope="module")
def model():
    model = zoo.build("resnet20", width=0.25, blocks_per_stage=1, operating_points=RATIOS)
    randomize_batchnorm(model)
    return model


def test_every_signature_computes_the_model_at_its_ratio(model, tmp_path):
    path = str(tmp_path / "model.tflite")
    assert zoo.export_litert(model, path) == {"ratio_100": 1.0, "ratio_050": 0.5, "ratio_025": 0.25}
    interpreter = Interpreter(path)  # builtin operators only: no Flex delegate here
    signatures = interpreter.get_signature_list()
    assert set(signatures) == {"ratio_100", "ratio_050", "ratio_025"}
    assert all(s == {"inputs": ["images"], "outputs": ["logits"]} for s in signatures.values())
    x = random_images(model, batch=4)
    for name, ratio in (("ratio_100", 1.0), ("ratio_050", 0.5), ("ratio_025", 0.25)):
        logits = interpreter.get_signature_runner(name)(images=x)["logits"]
        expected = model(x, compute_ratio=ratio).numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_quantized_files_run(model, tmp_path, quantize):
    path = str(tmp_path / f"{quantize}.tflite")
    x = random_images(model, batch=8)
    zoo.export_litert(model, path, ratios=[0.5], quantize=quantize, representative_data=x)
    logits = Interpreter(path).get_signature_runner("ratio_050")(images=x[:2])["logits"]
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"ratios": [1.5]}, r"`ratios` must be in \(0, 1\]"),
        ({"quantize": "int4"}, "`quantize` must be one of"),
        ({"quantize": "int8"}, "pass `representative_data`"),
    ],
)
def test_bad_export_arguments_are_refused(model, tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        zoo.export_litert(model, str(tmp_path / "m.tflite"), **arguments)


def test_a_model_without_static_sub_nets_is_refused(tmp_path):
    lcnet = zoo.build("lcnet_resnet20", blocks_per_stage=1)
    with pytest.raises(ValueError, match="LC-Net's gates choose blocks per input"):
        zoo.export_litert(lcnet, str(tmp_path / "m.tflite"))


@pytest.mark.parametrize(
    "architecture, arguments",
    [("mlp", {}), ("vgg16", {"width": 0.125}), ("mobilenet", {"width": 0.25})],
)
def test_every_architecture_exports(tmp_path, architecture, arguments):
    model = zoo.build(architecture, operating_points=[0.5, 1.0], **arguments)
    randomize_batchnorm(model)
    path = str(tmp_path / "model.tflite")
    zoo.export_litert(model, path)
    interpreter = Interpreter(path)
    x = random_images(model, batch=2)
    for name, ratio in (("ratio_100", 1.0), ("ratio_050", 0.5)):
        logits = interpreter.get_signature_runner(name)(images=x)["logits"]
        expected = model(x, compute_ratio=ratio).numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_int8_stays_within_a_point_of_float_on_a_trained_preset(tmp_path):
    # The benchmark (benchmarks/litert_deployment.py) checks every CIFAR-10
    # preset on 2,000 held-out images; here the smallest, on 1,000.
    from zoo.recipes import training_dataset

    model = zoo.load("resnet20_cifar10")
    images, labels = real_dataset("cifar10", "test[:1000]")
    train = real_dataset("cifar10", "train[:500]")
    recipe = zoo.presets.get_preset("resnet20_cifar10")["recipe"]
    batches = training_dataset(train, recipe, seed=0).take(2)  # the images training sees
    calibration = np.concatenate([x.numpy() for x, _ in batches])
    paths = {q: str(tmp_path / f"{q}.tflite") for q in ("float", "int8")}
    zoo.export_litert(model, paths["float"])
    zoo.export_litert(model, paths["int8"], quantize="int8", representative_data=calibration[:200])
    accuracy = {}
    for quantize, path in paths.items():
        interpreter = Interpreter(path)
        for ratio in model.operating_points:
            run = interpreter.get_signature_runner(zoo.litert_export.signature_name(ratio))
            logits = np.concatenate(
                [
                    run(images=images[i : i + 100].astype("float32"))["logits"]
                    for i in range(0, 1000, 100)
                ]
            )
            accuracy[quantize, ratio] = 100 * np.mean(np.argmax(logits, -1) == labels)
    for ratio in model.operating_points:
        assert abs(accuracy["int8", ratio] - accuracy["float", ratio]) <= 1.0, accuracy

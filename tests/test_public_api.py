"""The library uses Keras and TensorFlow through their public API only.

A private attribute (`obj._name`) of a Keras or TensorFlow object can change
or vanish in any release without notice, and training would break silently.
This collects the private attribute names of the Keras and TensorFlow
objects the library works with and fails on any access to one of them in
`zoo/` or `callbacks/`, unless the library defines that name itself.
"""

import os
import re

import keras
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("zoo", "callbacks")
ACCESS = re.compile(r"\.(_[A-Za-z]\w*)\b")
DEFINED = re.compile(
    r"def (_[A-Za-z]\w*)|self\.(_[A-Za-z]\w*)\s*=(?!=)|__setattr__\(\w+, \"(_[A-Za-z]\w*)\""
)


def keras_private_names():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    optimizer = keras.optimizers.SGD()
    optimizer.build(model.trainable_variables)
    objects = [
        model,
        model.layers[0],
        optimizer,
        keras.metrics.Mean(),
        keras.losses.MeanSquaredError(),
        model.trainable_variables[0],
        tf.Variable(0.0),
        tf.distribute.get_strategy(),
        keras.callbacks.Callback(),
        keras.optimizers.schedules.CosineDecay(0.1, 10),
    ]
    names = set()
    for obj in objects:
        names.update(n for n in dir(obj) if n.startswith("_") and not n.startswith("__"))
    return names


def sources():
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path) as file:
                        yield os.path.relpath(path, ROOT), file.read()


def test_no_private_keras_or_tensorflow_attribute_is_used():
    texts = dict(sources())
    ours = {name for text in texts.values() for match in DEFINED.findall(text) for name in match}
    private = keras_private_names() - ours
    used = [
        f"{path}:{text[: match.start()].count(chr(10)) + 1}: .{match.group(1)}"
        for path, text in texts.items()
        for match in ACCESS.finditer(text)
        if match.group(1) in private
    ]
    assert not used, "Private Keras/TensorFlow attributes used:\n" + "\n".join(used)

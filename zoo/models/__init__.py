"""The zoo's architectures, by name."""

from zoo.models.lcnet_resnet20 import LCNetResNet20
from zoo.models.mlp import MLP
from zoo.models.mobilenet import MobileNet
from zoo.models.resnet20 import ResNet20
from zoo.models.vgg16 import VGG16

MODELS = {
    "mlp": MLP,
    "vgg16": VGG16,
    "resnet20": ResNet20,
    "mobilenet": MobileNet,
    "lcnet_resnet20": LCNetResNet20,
}


def list_models():
    """Names accepted by `zoo.build`."""
    return sorted(MODELS)


def build(name, **kwargs):
    """Builds an untrained zoo model.

    Args:
        name: one of `list_models()`.
        **kwargs: the architecture's arguments: `num_classes`, `input_shape`,
            `operating_points`, and its own (see each class); all but
            `lcnet_resnet20` also take `profile`, `width`,
            `channel_multiple` and `profile_boundaries`.

    Example:
    >>> model = zoo.build("resnet20", num_classes=10, width=0.5)
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Known models: {list_models()}.")
    return MODELS[name](**kwargs)


__all__ = [
    "LCNetResNet20",
    "MLP",
    "MODELS",
    "MobileNet",
    "ResNet20",
    "VGG16",
    "build",
    "list_models",
]

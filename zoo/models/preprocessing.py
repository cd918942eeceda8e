"""The preprocessing zoo models run on raw 0-255 images."""

import keras

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def image_normalization(channels):
    """Per-channel standardisation of 0-255 pixels.

    Colour images use the CIFAR-10 statistics; other channel counts use
    mean 0.5 and standard deviation 0.25 of the [0, 1] range.
    """
    if channels == 3:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        mean, std = (0.5,) * channels, (0.25,) * channels
    return keras.layers.Normalization(
        mean=[255.0 * m for m in mean],
        variance=[(255.0 * s) ** 2 for s in std],
        name="normalize",
    )

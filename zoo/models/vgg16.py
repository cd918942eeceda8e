"""IDP's CIFAR-10 VGG-16 with batch normalization."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers import DynamicConv2D, DynamicDense
from zoo.models.preprocessing import image_normalization

VGG16_CONFIG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


@keras.saving.register_keras_serializable(package="zoo")
class VGG16(DynamicModel):
    """Dynamic-width VGG-16 for 32x32 images: 13 convolutions, FC 512, FC classes.

    Every 3x3 convolution is followed by batch norm (statistics per operating
    point) and ReLU, five 2x2 max pools bring 32x32 down to 1x1, then a
    512-unit hidden layer (batch norm, ReLU) and the classifier. The first
    convolution reads all three colour channels; the classifier produces all
    logits; every other width follows the compute ratio.

    Args:
        input_shape: shape of one image, default `(32, 32, 3)`.
        num_classes: number of classes.
        dropout: dropout rate before each dense layer (0 disables it).
        name: the model's name, `"vgg16"` unless given.
        **kwargs: `DynamicModel` arguments (`operating_points`, `profile`,
            `width`, `channel_multiple`, `profile_boundaries`).

    Example:
    >>> model = VGG16(num_classes=10)
    >>> logits = model(np.zeros((1, 32, 32, 3)), compute_ratio=0.5)
    """

    is_chain = True

    def __init__(
        self, input_shape=(32, 32, 3), num_classes=10, dropout=0.0, name="vgg16", **kwargs
    ):
        super().__init__(input_shape=input_shape, num_classes=num_classes, name=name, **kwargs)
        pools = VGG16_CONFIG.count("M")
        if min(self.image_shape[:2]) < 2**pools:
            raise ValueError(
                f"vgg16's {pools} 2x2 max pools need images of at least {2**pools}x{2**pools} "
                f"pixels; got input_shape={self.image_shape}."
            )
        self.dropout = float(dropout)
        self.normalize = image_normalization(self.image_shape[-1])
        self.stages = []
        conv_index = 0
        for item in VGG16_CONFIG:
            if item == "M":
                self.stages.append(keras.layers.MaxPooling2D(2, name=f"pool_{len(self.stages)}"))
                continue
            self.stages += [
                self._conv(self.channels(item), conv_index),
                self.batch_norm(f"conv_{conv_index}_bn"),
                keras.layers.ReLU(name=f"conv_{conv_index}_relu"),
            ]
            conv_index += 1
        # At 32x32 the map is 1x1 here, where this equals flattening; unlike
        # flattening it keeps channel i at position i for larger inputs.
        self.flatten = keras.layers.GlobalAveragePooling2D(name="pool_global")
        self.hidden = DynamicDense(
            self.channels(512), use_bias=False, **self.dynamic_kwargs(), name="fc"
        )
        self.hidden_bn = self.batch_norm("fc_bn")
        self.hidden_relu = keras.layers.ReLU(name="fc_relu")
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{i}") for i in range(2)]
        self.classifier = self.branched(
            lambda name: DynamicDense(
                num_classes, **self.dynamic_kwargs(cut_outputs=False), name=name
            ),
            "classifier",
        )
        self.build()

    def _conv(self, filters, index):
        def make(name):
            return DynamicConv2D(
                filters, 3, use_bias=False, **self.dynamic_kwargs(cut_inputs=index > 0), name=name
            )

        # The first convolution reads the pixels: one per profile (IDP's MP).
        return self.branched(make, "conv_0") if index == 0 else make(f"conv_{index}")

    def forward(self, images, apply):
        x = apply(self.normalize, images)
        for layer in self.stages:
            x = apply(layer, x)
        x = apply(self.flatten, x)
        if self.dropout:
            x = apply(self.dropouts[0], x)
        x = apply(self.hidden_relu, apply(self.hidden_bn, apply(self.hidden, x)))
        if self.dropout:
            x = apply(self.dropouts[1], x)
        return apply(self.classifier, x)

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout}

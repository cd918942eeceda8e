"""IDP's small MobileNet for CIFAR-10."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers import DynamicConv2D, DynamicDense, DynamicDepthwiseConv2D
from zoo.models.preprocessing import image_normalization

# (filters, strides) of the depthwise-separable blocks. IDP gives the widths;
# the strides are our choice for 32x32 inputs (32 -> 16 -> 8).
MOBILENET_BLOCKS = ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


@keras.saving.register_keras_serializable(package="zoo")
class MobileNet(DynamicModel):
    """Dynamic-width MobileNet: a 3x3 convolution, depthwise-separable blocks.

    A 3x3 convolution with 64 filters, then six depthwise-separable blocks
    (3x3 depthwise convolution, batch norm, ReLU, 1x1 pointwise convolution,
    batch norm, ReLU) of 64, 64, 128, 128, 256 and 256 filters, global
    average pooling and the (linear) classifier.

    Args:
        blocks: `(filters, strides)` of each depthwise-separable block.
        input_shape: shape of one image, default `(32, 32, 3)`.
        num_classes: number of classes.
        name: the model's name, `"mobilenet"` unless given.
        **kwargs: `DynamicModel` arguments (`operating_points`, `profile`,
            `width`, `channel_multiple`, `profile_boundaries`).

    Example:
    >>> model = MobileNet(num_classes=10)
    >>> logits = model(np.zeros((1, 32, 32, 3)), compute_ratio=0.5)
    """

    is_chain = True

    def __init__(
        self,
        blocks=MOBILENET_BLOCKS,
        input_shape=(32, 32, 3),
        num_classes=10,
        name="mobilenet",
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, num_classes=num_classes, name=name, **kwargs)
        self.blocks = tuple((int(f), int(s)) for f, s in blocks)
        self.normalize = image_normalization(self.image_shape[-1])
        self.body = [
            self.branched(
                lambda name: DynamicConv2D(
                    self.channels(64),
                    3,
                    use_bias=False,
                    **self.dynamic_kwargs(cut_inputs=False),
                    name=name,
                ),
                "stem_conv",
            ),
            self.batch_norm("stem_bn"),
            keras.layers.ReLU(name="stem_relu"),
        ]
        for index, (filters, strides) in enumerate(self.blocks):
            name = f"block{index}"
            self.body += [
                DynamicDepthwiseConv2D(
                    3,
                    strides=strides,
                    use_bias=False,
                    channel_multiple=self.channel_multiple,
                    name=f"{name}_dw",
                ),
                self.batch_norm(f"{name}_dw_bn"),
                keras.layers.ReLU(name=f"{name}_dw_relu"),
                DynamicConv2D(
                    self.channels(filters),
                    1,
                    use_bias=False,
                    **self.dynamic_kwargs(),
                    name=f"{name}_pw",
                ),
                self.batch_norm(f"{name}_pw_bn"),
                keras.layers.ReLU(name=f"{name}_pw_relu"),
            ]
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = self.branched(
            lambda name: DynamicDense(
                num_classes, **self.dynamic_kwargs(cut_outputs=False), name=name
            ),
            "classifier",
        )
        self.build()

    def forward(self, images, apply):
        x = apply(self.normalize, images)
        for layer in self.body:
            x = apply(layer, x)
        return apply(self.classifier, apply(self.pool, x))

    def get_config(self):
        return {**super().get_config(), "blocks": [list(b) for b in self.blocks]}

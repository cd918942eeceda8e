"""The CIFAR ResNet-20 of He et al. (2016)."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers import DynamicConv2D, DynamicDense, ZeroPadShortcut
from zoo.models.preprocessing import image_normalization


@keras.saving.register_keras_serializable(package="zoo")
class ResNet20(DynamicModel):
    """Dynamic-width ResNet-20 (or any 6n+2 CIFAR ResNet).

    A 3x3 convolution with 16 filters, three stages of `blocks_per_stage`
    basic blocks with 16, 32 and 64 filters (the first block of the second
    and third stages halves the resolution), global average pooling and the
    classifier. Shortcuts are parameter-free (option A): identity within a
    stage, subsample-and-zero-pad between stages, with the zero channels
    appended after the input's (see `ZeroPadShortcut`), so the residual
    additions line up at every width.

    Args:
        blocks_per_stage: 3 gives ResNet-20, 5 ResNet-32, 9 ResNet-56.
        input_shape: shape of one image, default `(32, 32, 3)`.
        num_classes: number of classes.
        name: the model's name, `"resnet20"` unless given.
        **kwargs: `DynamicModel` arguments (`operating_points`, `profile`,
            `width`, `channel_multiple`, `profile_boundaries`).

    Example:
    >>> model = ResNet20(num_classes=10)
    >>> logits = model(np.zeros((1, 32, 32, 3)), compute_ratio=0.5)
    """

    def __init__(
        self, blocks_per_stage=3, input_shape=(32, 32, 3), num_classes=10, name="resnet20", **kwargs
    ):
        super().__init__(input_shape=input_shape, num_classes=num_classes, name=name, **kwargs)
        self.blocks_per_stage = int(blocks_per_stage)
        self.normalize = image_normalization(self.image_shape[-1])
        self.stem = self._conv_bn_relu(16, 1, "stem", cut_inputs=False)
        self.blocks = []
        filters_in = self.channels(16)
        for stage, filters in enumerate((16, 32, 64)):
            for index in range(self.blocks_per_stage):
                strides = 2 if stage > 0 and index == 0 else 1
                name = f"stage{stage}_block{index}"
                block = {
                    "conv1": self._conv_bn_relu(filters, strides, f"{name}_1"),
                    "conv2": self._conv_bn_relu(filters, 1, f"{name}_2", relu=False),
                    "add": keras.layers.Add(name=f"{name}_add"),
                    "relu": keras.layers.ReLU(name=f"{name}_relu"),
                }
                if strides != 1 or filters_in != self.channels(filters):
                    block["shortcut"] = ZeroPadShortcut(
                        self.channels(filters),
                        strides,
                        **self.dynamic_kwargs(),
                        name=f"{name}_shortcut",
                    )
                filters_in = self.channels(filters)
                self.blocks.append(block)
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = self.branched(
            lambda name: DynamicDense(
                num_classes, **self.dynamic_kwargs(cut_outputs=False), name=name
            ),
            "classifier",
        )
        self.build()

    def _conv_bn_relu(self, filters, strides, name, cut_inputs=True, relu=True):
        def make(layer_name):
            return DynamicConv2D(
                self.channels(filters),
                3,
                strides=strides,
                use_bias=False,
                **self.dynamic_kwargs(cut_inputs=cut_inputs),
                name=layer_name,
            )

        # The stem reads the pixels: one per profile (IDP's MP).
        conv = self.branched(make, f"{name}_conv") if not cut_inputs else make(f"{name}_conv")
        layers = [
            conv,
            self.batch_norm(f"{name}_bn"),
        ]
        if relu:
            layers.append(keras.layers.ReLU(name=f"{name}_relu"))
        return layers

    def forward(self, images, apply):
        x = apply(self.normalize, images)
        for layer in self.stem:
            x = apply(layer, x)
        for block in self.blocks:
            y = x
            for layer in block["conv1"] + block["conv2"]:
                y = apply(layer, y)
            shortcut = apply(block["shortcut"], x) if "shortcut" in block else x
            x = apply(block["relu"], apply(block["add"], [shortcut, y]))
        return apply(self.classifier, apply(self.pool, x))

    def get_config(self):
        return {**super().get_config(), "blocks_per_stage": self.blocks_per_stage}

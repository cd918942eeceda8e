"""IDP's and TESLA's MNIST network: an MLP 784-100-100-10."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers import DynamicDense


@keras.saving.register_keras_serializable(package="zoo")
class MLP(DynamicModel):
    """Dynamic-width multi-layer perceptron with ReLU hidden layers.

    The flattened pixels (scaled to [0, 1]) feed every hidden unit; the
    hidden layers' widths and the classifier's inputs follow the compute
    ratio; the classifier always produces all `num_classes` logits.

    IDP's own MLP experiments cut one layer only: the ratio keeps the first
    units of the first hidden layer, which the second reads through its
    profile, while the second hidden layer and the classifier stay whole
    (`cut_hidden=(True, False)`).

    Args:
        hidden_units: width of each hidden layer at ratio 1 (before `width`).
        cut_hidden: for each hidden layer, whether the ratio cuts its units
            (default: every layer's); the layer after a cut one reads only
            the kept units, through the profile.
        input_shape: shape of one image, default MNIST's `(28, 28, 1)`.
        num_classes: number of classes.
        name: the model's name, `"mlp"` unless given.
        **kwargs: `DynamicModel` arguments (`operating_points`, `profile`,
            `width`, `channel_multiple`, `profile_boundaries`).

    Example:
    >>> model = MLP(num_classes=10)
    >>> logits = model(np.zeros((2, 28, 28, 1)), compute_ratio=0.25)
    """

    is_chain = True

    def __init__(
        self,
        hidden_units=(100, 100),
        cut_hidden=None,
        input_shape=(28, 28, 1),
        num_classes=10,
        name="mlp",
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, num_classes=num_classes, name=name, **kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.cut_hidden = self._cut_hidden(cut_hidden)
        self.rescale = keras.layers.Rescaling(1.0 / 255.0, name="rescale")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.hidden = [
            self._hidden_layer(index, units) for index, units in enumerate(self.hidden_units)
        ]
        self.classifier = self.branched(
            lambda name: DynamicDense(
                num_classes,
                **self.dynamic_kwargs(cut_inputs=self.cut_hidden[-1], cut_outputs=False),
                name=name,
            ),
            "classifier",
        )
        self.build()

    def _hidden_layer(self, index, units):
        def make(name):
            return DynamicDense(
                self.channels(units),
                activation="relu",
                **self.dynamic_kwargs(
                    cut_inputs=index > 0 and self.cut_hidden[index - 1],
                    cut_outputs=self.cut_hidden[index],
                ),
                name=name,
            )

        # The first layer reads the pixels: one per profile (IDP's MP).
        return self.branched(make, "dense_0") if index == 0 else make(f"dense_{index}")

    def _cut_hidden(self, cut_hidden):
        if cut_hidden is None:
            return (True,) * len(self.hidden_units)
        cut = tuple(bool(c) for c in cut_hidden)
        if len(cut) != len(self.hidden_units) or not any(cut):
            raise ValueError(
                f"`cut_hidden` needs one flag per hidden layer ({len(self.hidden_units)}), at "
                f"least one of them true; got {cut_hidden!r}."
            )
        return cut

    def forward(self, images, apply):
        x = apply(self.flatten, apply(self.rescale, images))
        for layer in self.hidden:
            x = apply(layer, x)
        return apply(self.classifier, x)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "cut_hidden": list(self.cut_hidden),
        }

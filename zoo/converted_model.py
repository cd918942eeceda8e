"""`ConvertedModel`: a Keras graph run at any compute ratio (made by `zoo.dynamic`)."""

import keras

from zoo.dynamic_model import DynamicModel
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.ratio_model import DEFAULT_OPERATING_POINTS
from zoo.training_plan import MAX_WIDTH_GROUPS

# How a graph's tensors are written in the config: `{TENSOR: [node, index]}`.
TENSOR = "__tensor__"


@keras.saving.register_keras_serializable(package="zoo")
class ConvertedModel(DynamicModel):
    """A Functional graph of dynamic layers, as `zoo.dynamic` converts a Keras model.

    The graph is data: each node names a layer or Keras operation (its
    serialized config), the tensors it reads, and for a dynamic layer the
    layout of its input channels (`DynamicLayer.set_input_layout`): the
    concatenated blocks it reads, each cut to its own width group's ratio.
    `forward` runs the nodes in order, so the model computes, trains,
    extracts and exports as every `zoo.DynamicModel` does, with one width
    group per set of tensors that are added or multiplied together
    (`model.num_width_groups`, for non-uniform sub-nets).

    Build it with `zoo.dynamic(keras_model)` rather than directly.

    Args:
        graph: `{"nodes": [{"name", "layer", "args", "kwargs"}], "outputs",
            "layouts": {node name: {"segments", "positions", "output_group"}}}`,
            tensors written `{"__tensor__": [node, index]}` and the images
            `["images", 0]`.
        input_shape: shape of one input, without the batch axis.
        num_classes: size of the output's last axis.
        operating_points: the ratios batch norm keeps statistics for.
        **kwargs: `zoo.DynamicModel` arguments (`channel_multiple`, `name`).

    Example:
    >>> model = zoo.dynamic(keras.applications.MobileNetV2((96, 96, 3), weights=None))
    >>> isinstance(model, zoo.converted_model.ConvertedModel)
    True
    """

    def __init__(
        self,
        graph,
        input_shape,
        num_classes,
        operating_points=DEFAULT_OPERATING_POINTS,
        name="converted",
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            operating_points=operating_points,
            name=name,
            **kwargs,
        )
        # Plain attributes: the graph is configuration, not trackable state.
        object.__setattr__(self, "graph", graph)
        nodes, layers = [], []
        for entry in graph["nodes"]:
            operation = keras.saving.deserialize_keras_object(entry["layer"])
            if isinstance(operation, keras.layers.Layer):
                layers.append(operation)
            nodes.append((entry["name"], operation, entry["args"], entry["kwargs"]))
        object.__setattr__(self, "_graph_nodes", nodes)
        self.graph_layers = layers
        groups = 0
        for name, operation, _, _ in nodes:
            layout = graph["layouts"].get(name)
            if layout is not None and isinstance(operation, DynamicLayer):
                operation.set_input_layout(
                    layout["segments"], layout["positions"], layout["output_group"]
                )
                used = [g for _, g in layout["segments"]] + [layout["output_group"]]
                groups = max([groups] + [g + 1 for g in used if g is not None])
        if groups > MAX_WIDTH_GROUPS:
            raise ValueError(
                f"{name} has {groups} width groups; training plans hold at most {MAX_WIDTH_GROUPS}."
            )
        self.num_width_groups = groups
        self.plan.num_width_groups = groups
        self.outputs_probabilities = self._ends_in_softmax()
        self.build()

    def _ends_in_softmax(self):
        outputs = self.graph["outputs"]
        if not (isinstance(outputs, dict) and outputs[TENSOR][0] != "images"):
            return False
        last = self.graph_layer(outputs[TENSOR][0])
        activation = getattr(last, "activation", None)
        return isinstance(last, keras.layers.Softmax) or (
            getattr(activation, "__name__", None) == "softmax"
        )

    def graph_layer(self, name):
        """The layer of graph node `name`."""
        for node_name, operation, _, _ in self._graph_nodes:
            if node_name == name:
                return operation
        raise ValueError(f"{self.name} has no node {name!r}.")

    def graph_width_groups(self):
        """The model's width groups (`zoo.graph_width_groups.GraphWidthGroup`)."""
        from zoo.graph_width_groups import graph_width_groups

        return graph_width_groups(self)

    def forward(self, images, apply):
        values = {("images", 0): images}
        for name, operation, args, kwargs in self._graph_nodes:
            args = fill_tensors(args, values)
            if isinstance(operation, keras.layers.Layer):
                outputs = apply(operation, args[0] if len(args) == 1 else args)
            else:
                outputs = operation(*args, **fill_tensors(kwargs, values))
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            for index, output in enumerate(outputs):
                values[(name, index)] = output
        return fill_tensors(self.graph["outputs"], values)

    def get_config(self):
        return {**super().get_config(), "graph": self.graph}


def fill_tensors(structure, values):
    """`structure` with every `{"__tensor__": [node, index]}` replaced by its value."""
    if isinstance(structure, dict):
        if TENSOR in structure:
            return values[tuple(structure[TENSOR])]
        return {key: fill_tensors(value, values) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [fill_tensors(item, values) for item in structure]
    return structure

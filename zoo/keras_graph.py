"""A built Keras model's graph as one flat list of calls, read from its config."""

import keras

# How a tensor is written in a Functional model's config.
KERAS_TENSOR = "__keras_tensor__"


class TensorRef:
    """Output `index` of graph node `node` (the model's input is node `"images"`).

    Args:
        node: name of the node that computes the tensor.
        index: which of its outputs.
        shape: the tensor's shape, batch first, when known.
    """

    def __init__(self, node, index=0, shape=None):
        self.node = node
        self.index = int(index)
        self.shape = None if shape is None else tuple(shape)

    @property
    def key(self):
        return (self.node, self.index)

    def __repr__(self):
        return f"TensorRef({self.node!r}, {self.index})"


class GraphNode:
    """One call of a layer or a Keras operation on tensors of the graph.

    Args:
        name: a name unique in the flattened graph.
        operation: the `keras.layers.Layer` or `keras.Operation` called.
        args: positional arguments, `TensorRef`s where tensors go.
        kwargs: keyword arguments, likewise.
        output_shapes: the shape of each output, when known.
    """

    def __init__(self, name, operation, args, kwargs, output_shapes=()):
        self.name = name
        self.operation = operation
        self.args = args
        self.kwargs = kwargs
        self.output_shapes = list(output_shapes)

    @property
    def inputs(self):
        """Every `TensorRef` among the arguments, in order."""
        return list(tensor_refs([self.args, self.kwargs]))

    def __repr__(self):
        return f"GraphNode({self.name!r}, {type(self.operation).__name__})"


class KerasGraph:
    """A model's calls in the order they run, nested models flattened.

    Args:
        image_shape: shape of one input, without the batch axis.
        nodes: the `GraphNode`s, each after the nodes it reads.
        outputs: the model's output `TensorRef` (or a list of them).
    """

    def __init__(self, image_shape, nodes, outputs):
        self.image_shape = tuple(image_shape)
        self.nodes = nodes
        self.outputs = outputs


def read_graph(model):
    """The `KerasGraph` of a built Functional or Sequential model.

    Reads the graph through the public `get_config()` (which records every
    call, the Keras operations applied to tensors included) and takes the
    layer objects from `model.operations` / `model.layers`.

    Raises:
        ValueError: for a model that is not built, not Functional or
            Sequential, takes several inputs, or calls one layer twice.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`zoo.dynamic` converts a `keras.Model`; got {type(model).__name__}.")
    if not _is_graph_model(model):
        raise ValueError(
            f"`zoo.dynamic` converts Functional and Sequential models; {model.name} is a "
            f"subclassed {type(model).__name__}, whose graph Keras does not record. Write it "
            "with the Functional API, or subclass `zoo.DynamicModel`."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"{model.name} is not built: give it an input shape (`keras.Input(shape)`) first."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"`zoo.dynamic` converts models with one input (the images); {model.name} takes "
            f"{len(model.inputs)}."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape:
        raise ValueError(
            f"{model.name} takes inputs of shape {(None,) + shape}: give it a fixed input "
            "shape, e.g. `input_shape=(96, 96, 3)`."
        )
    reader = _GraphReader()
    outputs = reader.add_model(model, [TensorRef("images", 0, (None,) + shape)])
    return KerasGraph(shape, reader.nodes, outputs[0] if len(outputs) == 1 else outputs)


def tensor_refs(structure):
    """Every `TensorRef` in nested lists, tuples and dicts."""
    if isinstance(structure, TensorRef):
        yield structure
    elif isinstance(structure, (list, tuple)):
        for item in structure:
            yield from tensor_refs(item)
    elif isinstance(structure, dict):
        for item in structure.values():
            yield from tensor_refs(item)


def _is_graph_model(model):
    return (
        isinstance(model, keras.Sequential)
        or type(model).__name__ == "Functional"
        or (hasattr(model, "operations") and "layers" in model.get_config())
    )


class _GraphReader:
    def __init__(self):
        self.nodes = []
        self.names = set()
        self.seen = set()

    def add_model(self, model, inputs):
        if isinstance(model, keras.Sequential):
            return self._add_sequential(model, inputs)
        return self._add_functional(model, inputs)

    def _add_sequential(self, model, inputs):
        (x,) = inputs
        for layer in model.layers:
            outputs = self._call(layer, [x], {}, [x])
            if len(outputs) != 1:
                raise ValueError(f"Layer {layer.name} of {model.name} returns several tensors.")
            x = outputs[0]
        return [x]

    def _add_functional(self, model, inputs):
        config = model.get_config()
        operations = {operation.name: operation for operation in model.operations}
        produced = {}
        for (name, _, index), ref in zip(_history_list(config["input_layers"]), inputs):
            produced[(name, index)] = ref
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                continue
            calls = entry.get("inbound_nodes", [])
            operation = operations[entry["name"]]
            if len(calls) > 1:
                raise ValueError(_shared_message(operation))
            if not calls:
                continue
            args = _resolve(calls[0].get("args", []), produced, model)
            kwargs = _resolve(calls[0].get("kwargs", {}), produced, model)
            outputs = self._call(operation, args, kwargs, list(tensor_refs(args)))
            for index, ref in enumerate(outputs):
                produced[(entry["name"], index)] = ref
        return [_lookup(h, produced, model) for h in _history_list(config["output_layers"])]

    def _call(self, operation, args, kwargs, inputs):
        if id(operation) in self.seen:
            raise ValueError(_shared_message(operation))
        self.seen.add(id(operation))
        if isinstance(operation, keras.Model):
            return self.add_model(operation, inputs)
        name = self._unique(operation.name)
        outputs = _output_shapes(operation)
        self.nodes.append(GraphNode(name, operation, args, kwargs, outputs))
        return [TensorRef(name, i, shape) for i, shape in enumerate(outputs)]

    def _unique(self, name):
        candidate, suffix = name, 1
        while candidate in self.names or candidate == "images":
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        self.names.add(candidate)
        return candidate


def _output_shapes(operation):
    try:
        output = operation.output
    except (AttributeError, ValueError):
        return [None]
    outputs = output if isinstance(output, (list, tuple)) else [output]
    return [tuple(o.shape) if hasattr(o, "shape") else None for o in outputs]


def _shared_message(operation):
    return (
        f"Layer {operation.name!r} ({type(operation).__name__}) is called at more than one "
        "place of the model. `zoo.dynamic` gives every call its own channel widths, so it "
        "converts models whose layers are each called once."
    )


def _history_list(layers):
    if layers and isinstance(layers[0], str):
        return [tuple(layers)]
    return [tuple(entry) for entry in layers]


def _lookup(history, produced, model):
    # Every operation is called once in the model (checked), so its name and
    # output index identify a tensor; the call's index counts calls made
    # outside the model too (a nested model's own construction).
    name, _, index = history[:3]
    if (name, index) not in produced:
        raise ValueError(
            f"{model.name} reads output {index} of {name!r}, which `zoo.dynamic` cannot follow."
        )
    return produced[(name, index)]


def _resolve(structure, produced, model):
    if isinstance(structure, dict):
        if structure.get("class_name") == KERAS_TENSOR:
            ref = _lookup(structure["config"]["keras_history"], produced, model)
            shape = structure["config"].get("shape")
            if ref.shape is None and shape is not None:
                ref.shape = tuple(shape)
            return ref
        return {key: _resolve(value, produced, model) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_resolve(item, produced, model) for item in structure]
    return structure

"""Every layer inside a layer or model, found through its attributes."""

import keras


def all_layers(root, include_root=False):
    """The layers `root` holds, directly or nested, each once, in attribute order.

    Keras lists a subclassed model's direct layers in `model.layers` but
    offers no public walk into layers that hold layers of their own (a
    `ProfileBranches`, a residual block's dict). This follows attributes,
    lists, tuples and dicts, the containers a layer keeps sublayers in.

    Args:
        root: a `keras.layers.Layer` (a model included).
        include_root: whether `root` itself comes first.

    Example:
    >>> [l.name for l in all_layers(model) if isinstance(l, keras.layers.Conv2D)]
    """
    found = {}
    _visit(root, found, depth=0)
    layers = list(found.values())
    return layers if include_root else [layer for layer in layers if layer is not root]


def _visit(value, found, depth):
    if depth > 50:
        return
    if isinstance(value, keras.layers.Layer):
        if id(value) in found:
            return
        found[id(value)] = value
        children = list(vars(value).values())
    elif isinstance(value, (list, tuple)):
        children = list(value)
    elif isinstance(value, dict):
        children = list(value.values())
    else:
        return
    for child in children:
        if isinstance(child, (keras.layers.Layer, list, tuple, dict)):
            _visit(child, found, depth + 1)

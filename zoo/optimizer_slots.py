"""The per-weight state of a Keras optimizer, told apart from its own."""


def optimizer_slots(optimizer, model_variables):
    """The optimizer's variables that shadow one of `model_variables` each.

    Keras optimizers create such slots (momenta, second moments) with
    `add_variable_from_reference`, which names them after the weight's
    path. Everything else is the optimizer's own state (step count,
    learning rate, a `LossScaleOptimizer`'s scale) and is left out, as are
    the weights' moving averages under `use_ema` and gradient accumulators,
    which shadow weights but hold values, not momentum. A wrapping
    optimizer's inner optimizer is searched too.

    Args:
        optimizer: A built `keras.optimizers.Optimizer`.
        model_variables: The weights it trains.

    Returns:
        A list of `keras.Variable`s.

    Example:

    >>> for slot in optimizer_slots(model.optimizer, model.trainable_variables):
    ...     slot.assign(keras.ops.zeros_like(slot))
    """
    prefixes = tuple(v.path.replace("/", "_") + "_" for v in model_variables)
    spared = {
        id(v)
        for name in ("_model_variables_moving_average", "_accumulated_gradients")
        for v in getattr(optimizer, name, None) or []
    }
    slots = [v for v in optimizer._variables if id(v) not in spared and v.name.startswith(prefixes)]
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        slots += optimizer_slots(inner, model_variables)
    return slots

"""The per-weight state of a Keras optimizer, told apart from its own."""

# Keras names a weight's shadow `<weight path>_<suffix>`; these suffixes
# (`use_ema`'s moving averages, gradient accumulators) hold values, not momentum.
VALUE_SUFFIXES = ("_average", "_gradient_accumulator")


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
    slots = [
        v
        for v in optimizer.variables
        if v.name.startswith(prefixes) and not v.name.endswith(VALUE_SUFFIXES)
    ]
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        slots += optimizer_slots(inner, model_variables)
    return slots

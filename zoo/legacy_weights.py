"""Weights files of earlier versions of the zoo's models."""

# Weights files saved before the plan stopped being a weight hold it as six.
LEGACY_PLAN_WEIGHTS = 6


def without_legacy_plan(model, store):
    """`store` (a model's own variables, as `load_own_variables` gets them),
    less the plan that files saved before 2026-11-26 hold.

    Those files kept the training plan as six weights, right after the
    model's own trainable weights; they load as if it had never been saved.
    """
    inner = {id(w) for layer in model.layers for w in layer.weights}
    own = [v for v in model.weights if id(v) not in inner]
    if len(store.keys()) != len(own) + LEGACY_PLAN_WEIGHTS:
        return store
    trainable = sum(v.trainable for v in own)
    return {
        str(i): store[str(i if i < trainable else i + LEGACY_PLAN_WEIGHTS)] for i in range(len(own))
    }

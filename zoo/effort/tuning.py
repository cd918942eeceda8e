"""Choosing the effort knobs of a trained model, without retraining."""

import math
from statistics import NormalDist

import numpy as np
import tensorflow as tf

from zoo.effort.effort_conv2d import EffortConv2D
from zoo.effort.preparation import effort_layer_inputs, effort_layers, prepare

KNOBS = ("sdss", "spet", "sfma")
# Candidate settings per knob; tuning picks among them by their error.
CANDIDATES = {
    "sdss": [{"sdss_threshold": t} for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)],
    "spet": [
        {"spet_margin": m, "spet_fraction": f}
        for f in (0.25, 0.5)
        for m in (3.0, 2.0, 1.0, 0.5, 0.25, 0.0)
    ],
    "sfma": [{"sfma_threshold": t} for t in (0.02, 0.05, 0.1, 0.2, 0.3)],
}
ATTRIBUTES = {"spet": "spet_margin", "sdss": "sdss_threshold", "sfma": "sfma_threshold"}
# Tolerances on a layer's relative output error, from the strictest.
ERROR_LEVELS = tuple(float(e) for e in np.logspace(-4, 0, 17))


def tune(
    model,
    calibration_data,
    max_accuracy_drop=0.005,
    knobs=KNOBS,
    compute_ratio=1.0,
    confidence=None,
    probe_size=256,
    batch_size=250,
    verbose=0,
):
    """The model with DyVEDeep's effort knobs set under an accuracy budget.

    The model is copied with knob-carrying layers (`prepare`) and the knobs
    are calibrated on the inputs each layer sees for the first `probe_size`
    images. Every candidate setting of every knob (`CANDIDATES`) is then
    tried on each layer alone, on those cached inputs, to measure its
    relative output error `|y' - y|^2 / |y|^2` and its scalar operations.
    Each knob has one tolerance shared by all layers: each layer takes the
    knob's cheapest candidate whose error is within it (or leaves the knob
    off when none saves work). A binary search over `ERROR_LEVELS` finds
    the loosest tolerance whose accuracy on `calibration_data` stays within
    the budget, first for each knob alone; then, from the knob that saves
    the most alone, each further knob is searched with those before it on,
    so that several knobs never save less than the best one alone does.
    No weight changes.

    The drop measured on a few thousand images is noisy, so a setting just
    within the budget there is often over it on new data. With a
    `confidence` level, a setting is accepted only when the upper
    confidence bound of its drop is within the budget: a paired bound over
    the calibration images, `drop + z * sqrt(lost + gained - n * drop^2) / n`
    where `lost` and `gained` count the images the knobs turn wrong and
    right and `z` is the normal quantile of `confidence`.

    Args:
        model: a trained `zoo.DynamicModel` or a functional or `Sequential`
            Keras CNN or MLP ending in logits or probabilities.
        calibration_data: `(images, labels)` arrays (not the test set); a
            few thousand images resolve a budget of half a point.
        max_accuracy_drop: the accuracy the knobs may lose on
            `calibration_data`, a fraction in [0, 1): 0.005 is half a point.
        knobs: which knobs to use, among `"spet"`, `"sdss"` and `"sfma"`.
        compute_ratio: the ratio of a zoo model; the knobs work within it.
        confidence: `None` compares the measured drop with the budget; a
            level in [0.5, 1) (say 0.9) compares its upper confidence bound,
            trading savings for a budget that holds on new data.
        probe_size: images whose layer inputs calibrate and rank the knobs.
        batch_size: evaluation batch size.
        verbose: 1 prints the search.

    Returns:
        The tuned functional `keras.Model` (same inputs and outputs as
        `model`). `settings(model)` lists the chosen thresholds, which are
        saved with it; `model.effort_tuning` records the search: the
        tolerances chosen, each setting tried with its accuracy and drop
        bound, and each layer's smallest candidate error per knob.

    Example:
    >>> fast = zoo.effort.tune(model, (x_val, y_val), max_accuracy_drop=0.005)
    >>> zoo.effort.report(fast, (x_test, y_test))["reduction"]
    """
    if not (
        isinstance(max_accuracy_drop, (int, float)) and 0.0 <= max_accuracy_drop < 1.0
    ) or math.isnan(max_accuracy_drop):
        raise ValueError(
            f"`max_accuracy_drop` must be a fraction in [0, 1) (0.005 is half a point); got {max_accuracy_drop!r}."
        )
    _check_confidence(confidence)
    unknown = set(knobs) - set(KNOBS)
    if unknown or not knobs:
        raise ValueError(f"Unknown knobs {sorted(unknown)}; choose among {list(KNOBS)}.")
    images, labels = calibration_data
    fast = prepare(model, compute_ratio)
    if not any(_applies(layer, knob) for layer in effort_layers(fast) for knob in knobs):
        raise ValueError(
            f"No layer of {model.name!r} takes the knobs {list(knobs)}: SPET needs a Conv2D or Dense layer "
            "followed by ReLU, SDSS and SFMA a Conv2D layer."
        )
    inputs = layer_inputs(fast, images[:probe_size], batch_size)
    options = {}
    for layer in effort_layers(fast):
        layer.calibrate(inputs[layer.name])
        options[layer.name] = {
            knob: _measure_candidates(layer, knob, inputs[layer.name])
            for knob in knobs
            if _applies(layer, knob)
        }
    budget = _Budget(correct(fast, images, labels, batch_size), max_accuracy_drop, confidence)
    search = _ToleranceSearch(fast, options, (images, labels), budget, batch_size, verbose)
    tolerances = search.greedy(knobs)
    _apply(fast, options, tolerances)
    fast.effort_tuning = {
        "baseline_accuracy": float(np.mean(budget.baseline)),
        "max_accuracy_drop": max_accuracy_drop,
        "confidence": confidence,
        "tolerances": tolerances,
        "search": search.history,
        # Each layer's least error a candidate costs: the finest a tolerance can act on.
        "smallest_candidate_error": {
            layer: {
                knob: min(error for _, error, _ in measured)
                for knob, measured in candidates.items()
            }
            for layer, candidates in options.items()
        },
    }
    fast.predict_function = None
    return fast


def settings(model):
    """`{layer name: {knob: threshold}}` of the knobs that are on (with
    `"spet_fraction"` where SPET is)."""
    chosen = {}
    for layer in effort_layers(model):
        if layer.knobs:
            chosen[layer.name] = {knob: getattr(layer, ATTRIBUTES[knob]) for knob in layer.knobs}
            if "spet" in layer.knobs:
                chosen[layer.name]["spet_fraction"] = layer.spet_fraction
    return chosen


def layer_inputs(model, images, batch_size=250):
    """`{layer name: array}`: what each knob layer receives for `images`."""
    batches = list(effort_layer_inputs(model, images, batch_size))
    return {
        layer.name: np.concatenate([np.asarray(batch[i]) for batch in batches])
        for i, layer in enumerate(effort_layers(model))
    }


def calibrate(model, images, batch_size=250):
    """Calibrates every knob layer on its own inputs for `images`."""
    inputs = layer_inputs(model, images, batch_size)
    for layer in effort_layers(model):
        layer.calibrate(inputs[layer.name])


def accuracy(model, images, labels, batch_size=250):
    """Top-1 accuracy, computed eagerly so that changed thresholds apply."""
    return float(np.mean(correct(model, images, labels, batch_size)))


def correct(model, images, labels, batch_size=250):
    """Whether each image is classified right, computed eagerly."""
    hits = []
    for start in range(0, len(images), batch_size):
        outputs = model(tf.constant(images[start : start + batch_size], "float32"), training=False)
        hits.append(
            np.argmax(outputs, axis=-1) == np.asarray(labels[start : start + batch_size]).ravel()
        )
    return np.concatenate(hits)


def _check_confidence(confidence):
    if confidence is None:
        return
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1.0):
        raise ValueError(
            f"`confidence` must be None or a level in [0.5, 1) (0.9 is common); got {confidence!r}."
        )


class _Budget:
    """Whether a setting's accuracy drop is within the budget, at a
    confidence (`None`: the measured drop itself)."""

    def __init__(self, baseline, max_drop, confidence):
        self.baseline, self.max_drop = baseline, max_drop
        self.z = 0.0 if confidence is None else NormalDist().inv_cdf(confidence)

    def bound(self, hits):
        """The upper confidence bound of the drop from `baseline` to `hits`."""
        n = len(hits)
        lost = int(np.sum(self.baseline & ~hits))
        gained = int(np.sum(~self.baseline & hits))
        drop = (lost - gained) / n
        spread = math.sqrt(max(lost + gained - n * drop**2, 0.0)) / n
        return drop + self.z * spread

    def holds(self, hits):
        # The small slack absorbs float error at a drop exactly equal to the budget.
        return self.bound(hits) <= self.max_drop + 1e-12


def _applies(layer, knob):
    if knob == "spet":
        return layer.activation == "relu"
    return isinstance(layer, EffortConv2D) and min(layer.output_spatial) >= 2


def _measure_candidates(layer, knob, inputs):
    """`[(setting, relative error, mean operations)]` of each candidate of
    `knob` on `layer` alone, over `inputs`."""
    exact, _ = layer.measure(inputs)
    energy = float(tf.reduce_sum(tf.square(exact))) + 1e-12
    measured = []
    for setting in CANDIDATES[knob]:
        with _temporarily(layer, setting):
            outputs, counts = layer.measure(inputs)
        error = float(tf.reduce_sum(tf.square(outputs - exact))) / energy
        measured.append((setting, error, float(tf.reduce_mean(counts["total"]))))
    return measured


def _choices(layer, options, tolerances):
    """`{knob: (setting, operations)}`: the cheapest candidate of each knob
    of `layer` within its tolerance, where that saves work."""
    chosen = {}
    for knob, candidates in options[layer.name].items():
        if knob not in tolerances:
            continue
        within = [(ops, setting) for setting, error, ops in candidates if error <= tolerances[knob]]
        if within:
            ops, setting = min(within, key=lambda pair: pair[0])
            if ops < layer.dense_operations:
                chosen[knob] = (setting, ops)
    return chosen


def _apply(model, options, tolerances):
    """Sets each layer's knobs to their choices under `{knob: tolerance}`."""
    for layer in effort_layers(model):
        for attribute in ATTRIBUTES.values():
            setattr(layer, attribute, None)
        layer.spet_fraction = 0.5
        for setting, _ in _choices(layer, options, tolerances).values():
            for attribute, value in setting.items():
                setattr(layer, attribute, value)


def _estimated_saving(model, options, tolerances):
    """Operations per input the choices save, from each layer's probe
    (each knob counted alone): enough to rank knobs."""
    return sum(
        layer.dense_operations - ops
        for layer in effort_layers(model)
        for _, ops in _choices(layer, options, tolerances).values()
    )


class _ToleranceSearch:
    """Binary searches of the loosest tolerance per knob within the budget."""

    def __init__(self, model, options, data, budget, batch_size, verbose):
        self.model, self.options, self.data = model, options, data
        self.budget, self.batch_size, self.verbose = budget, batch_size, verbose
        self.history = []

    def loosest(self, fixed, knob, highest=None):
        """The loosest tolerance of `knob` (or `None`) with `fixed` on."""
        best, low, high = None, 0, len(ERROR_LEVELS) - 1 if highest is None else highest
        while low <= high:
            middle = (low + high) // 2
            tolerances = {**fixed, knob: ERROR_LEVELS[middle]}
            _apply(self.model, self.options, tolerances)
            hits = correct(self.model, *self.data, self.batch_size)
            bound = self.budget.bound(hits)
            self.history.append(
                {"tolerances": tolerances, "accuracy": float(np.mean(hits)), "drop_bound": bound}
            )
            if self.verbose:
                print(
                    f"tolerances {tolerances}: accuracy {np.mean(hits):.4f}, "
                    f"drop bound {bound:.4f} (budget {self.budget.max_drop:.4f})"
                )
            if self.budget.holds(hits):
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return best

    def greedy(self, knobs):
        """`{knob: tolerance}`: each knob alone, then stacked from the best."""
        alone = {knob: self.loosest({}, knob) for knob in knobs}
        usable = [knob for knob in knobs if alone[knob] is not None]
        usable.sort(
            key=lambda k: -_estimated_saving(self.model, self.options, {k: ERROR_LEVELS[alone[k]]})
        )
        tolerances = {}
        for knob in usable:
            level = (
                alone[knob]
                if not tolerances
                else self.loosest(tolerances, knob, highest=alone[knob])
            )
            if level is not None:
                tolerances[knob] = ERROR_LEVELS[level]
        return tolerances


class _temporarily:
    """Sets layer attributes for a `with` block, then restores them."""

    def __init__(self, layer, setting):
        self.layer, self.setting = layer, setting

    def __enter__(self):
        self.saved = {attribute: getattr(self.layer, attribute) for attribute in self.setting}
        for attribute, value in self.setting.items():
            setattr(self.layer, attribute, value)

    def __exit__(self, *exc):
        for attribute, value in self.saved.items():
            setattr(self.layer, attribute, value)

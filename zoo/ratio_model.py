"""The common base of every zoo model: a `keras.Model` that takes a compute ratio."""

import inspect
import warnings

import keras
import numpy as np
import tensorflow as tf

from zoo.legacy_weights import without_legacy_plan
from zoo.plan_train_step import PlanTrainStep
from zoo.ratio import check_operating_points, check_ratio
from zoo.training_plan import TrainingPlan, replica_variable
from zoo.training_state import build_evaluation_state, build_training_state

FIT_SIGNATURE = inspect.signature(keras.Model.fit)
EVALUATE_SIGNATURE = inspect.signature(keras.Model.evaluate)
DEFAULT_OPERATING_POINTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Progress of training callbacks (current task, best value, sampler step...)
# lives in this many floats saved with the model; see `callbacks/`.
TRAINING_STATE_SIZE = 128


class RatioModel(PlanTrainStep, keras.Model):
    """A classifier of images that runs at a compute ratio in (0, 1].

    The base of `zoo.DynamicModel` (uniform width) and of LC-Net (gates
    that choose per input): it parses the inputs, holds the training plan
    and the callbacks' training state, trains by the plan
    (`zoo.plan_train_step.PlanTrainStep`), exports, and answers `cost`.

    Inputs are raw images (0 to 255), alone (ratio 1.0) or in a dict with a
    per-sample `compute_ratio` of shape `(batch,)`:

    ```python
    logits = model({"images": x, "compute_ratio": np.full((len(x),), 0.5, "float32")})
    logits = model(x)                      # compute_ratio 1.0
    logits = model(x, compute_ratio=0.5)   # one ratio for the whole batch
    ```

    **Training plan.** `fit` trains at a plan (`zoo.TrainingPlan`, in
    `model.plan`): ratios with loss weights and an optional in-place
    distillation weight. Without a callback the plan is ratio 1.0 alone.

    **Training state.** `training_state` is a vector of floats saved with
    the weights where training callbacks keep their progress, so that
    `BackupAndRestore` resumes them where they were.

    **No XLA.** Widths are data (a tensor), so every new width is a new
    shape; XLA would compile the step again for each one. These models
    therefore always compile with `jit_compile=False`.

    Subclasses implement `call`, `plan_prediction(x, index)` (the training
    prediction at plan entry `index` and a loss penalty) and `cost`.

    Args:
        input_shape: shape of one image, e.g. `(32, 32, 3)`.
        num_classes: number of classes (outputs are logits).
        operating_points: the ratios the model is trained, calibrated and
            evaluated at.
        **kwargs: standard `keras.Model` arguments (`name`).

    Example:
    >>> model = zoo.build("resnet20")          # a RatioModel
    >>> model.set_training_plan([1.0, 0.5], distillation=1.0)
    >>> model.cost(0.5)["flops"]
    """

    # Whether `cost` needs images: the cost of a gated model depends on them.
    cost_depends_on_data = False
    # Whether outputs are probabilities (a softmax) rather than logits; in-place
    # distillation follows it.
    outputs_probabilities = False

    def __init__(
        self,
        input_shape,
        num_classes,
        operating_points=DEFAULT_OPERATING_POINTS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(input_shape)
        self.num_classes = at_least_one(num_classes, "num_classes")
        self.operating_points = check_operating_points(operating_points)
        # Not weights: a checkpoint must never bring back a callback's plan,
        # and the version only marks cached sliced kernels stale.
        object.__setattr__(
            self, "plan", TrainingPlan(on_structure_change=self.training_step_changed)
        )
        object.__setattr__(self, "_weights_version", replica_variable("weights_version", 0))
        self.training_state = self.add_weight(
            name="training_state",
            shape=(TRAINING_STATE_SIZE,),
            initializer="zeros",
            trainable=False,
        )

    # -- training plan ---------------------------------------------------------

    def set_training_plan(self, ratios, weights=None, distillation=0.0, layer_ratios=None):
        """Sets the ratios the next training steps train at.

        Args:
            ratios: up to `zoo.training_plan.MAX_PLAN_SIZE` ratios in (0, 1].
                The first one is the teacher of in-place distillation, so
                put the widest first when distilling; `fit`'s metrics are
                those of the first one.
            weights: loss weight of each ratio, finite and >= 0 (default: 1 each).
            distillation: in [0, 1]: every ratio after the first minimises
                `(1 - d) * task_loss + d * cross_entropy(teacher, student)`.
            layer_ratios: non-uniform sub-nets (chain models): one vector of
                ratios per width group for each entry of `ratios`, which
                they replace.
        """
        self.plan.set(ratios, weights, distillation, layer_ratios)

    @property
    def training_plan(self):
        """The current plan as `{"ratios", "weights", "distillation"}`."""
        return self.plan.as_dict()

    def plan_prediction(self, x, index):
        """The training prediction at plan entry `index` and a penalty added
        to its loss (already scaled for replicas)."""
        raise NotImplementedError

    # -- cost --------------------------------------------------------------------

    def cost(self, compute_ratio=1.0, data=None, **kwargs):
        """Multiply-adds, parameters and dot products at `compute_ratio`
        (see `zoo.cost`); `data` for a model whose cost depends on its input."""
        raise NotImplementedError

    # -- inputs ------------------------------------------------------------------

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict):
            check_input_keys(inputs)
            if "compute_ratio" in inputs:
                inputs = dict(inputs, compute_ratio=ratio_array(inputs["compute_ratio"]))
        ratio = kwargs.get("compute_ratio")
        if ratio is not None and not isinstance(ratio, (int, float)):
            kwargs["compute_ratio"] = ratio_array(ratio)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(per_image_ratios(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """Keras's `evaluate`; the compiled metrics are created before the
        test step is first traced, so that it traces once
        (`zoo.training_state.build_evaluation_state`)."""
        x = per_image_ratios(x)
        arguments = EVALUATE_SIGNATURE.bind_partial(self, x, *args, **kwargs).arguments
        build_evaluation_state(self, x, arguments.get("y"))
        return super().evaluate(x, *args, **kwargs)

    def _split_inputs(self, inputs, compute_ratio):
        if isinstance(inputs, dict):
            check_input_keys(inputs)
            if compute_ratio is not None and "compute_ratio" in inputs:
                raise ValueError(
                    "`compute_ratio` is given twice: in the inputs and as an argument."
                )
            compute_ratio = inputs.get("compute_ratio", compute_ratio)
            inputs = inputs["images"]
        images = self._check_images(inputs)
        if compute_ratio is None:
            return images, None
        return images, self._ratio_tensor(compute_ratio, images)

    def _check_images(self, images):
        images = tf.convert_to_tensor(images)
        if images.dtype != self.compute_dtype:
            images = tf.cast(images, self.compute_dtype)
        shape = tuple(images.shape[1:])
        if images.shape.rank != len(self.image_shape) + 1 or any(
            d is not None and d != e for d, e in zip(shape, self.image_shape)
        ):
            raise ValueError(
                f"{self.name} expects images of shape (batch, "
                f"{', '.join(map(str, self.image_shape))}); got {tuple(images.shape)}."
            )
        if None in shape:
            # A function traced for any shape: checked when it runs.
            check = tf.debugging.assert_equal(
                tf.shape(images)[1:],
                tf.constant(self.image_shape, "int32"),
                message=f"{self.name} expects images of shape (batch, "
                f"{', '.join(map(str, self.image_shape))}); got another shape",
            )
            with tf.control_dependencies([check]):
                images = tf.identity(images)
        return images

    def _ratio_tensor(self, compute_ratio, images):
        if isinstance(compute_ratio, (int, float)):
            check_ratio(compute_ratio)
        ratio = tf.cast(tf.convert_to_tensor(compute_ratio), "float32")
        if ratio.shape.rank == 2 and ratio.shape[-1] == 1:
            ratio = tf.squeeze(ratio, -1)
        if ratio.shape.rank not in (0, 1):
            raise ValueError(
                "`compute_ratio` must have shape (batch,) (one ratio per "
                f"sample) or be a scalar; got shape {tuple(ratio.shape)}."
            )
        if ratio.shape.rank == 1:
            batch, count = images.shape[0], ratio.shape[0]
            if batch is not None and count is not None and batch != count:
                raise ValueError(
                    f"`compute_ratio` has {count} values for a batch of {batch} "
                    "images: give one ratio per sample."
                )
            if batch is None or count is None:
                check = tf.debugging.assert_equal(
                    tf.shape(ratio)[0],
                    tf.shape(images)[0],
                    message="`compute_ratio` must have one value per image of the batch",
                )
                with tf.control_dependencies([check]):
                    ratio = tf.identity(ratio)
        return ratio

    # -- export ------------------------------------------------------------------

    def serving_signature(self):
        """The input of an exported model: `{"images": (batch, *image_shape),
        "compute_ratio": (batch,)}`, both float32, a ratio per image; the
        exported signature's inputs carry these names."""
        return {
            "images": tf.TensorSpec((None, *self.image_shape), "float32", name="images"),
            "compute_ratio": tf.TensorSpec((None,), "float32", name="compute_ratio"),
        }

    def export(
        self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs
    ):
        """`keras.Model.export`, by default serving images and a ratio per image.

        Without `input_signature` the exported endpoint `serve` takes the
        dict of `serving_signature()`: the whole model, one function for
        every ratio. For one fixed ratio, export
        `zoo.extract_subnet(model, ratio)` instead: smaller and without any
        width arithmetic.

        Example:
        >>> model.export("resnet20_dynamic")
        >>> served = tf.saved_model.load("resnet20_dynamic")
        >>> served.serve({"images": x, "compute_ratio": tf.fill([len(x)], 0.5)})
        """
        if input_signature is None:
            input_signature = [self.serving_signature()]
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    @property
    def jit_compile(self):
        return False

    @jit_compile.setter
    def jit_compile(self, value):
        if value is True:
            warnings.warn(
                "Dynamic-width models run without XLA: each new width is a new "
                "shape and XLA would recompile the step for every one. "
                "Proceeding with `jit_compile=False`.",
                stacklevel=2,
            )

    @property
    def training_methods(self):
        """The current `fit`'s training callbacks and their settings,
        `{name: {setting: value}}` (and `"fit"`: its batch size and
        epochs), filled as training begins; `OperatingPointLogger` records
        them as hyperparameters."""
        methods = self.__dict__.get("_training_methods")
        if methods is None:
            methods = {}
            # Plain attribute: a description of the run, not model state.
            object.__setattr__(self, "_training_methods", methods)
        return methods

    # -- weights -------------------------------------------------------------------

    def weights_changed(self):
        """Marks cached sliced kernels stale.

        `fit`, `set_weights`, `load_weights` and `keras.saving.load_model`
        call it; a custom training loop or a direct `assign` to a kernel
        must call it too.
        """
        self._weights_version.assign_add(1)

    def fit(self, *args, **kwargs):
        """Keras's `fit`; a callback with `resume_epoch()` (a backup such as
        `callbacks.ShardedBackupAndRestore`) sets where it starts.

        The optimizer's state and the compiled metrics are created before
        the training step is first traced, so that it traces once
        (`zoo.training_state.build_training_state`)."""
        arguments = FIT_SIGNATURE.bind_partial(self, *args, **kwargs).arguments
        self.training_methods.clear()
        self.training_methods["fit"] = {
            key: arguments[key] for key in ("batch_size", "epochs") if arguments.get(key)
        }
        if "initial_epoch" not in arguments:
            resumed = [
                callback.resume_epoch()
                for callback in arguments.get("callbacks") or ()
                if callable(getattr(callback, "resume_epoch", None))
            ]
            if resumed:
                kwargs["initial_epoch"] = max(resumed)
        if not self._train_functions():
            # Before the step's first trace since `compile`.
            build_training_state(self, arguments.get("x"), arguments.get("y"))
        try:
            return super().fit(*args, **kwargs)
        finally:
            # An optimizer with EMA swaps weights in at the end of `fit`.
            self.weights_changed()

    def set_weights(self, weights):
        super().set_weights(weights)
        self.weights_changed()

    def load_weights(self, *args, **kwargs):
        result = super().load_weights(*args, **kwargs)
        self.weights_changed()
        return result

    def load_own_variables(self, store):
        # `keras.saving.load_model` assigns the weights through this hook
        # (and the layers' own), not through `load_weights`.
        super().load_own_variables(without_legacy_plan(self, store))
        self.weights_changed()

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "input_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "operating_points": list(self.operating_points),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def at_least_one(value, argument):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"`{argument}` must be an integer >= 1; got {value!r}.")
    if int(value) != value or value < 1:
        raise ValueError(f"`{argument}` must be an integer >= 1; got {value}.")
    return int(value)


def check_image_shape(input_shape):
    """`input_shape` as a tuple of positive integers, or a clear error."""
    shape = tuple(input_shape)
    if not shape or any(
        isinstance(d, (bool, np.bool_)) or int(d) != d or int(d) < 1 for d in shape
    ):
        raise ValueError(
            f"`input_shape` is the shape of one image, positive integers such as "
            f"(32, 32, 3); got {input_shape!r}."
        )
    return tuple(int(d) for d in shape)


def check_input_keys(inputs):
    """Refuses a dict input other than `{"images": ..., "compute_ratio": ...}`."""
    unknown = set(inputs) - {"images", "compute_ratio"}
    if "images" not in inputs or unknown:
        raise ValueError(
            "A dict input takes the keys 'images' and 'compute_ratio' (optional); "
            f"got {sorted(inputs)}."
        )


def ratio_array(compute_ratio):
    """`compute_ratio` given as a number, list or NumPy value, as a float32
    array Keras accepts as an input, or a clear error; tensors pass as they are."""
    if isinstance(compute_ratio, (str, bytes)):
        values = None
    elif isinstance(compute_ratio, (int, float, list, tuple, np.ndarray, np.generic)):
        try:
            values = np.asarray(compute_ratio, dtype="float32")
        except (TypeError, ValueError):
            values = None
    else:
        return compute_ratio
    if values is None:
        raise ValueError(
            "`compute_ratio` must be a number in (0, 1] or an array of them, one per "
            f"image; got {type(compute_ratio).__name__} {compute_ratio!r:.60}."
        )
    check_ratio(values)
    return values


def per_image_ratios(x):
    """`predict` and `evaluate` data with one ratio per image: a single
    ratio is repeated for every image, a wrong count refused."""
    if not (isinstance(x, dict) and "compute_ratio" in x and "images" in x):
        return x
    check_input_keys(x)
    images, ratio = x["images"], ratio_array(x["compute_ratio"])
    count = len(images) if hasattr(images, "__len__") else None
    if count is None or not isinstance(ratio, np.ndarray):
        return x
    if ratio.ndim == 0:
        ratio = np.full((count,), ratio, "float32")
    elif ratio.ndim == 2 and ratio.shape[1] == 1:
        ratio = ratio[:, 0]
    if ratio.ndim != 1 or len(ratio) != count:
        raise ValueError(
            f"`compute_ratio` has shape {ratio.shape} for {count} images: give one "
            "ratio per image, shape (images,), or a single number."
        )
    return dict(x, compute_ratio=ratio)

"""IDP profiles: coefficients `gamma_i` that multiply input channel `i`.

A dynamic layer's effective weight is `W_eff[..., i, o] = gamma_i * W[..., i, o]`
(IDP, McDanel et al. 2017). Profiles are non-increasing, so the channels kept
at a small compute ratio are the ones that carry the most weight.

Use a profile by name (`profile="linear"`) or as an object, which also sets
its parameters and whether it trains:

```python
zoo.build("mlp", profile="harmonic")
zoo.build("mlp", profile=zoo.profiles.Profile("linear", trainable=True))
```
"""

import keras
import numpy as np
from keras import ops


def uniform(n):
    """All-one profile: `gamma_i = 1`."""
    return np.ones(n, "float32")


def linear(n):
    """Linear profile: `gamma_i = 1 - i / n`."""
    return (1.0 - np.arange(n) / n).astype("float32")


def harmonic(n):
    """Harmonic profile: `gamma_i = 1 / (i + 1)`."""
    return (1.0 / (np.arange(n) + 1.0)).astype("float32")


def half_exp(n):
    """`gamma_i = 1` for `i < n / 2`, then `exp(-j)` for `j = 0, 1, ...`."""
    half = (n + 1) // 2
    tail = np.exp(-np.arange(n - half, dtype="float64"))
    return np.concatenate([np.ones(half), tail]).astype("float32")


def exp(n, rate=None):
    """Exponential profile `gamma_i = exp(-rate * i)`.

    The IDP code does not fix `rate` for every width; by default it is `3 / n`,
    so the last channel gets `exp(-3)` (about 0.05) whatever the width.
    """
    rate = 3.0 / n if rate is None else rate
    return np.exp(-rate * np.arange(n)).astype("float32")


def steps(n, levels=(1.0, 0.5, 0.25)):
    """Step profile: `levels` over equal consecutive parts of the channels."""
    parts = np.array_split(np.arange(n), len(levels))
    gamma = np.empty(n, "float32")
    for part, level in zip(parts, levels):
        gamma[part] = level
    return gamma


PROFILES = {
    "uniform": uniform,
    "linear": linear,
    "harmonic": harmonic,
    "half_exp": half_exp,
    "exp": exp,
    "steps": steps,
}
ALIASES = {"all_one": "uniform", "all-one": "uniform", "half-exp": "half_exp"}


def list_profiles():
    """Names accepted by `Profile` and the `profile=` arguments."""
    return sorted(PROFILES)


@keras.saving.register_keras_serializable(package="zoo")
class CumulativeMinimum(keras.constraints.Constraint):
    """Projects a vector onto non-increasing ones: `g_i <- min(g_0..g_i)`.

    This is TESLA's projection for its trainable profile; as a Keras weight
    constraint it runs after every optimizer update. It takes no arguments.

    Example:
    >>> CumulativeMinimum()(np.array([1.0, 0.5, 0.7, 0.2]))  # [1, .5, .5, .2]
    """

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        n = ops.shape(w)[0]
        # Entry (i, j) is w_j for j <= i and +inf above the diagonal, so the
        # row minimum is the prefix minimum; O(n^2) but one vectorized op.
        above = ops.triu(ops.ones((n, n), dtype=w.dtype), k=1)
        return ops.min(ops.expand_dims(w, 0) + above * 1e9, axis=1)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="zoo")
class Profile:
    """A named IDP profile, fixed or trainable.

    Args:
        name: one of `list_profiles()`.
        trainable: if `True`, gamma is a trainable weight initialised from the
            named profile and kept non-increasing by `CumulativeMinimum`
            (TESLA's trainable profile).
        **params: parameters of the named profile (`rate` for `"exp"`,
            `levels` for `"steps"`).

    Example:
    >>> Profile("linear")(4)
    array([1.  , 0.75, 0.5 , 0.25], dtype=float32)
    """

    def __init__(self, name="uniform", trainable=False, **params):
        name = ALIASES.get(name, name)
        if name not in PROFILES:
            raise ValueError(f"Unknown profile {name!r}. Known profiles: {list_profiles()}.")
        self.name = name
        self.trainable = bool(trainable)
        self.params = params

    def __call__(self, n):
        return PROFILES[self.name](n, **self.params)

    @property
    def is_identity(self):
        """True when gamma is all ones and fixed, so it can be skipped."""
        return self.name == "uniform" and not self.trainable

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self.params}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"Profile({self.name!r}, trainable={self.trainable})"


def get(profile):
    """Turns a name, a config dict, a `Profile` or `None` into a `Profile`."""
    if profile is None:
        return Profile("uniform")
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str):
        return Profile(profile)
    if isinstance(profile, dict):
        return Profile.from_config(profile)
    raise ValueError(
        f"`profile` must be a name from {list_profiles()} or a "
        f"`zoo.profiles.Profile`; got {profile!r}."
    )

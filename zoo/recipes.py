"""Training recipes: how each preset is trained, as callbacks for `model.fit`.

A recipe is a dict saved in the preset registry, e.g.

```python
{"method": "r_tesla", "epochs": 60, "batch_size": 128, "learning_rate": 1e-3,
 "ratios": [1.0, 0.9, ..., 0.1], "round": 200, "patience": 3}
```

Methods: `"idp"` (full-width training with the model's profile),
`"idp_multi_profile"` (`ProfileScheduler` stages over `boundaries`),
`"tesla"` / `"r_tesla"` (`TaskwiseEarlyStopping`, `"atp": true` for the
trainable profile), `"single_path"` and `"sandwich"` (`SubnetSampler`).
"""

import os

import keras

METHODS = ("idp", "idp_multi_profile", "tesla", "r_tesla", "single_path", "sandwich")


def recipe_callbacks(recipe, validation_data, seed=0):
    """The callbacks that implement `recipe["method"]`."""
    import callbacks  # the project's callback suite

    method = recipe["method"]
    if method not in METHODS:
        raise ValueError(f"Unknown recipe method {method!r}; known: {list(METHODS)}.")
    ratios = recipe.get("ratios")
    if method == "idp":
        return []
    if method == "idp_multi_profile":
        bounds = [0.0] + list(recipe["boundaries"]) + [1.0]
        epochs = recipe["epochs"] // (len(bounds) - 1)
        stages = [((low, high), epochs) for low, high in zip(bounds, bounds[1:])]
        return [callbacks.ProfileScheduler(stages=stages)]
    if method in ("tesla", "r_tesla"):
        return [
            callbacks.TaskwiseEarlyStopping(
                ratios,
                validation_data=validation_data,
                patience=recipe.get("patience", 3),
                alpha=recipe.get("alpha", 0.5),
                order="random" if method == "r_tesla" else "descending",
                steps_per_round=recipe.get("round"),
                alternate_profile=recipe.get("atp", False),
                seed=seed,
            )
        ]
    if method == "single_path":
        return [callbacks.SubnetSampler(ratios=ratios, per=recipe.get("per", "batch"), seed=seed)]
    return [
        callbacks.SubnetSampler(
            ratio_range=tuple(recipe.get("ratio_range", (0.1, 1.0))),
            sandwich=True,
            num_ratios=recipe.get("num_ratios", 4),
            distillation=recipe.get("distillation", 1.0),
            seed=seed,
        )
    ]


def train_recipe(model, recipe, train_data, validation_data, checkpoint_dir=None, seed=0, verbose=1):
    """Compiles and fits `model` by `recipe`; resumable through `checkpoint_dir`.

    With `checkpoint_dir`, `keras.callbacks.BackupAndRestore` saves the
    model (weights, optimizer and the callbacks' progress) every epoch, so a
    run interrupted at any point resumes where it stopped.
    """
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(recipe.get("learning_rate", 1e-3)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    extra = []
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
        extra.append(keras.callbacks.BackupAndRestore(checkpoint_dir))
    x, y = train_data
    model.fit(
        x,
        y,
        batch_size=recipe.get("batch_size", 128),
        epochs=recipe["epochs"],
        callbacks=recipe_callbacks(recipe, validation_data, seed) + extra,
        verbose=verbose,
    )
    return model

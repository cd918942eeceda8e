"""The standard CIFAR/MNIST augmentation: a random crop after 4-pixel padding."""

import tensorflow as tf


def augment_image(image, flip, seed):
    """A random crop of `image` padded by 4 pixels, randomly flipped if `flip`.

    Args:
        image: `(height, width, channels)` tensor.
        flip: also flip left-right with probability 1/2.
        seed: shape-`(2,)` int tensor; the same seed gives the same crop
            and flip (stateless random ops).

    Returns:
        A float32 image of the input's shape.
    """
    image = tf.cast(image, "float32")
    height, width = image.shape[0], image.shape[1]
    image = tf.image.pad_to_bounding_box(image, 4, 4, height + 8, width + 8)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    size = (height, width, image.shape[-1])
    image = tf.image.stateless_random_crop(image, size, seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def augmented(dataset, flip, seed=None):
    """`dataset` of `(image, label)` with each image augmented anew every epoch.

    Every element takes its own seed from `tf.data.Dataset.random`, drawn
    again at each iteration: a seeded random op inside `Dataset.map` would
    instead repeat the same crop of each image every epoch.

    Args:
        dataset: unbatched `tf.data.Dataset` of `(image, label)`.
        flip: also flip images left-right at random (not for digits).
        seed: makes the augmentation reproducible (default: Keras's global
            seed, if set).

    Example:
    >>> train = augmented(tf.data.Dataset.from_tensor_slices((x, y)), flip=True, seed=0)
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds).map(
        lambda example, pair: (augment_image(example[0], flip, pair), example[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )

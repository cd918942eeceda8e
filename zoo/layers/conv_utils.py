"""Shape arithmetic shared by the dynamic convolutions."""

import math


def conv_output_length(length, kernel_size, stride, padding):
    """Output length of a convolution or pooling along one axis."""
    if padding == "same":
        return math.ceil(length / stride)
    return (length - kernel_size) // stride + 1


def conv_output_spatial(spatial, kernel_size, strides, padding):
    return tuple(
        conv_output_length(n, k, s, padding) for n, k, s in zip(spatial, kernel_size, strides)
    )


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_arguments(kernel_size, strides, padding):
    """`(kernel_size, strides, padding)` of a convolution, checked: two pairs
    and `"same"` or `"valid"`."""
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'; got {padding!r}.")
    return pair(kernel_size), pair(strides), mode


def conv_output_shape(input_shape, kernel_size, strides, padding, channels):
    """`(batch, height, width, channels)` out of a channels-last convolution."""
    spatial = conv_output_spatial(input_shape[1:3], kernel_size, strides, padding)
    return (input_shape[0],) + spatial + (channels,)


def same_padding(length, kernel_size, stride):
    """`(before, after)` padding that `"same"` adds along one axis."""
    total = max(
        (conv_output_length(length, kernel_size, stride, "same") - 1) * stride
        + kernel_size
        - length,
        0,
    )
    return total // 2, total - total // 2

"""Closed forms from the assignments (seed 000 Q1, seed 002 Q3), used to build and check models."""


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's formula).

    floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1; seed 000 writes the same
    formula once without the final "- 1" inside the floor, which is wrong for stride > 1.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a transposed convolution along one axis (PyTorch's formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1

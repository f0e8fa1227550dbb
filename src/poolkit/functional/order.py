"""Order statistics: max, min (median, top-k and range join them here).

All functions are dimension-generic: ``x`` is ``(N, C, *spatial)`` with 1 to 3
spatial dims. ``padding_mode="zeros"`` pads with the neutral element (``-inf``
for max), as torch does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    check_input,
    check_padding_mode,
    crop,
    native,
    pad,
    resolve,
    resolve_output_size,
)

__all__ = ["max_pool", "min_pool"]


def max_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Maximum over each window, in 1-D, 2-D or 3-D.

    Equal to ``torch.nn.functional.max_pool{1,2,3}d`` wherever torch has the op;
    adds ``"same"`` padding and the padding modes reflect, replicate, circular.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size (int or one per dim); required unless ``output_size``.
        stride: step between windows; default ``kernel_size``.
        padding: ints (at most half the dilated kernel), ``"same"`` or ``"valid"``.
        dilation: spacing between window elements.
        ceil_mode: use ceil instead of floor for the output size.
        padding_mode: ``"zeros"`` (pad with ``-inf``), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global max); overrides the window arguments.
        return_indices: also return the flat argmax indices (``"zeros"`` mode, integer padding).

    Shape:
        ``L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1``
        (ceil with ``ceil_mode``), per spatial dim.

    Example:
        >>> x = torch.arange(8.0).view(1, 1, 8)
        >>> max_pool(x, 2)
        tensor([[[1., 3., 5., 7.]]])
        >>> max_pool(x, output_size=1)
        tensor([[[7.]]])
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    if output_size is not None:
        return native("adaptive_max_pool", d)(x, resolve_output_size(x, output_size), return_indices)
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
    f = native("max_pool", d)
    if padding_mode == "zeros" and win.symmetric:
        p = [a for a, _ in win.pad]
        return f(x, win.kernel, win.stride, p, win.dilation, ceil_mode, return_indices)
    if return_indices:
        raise ValueError("return_indices=True needs padding_mode='zeros' and integer (symmetric) padding")
    xp = pad(x, win, padding_mode, value=-torch.inf)
    return crop(f(xp, win.kernel, win.stride, 0, win.dilation, ceil_mode), win.out)


def min_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Minimum over each window; ``-max_pool(-x)`` with the same arguments.

    ``padding_mode="zeros"`` pads with ``+inf`` (the neutral element).

    Example:
        >>> min_pool(torch.arange(8.0).view(1, 1, 8), 2)
        tensor([[[0., 2., 4., 6.]]])
    """
    out = max_pool(
        -x, kernel_size, stride, padding, dilation, ceil_mode,
        padding_mode=padding_mode, output_size=output_size, return_indices=return_indices,
    )
    if isinstance(out, tuple):
        return -out[0], out[1]
    return -out

"""Order statistics: max, min, median, top-k mean and range.

All functions are dimension-generic: ``x`` is ``(N, C, *spatial)`` with 1 to 3
spatial dims. ``padding_mode="zeros"`` pads with the neutral element (``-inf``
for max), as torch does; median and top-k leave padded cells out of the window.
Each function states its reference formula in plain torch ops: max, min and
range are native max poolings; median and top-k, which have no native
reduction, sort strided views of the windows. Fast kernels (channels-last
routing, a sorting network, analytic backwards) are in ``_fast/order.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _fast
from ._fast import order as _order_kernels  # noqa: F401  (registers the kernels)
from ._fast.layout import as_layout
from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    check_input,
    check_padding_mode,
    crop,
    native,
    pad,
    resolve,
    resolve_output_size,
    window_source,
)

__all__ = ["max_pool", "median_pool", "min_pool", "range_pool", "topk_pool", "window_max"]


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
    return window_max(x, win, padding_mode, return_indices)


def window_max(
    x: Tensor, win: Window, padding_mode: str = "zeros", return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Maximum of ``x`` over each window of a resolved :class:`Window`: one native max pooling.

    ``"zeros"`` with symmetric padding uses torch's implicit ``-inf`` padding; other
    modes (and ``"same"``'s uneven split) pad explicitly first.
    """
    if return_indices and not (padding_mode == "zeros" and win.symmetric):
        raise ValueError("return_indices=True needs padding_mode='zeros' and integer (symmetric) padding")
    y = _fast.dispatch("max_pool", x, win, padding_mode, return_indices)
    if y is not None:
        return y
    f = native("max_pool", win.dims)
    if padding_mode == "zeros" and win.symmetric:
        p = [a for a, _ in win.pad]
        return f(x, win.kernel, win.stride, p, win.dilation, win.ceil_mode, return_indices)
    xp = pad(x, win, padding_mode, value=-torch.inf)
    return crop(f(xp, win.kernel, win.stride, 0, win.dilation, win.ceil_mode), win.out)


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
    """Minimum over each window: ``-max_pool(-x)`` with the same arguments.

    ``padding_mode="zeros"`` pads with ``+inf`` (the neutral element); the indices
    (``return_indices``) are those of the minimum, ties to the first in window order.

    Args:
        x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size, return_indices:
            as :func:`max_pool`.

    Returns:
        The minima ``(N, C, *out)`` (and the indices with ``return_indices``), in the layout torch's
        max pooling gives the same input.

    Example:
        >>> min_pool(torch.arange(8.0).view(1, 1, 8), 2)
        tensor([[[0., 2., 4., 6.]]])
    """
    check_input(x)
    check_padding_mode(padding_mode)
    if output_size is None and kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    y = _fast.dispatch("min_pool", x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size,
                       return_indices)
    if y is not None:
        return y
    out = max_pool(-x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode=padding_mode,
                   output_size=output_size, return_indices=return_indices)
    return (-out[0], out[1]) if isinstance(out, tuple) else -out


def _sorted(w: Tensor, valid: Tensor | None, descending: bool) -> Tensor:
    """Each window's cells (last dim) sorted, stably; cells outside the input after the input's own cells."""
    srt, order = w.sort(dim=-1, descending=descending, stable=True)
    if valid is None:
        return srt
    # a fill cell (+-inf) may equal an input cell: a second stable sort by "outside" puts the input's first
    outside = (~valid).expand_as(w).gather(-1, order).to(torch.uint8)
    return srt.gather(-1, outside.sort(dim=-1, stable=True).indices)


def median_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Median of each window, in 1-D, 2-D or 3-D.

    Windows with an even number of cells give the lower median (torch's rule),
    so every output is one of the window's inputs and the gradient reaches
    that one cell; among cells equal to the median it is the one ``torch.median``
    and a stable sort pick. ``padding_mode="zeros"`` pads with nothing: padded
    cells and ceil-mode overhang are left out of the window, as are the missing
    cells of shorter adaptive windows. A NaN input makes its windows NaN, and
    those windows pass no gradient.

    Formula: a stable sort of each window's cells (cells outside the input
    last), the cell at ``(n - 1) // 2``. A fast kernel serves windows of up to
    64 cells (3×3, 5×5, 3×3×3, ...) with a min/max sorting network on strided
    views of the input, and a backward that compares the same views with the output.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size (int or one per dim); required unless ``output_size``.
        stride: step between windows; default ``kernel_size``.
        padding: ints (at most half the dilated kernel), ``"same"`` or ``"valid"``.
        dilation: spacing between window elements.
        ceil_mode: use ceil instead of floor for the output size.
        padding_mode: ``"zeros"`` (padding left out), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form with torch's adaptive windows (``1`` = global median).

    Shape:
        ``L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1``
        (ceil with ``ceil_mode``), per spatial dim; ``output_size`` when given.

    Example:
        >>> median_pool(torch.tensor([[[3.0, 1.0, 2.0, 9.0, 7.0, 8.0]]]), 3)
        tensor([[[2., 8.]]])
        >>> median_pool(torch.tensor([[[4.0, 1.0, 3.0, 2.0]]]), output_size=1)
        tensor([[[2.]]])
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    # cells outside the input sort last (+inf), so a window with n real cells has its median at (n - 1) // 2
    src, views, valid, count = window_source(x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode,
                                             output_size, torch.inf)
    y = _fast.dispatch("median", src, views, valid, count, d)
    if y is None:
        w = views.view(src).flatten(-d)
        srt = _sorted(w, None if valid is None else valid.flatten(-d), descending=False)
        if count is None:
            y = srt[..., (w.shape[-1] - 1) // 2]
        else:
            y = srt.gather(-1, ((count - 1) // 2).long().unsqueeze(-1).expand(*srt.shape[:-1], 1)).squeeze(-1)
        y = torch.where(w.isnan().any(-1), torch.nan, y)  # NaN windows: NaN, and no gradient
    return as_layout(y, x)  # the input's layout, as torch's poolings keep it


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return k


def topk_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    k: int = 2,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Mean of the ``k`` largest values of each window, in 1-D, 2-D or 3-D.

    ``k=1`` is max pooling; ``k`` at least the window size is the mean over the
    window's real cells (``avg_pool`` with ``count_include_pad=False``). With
    ``padding_mode="zeros"`` padded cells and ceil-mode overhang are left out
    of the window, so a window with fewer than ``k`` real cells averages all of them.
    The gradient reaches the averaged cells; where several cells equal the
    smallest averaged value, the first ones in window order count (a stable
    sort's pick). A NaN input makes its windows NaN, and those windows pass no gradient.

    Formula: a stable descending sort of each window's cells (cells outside the
    input last), the mean of the first ``min(k, n)``. A fast kernel serves windows
    of up to 64 cells with a min/max sorting network on strided views.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the dilated kernel), ``"same"`` or ``"valid"``.
        dilation: spacing between window elements.
        ceil_mode: ceil instead of floor for the output size.
        k: how many of the largest values to average, ``>= 1``.
        padding_mode: ``"zeros"`` (padding left out), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global top-k mean).

    Shape:
        As :func:`median_pool`.

    Example:
        >>> topk_pool(torch.tensor([[[3.0, 1.0, 2.0, 9.0, 7.0, 8.0]]]), 3, k=2)
        tensor([[[2.5000, 8.5000]]])
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    k = _check_k(k)
    src, views, valid, count = window_source(x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode,
                                             output_size, -torch.inf)
    kk = min(k, math.prod(views.view(src).shape[-d:]))
    y = _fast.dispatch("topk", src, views, valid, count, d, kk)
    if y is None:
        w = views.view(src).flatten(-d)
        top = _sorted(w, None if valid is None else valid.flatten(-d), descending=True)[..., :kk]
        if count is None:
            y = top.mean(-1)
        else:  # the first min(kk, count) sorted cells are input cells
            m = count.clamp(max=kk)
            keep = torch.arange(kk, device=w.device) < m.unsqueeze(-1)
            y = (torch.where(keep, top, 0.0).sum(-1) / m.to(w.dtype)).to(w.dtype)
        y = torch.where(w.isnan().any(-1), torch.nan, y)  # NaN windows: NaN, and no gradient
    return as_layout(y, x)  # the input's layout, as torch's poolings keep it


def range_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Range (max − min) of each window: two native max poolings.

    ``padding_mode="zeros"`` pads each side with its neutral element, so padding
    never counts. Arguments as :func:`max_pool` (no ``return_indices``).

    Example:
        >>> range_pool(torch.tensor([[[3.0, 1.0, 2.0, 9.0, 7.0, 8.0]]]), 3)
        tensor([[[2., 2.]]])
    """
    check_input(x)
    kw = dict(padding_mode=padding_mode, output_size=output_size)
    hi = max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, **kw)  # type: ignore[arg-type]
    neg_lo = max_pool(-x, kernel_size, stride, padding, dilation, ceil_mode, **kw)  # type: ignore[arg-type]
    return hi + neg_lo  # type: ignore[operator, return-value]  # hi - (-neg_lo), exactly

"""Order statistics: max, min, median, top-k mean and range.

All functions are dimension-generic: ``x`` is ``(N, C, *spatial)`` with 1 to 3
spatial dims. ``padding_mode="zeros"`` pads with the neutral element (``-inf``
for max), as torch does; median and top-k leave padded cells out of the window.
Max, min and range are native max poolings; median and top-k, which have no
native reduction, work on strided views of the windows (a min/max sorting
network for small windows without autograd, otherwise a sort or top-k).
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor

from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    adaptive_windows,
    check_input,
    check_padding_mode,
    crop,
    fast_layout,
    native,
    needs_grad,
    pad,
    resolve,
    resolve_output_size,
    windows,
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
    f = native("max_pool", win.dims)
    if padding_mode == "zeros" and win.symmetric:
        p = [a for a, _ in win.pad]
        return f(fast_layout(x, "max_pool"), win.kernel, win.stride, p, win.dilation, win.ceil_mode, return_indices)
    if return_indices:
        raise ValueError("return_indices=True needs padding_mode='zeros' and integer (symmetric) padding")
    xp = fast_layout(pad(x, win, padding_mode, value=-torch.inf), "max_pool")
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


# ---------------------------------------------------------------- statistics without a fused reduction


def _cells(
    x: Tensor,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None,
    padding: Padding,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    output_size: OutputSize,
    fill: float,
) -> tuple[Tensor, bool]:
    """Windows ``(N, C, *out, *kernel)`` and whether any cell holds ``fill``.

    Cells outside the input (zero padding, ceil-mode overhang, the tail of a
    shorter adaptive window) hold ``fill``; other padding modes pad with copies.
    A strided view of the (padded) input except for uneven adaptive windows.
    """
    if output_size is not None:
        out = resolve_output_size(x, output_size)
        filled = any(int(n) % o for n, o in zip(x.shape[2:], out))
        return adaptive_windows(x, out, fill), filled
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
    filled = (padding_mode == "zeros" and win.padded) or any(win.overhang)
    return windows(pad(x, win, padding_mode, value=fill, extra=True), win), filled


@functools.lru_cache(maxsize=64)
def _median_network(n: int, keep: int) -> tuple[tuple[int, int], ...]:
    """Compare-exchange pairs of Batcher's odd-even merge sort for ``n`` inputs, pruned to
    those that decide sorted positions ``0 .. keep - 1``."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (p * 2) == (i + j + k) // (p * 2):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed, kept = set(range(keep)), []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            needed |= {i, j}
            kept.append((i, j))
    return tuple(reversed(kept))


# without autograd a min/max sorting network on strided views beats copying and sorting each window
# (about 5x at 9 to 64 cells on CPU); its backward is slower than the sort's (one full-size gradient per view)
_NETWORK_MAX_CELLS = 64


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
    that one cell. ``padding_mode="zeros"`` pads with nothing: padded cells and
    ceil-mode overhang are left out of the window, as are the missing cells of
    shorter adaptive windows. A NaN input makes its windows NaN.

    Without autograd, windows of up to 64 cells (3×3, 5×5, 3×3×3, ...) run a
    min/max sorting network on strided views of the input, with no copy of the
    windows; otherwise the windows are copied and sorted.

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
    args = (kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
    # cells outside the input sort last (+inf), so a window with n real cells has its median at (n - 1) // 2
    w, filled = _cells(x, *args, torch.inf)
    kshape = tuple(w.shape[-d:])
    size = math.prod(kshape)
    mid = (size - 1) // 2
    network = size <= _NETWORK_MAX_CELLS and not (torch.is_grad_enabled() and x.requires_grad)
    if network:
        offsets: list[tuple] = [(Ellipsis, *j) for j in itertools.product(*(range(k) for k in kshape))]
        cells = [w[o] for o in offsets]
        for i, j in _median_network(size, mid + 1):
            cells[i], cells[j] = torch.minimum(cells[i], cells[j]), torch.maximum(cells[i], cells[j])
        if not filled:
            return cells[mid]
        low = torch.stack(cells[: mid + 1], -1)
    else:
        low = w.flatten(-d).sort(-1).values[..., : mid + 1]
        # sort puts NaN last, past the median: mark windows holding a NaN with one native max pool
        has_nan = max_pool(x.isnan().to(x.dtype), *args[:5], padding_mode=padding_mode, output_size=output_size)
        if not filled:
            return torch.where(has_nan > 0, torch.nan, low[..., mid])  # type: ignore[operator]
    ones = x.new_ones((1, 1, *x.shape[2:]), dtype=torch.float32)
    count = _cells(ones, *args, 0.0)[0].flatten(-d).sum(-1)
    idx = ((count - 1) // 2).long().unsqueeze(-1).expand(*low.shape[:-1], 1)
    y = low.gather(-1, idx).squeeze(-1)
    if not network:  # NaN propagates through min/max by itself
        y = torch.where(has_nan > 0, torch.nan, y)  # type: ignore[operator]
    return y


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

    Without autograd, windows of up to 64 cells pick their ``k`` largest with a
    min/max sorting network on strided views (no copy of the windows); otherwise
    the windows are copied and ``torch.topk`` runs on them.

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
    check_input(x)
    check_padding_mode(padding_mode)
    k = _check_k(k)
    args = (kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
    w, filled = _cells(x, *args, -torch.inf)
    d = x.ndim - 2
    kshape = tuple(w.shape[-d:])
    size = math.prod(kshape)
    kk = min(k, size)
    if size <= _NETWORK_MAX_CELLS and not needs_grad(x):
        # the sorting network on strided views, as in median_pool, deciding the kk largest (descending)
        offsets: list[tuple] = [(Ellipsis, *j) for j in itertools.product(*(range(n) for n in kshape))]
        cells_l = [w[o] for o in offsets]
        for i, j in _median_network(size, kk):
            cells_l[i], cells_l[j] = torch.maximum(cells_l[i], cells_l[j]), torch.minimum(cells_l[i], cells_l[j])
        top = torch.stack(cells_l[:kk], -1)
    else:
        top = w.flatten(-d).topk(kk, dim=-1).values
    if not filled:
        return top.mean(-1)
    # real cells per window (geometry only): the first min(k, count) of the sorted values are real
    ones = x.new_ones((1, 1, *x.shape[2:]), dtype=torch.float32)
    count = _cells(ones, *args, 0.0)[0].flatten(-d).sum(-1).clamp(max=kk)
    keep = torch.arange(kk, device=x.device) < count.unsqueeze(-1)
    return (torch.where(keep, top, 0.0).sum(-1) / count.to(x.dtype)).to(x.dtype)


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
    if output_size is None:
        x = fast_layout(x, "max_pool")  # one layout change serves both poolings (-x keeps it)
    hi = max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, **kw)  # type: ignore[arg-type]
    neg_lo = max_pool(-x, kernel_size, stride, padding, dilation, ceil_mode, **kw)  # type: ignore[arg-type]
    # hi - (-neg_lo) == hi + neg_lo exactly; skips negating the minimum
    if needs_grad(x):
        return hi + neg_lo  # type: ignore[operator, return-value]
    return hi.add_(neg_lo)  # type: ignore[union-attr, arg-type]

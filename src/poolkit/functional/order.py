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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._fast import custom_backward, needs_grad
from ._fast.layout import fast_layout
from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    adaptive_windows,
    check_input,
    check_padding_mode,
    crop,
    native,
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

    ``padding_mode="zeros"`` pads with ``+inf`` (the neutral element). With
    autograd the backward scatters the gradient by the pooling's indices
    directly, without the two negations of the plain formula.

    Example:
        >>> min_pool(torch.arange(8.0).view(1, 1, 8), 2)
        tensor([[[0., 2., 4., 6.]]])
    """
    if not custom_backward(x):  # no gradient, or a torch.func transform: the plain formula
        out = max_pool(
            -x, kernel_size, stride, padding, dilation, ceil_mode,
            padding_mode=padding_mode, output_size=output_size, return_indices=return_indices,
        )
        y = out[0] if isinstance(out, tuple) else out
        y = -y if needs_grad(x) else y.neg_()  # without autograd a fresh tensor: negate in place
        return (y, out[1]) if isinstance(out, tuple) else y
    d = check_input(x)
    check_padding_mode(padding_mode)
    if output_size is not None:
        y, idx = _MinFn.apply(x, d, None, resolve_output_size(x, output_size))
        return (y, idx) if return_indices else y
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
    if padding_mode == "zeros" and win.symmetric:
        y, idx = _MinFn.apply(x, d, (win.kernel, win.stride, [a for a, _ in win.pad], win.dilation, ceil_mode), None)
        return (y, idx) if return_indices else y
    if return_indices:
        raise ValueError("return_indices=True needs padding_mode='zeros' and integer (symmetric) padding")
    xp = pad(x, win, padding_mode, value=torch.inf)
    y, _ = _MinFn.apply(xp, d, (win.kernel, win.stride, (0,) * d, win.dilation, ceil_mode), None)
    return crop(y, win.out)


class _MinFn(torch.autograd.Function):
    """Min pooling as ``-max_pool(-x)`` whose backward scatters ``g`` by the max pooling's indices
    (one pass, where autograd through the formula negates the gradient twice)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, d: int, geom: tuple | None, out: tuple[int, ...] | None
    ) -> tuple[Tensor, Tensor]:
        neg = -x
        if out is not None:
            y, idx = native("adaptive_max_pool", d)(neg, out, True)
        else:
            assert geom is not None
            y, idx = native("max_pool", d)(neg, *geom, True)
        ctx.d, ctx.geom = d, geom
        # the backward reads only the shape and layout of the pooled tensor: keep -x (as the formula's
        # autograd does) rather than x, which stays free to change in place
        ctx.save_for_backward(neg, idx)
        ctx.mark_non_differentiable(idx)
        # 1-d pooling returns views (of a 2-d result): a view output could not be changed in place later
        return (-y if y._is_view() else y.neg_()), idx

    @staticmethod
    def backward(ctx, g: Tensor, _: Tensor | None) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        x, idx = ctx.saved_tensors
        d, geom = ctx.d, ctx.geom
        if d == 1:  # torch pools 1-d inputs as 2-d maps of height 1
            g, x, idx = g.unsqueeze(-2), x.unsqueeze(-2), idx.unsqueeze(-2)
        n = max(d, 2)
        if geom is None:
            gx = getattr(torch.ops.aten, f"adaptive_max_pool{n}d_backward")(g, x, idx)
        else:
            kernel, stride, padding, dilation, ceil_mode = geom
            if d == 1:
                kernel, stride, padding, dilation = (1, *kernel), (1, *stride), (0, *padding), (1, *dilation)
            backward = getattr(torch.ops.aten, f"max_pool{n}d_with_indices_backward")
            gx = backward(g, x, list(kernel), list(stride), list(padding), list(dilation), ceil_mode, idx)
        return (gx.squeeze(-2) if d == 1 else gx), None, None, None


# ---------------------------------------------------------------- statistics without a fused reduction


@dataclass(frozen=True)
class _Windows:
    """How the windows of a median or top-k pooling lie in their source tensor ``src``.

    ``view(src)`` is the ``(N, C, *out, *kernel)`` windows of ``src``, a strided view (``src`` is the
    padded input, or the gathered windows of uneven adaptive pooling with ``view`` the identity).
    ``disjoint``: no cell of ``src`` lies in two windows; ``tiles``: every cell lies in exactly one.
    """

    view: Callable[[Tensor], Tensor]
    disjoint: bool
    tiles: bool


def _identity(t: Tensor) -> Tensor:
    return t


def _source(
    x: Tensor,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None,
    padding: Padding,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    output_size: OutputSize,
    fill: float,
    geometry: bool = True,
) -> tuple[Tensor, _Windows, Tensor | None, Tensor | None]:
    """The windows' source ``src``, their layout, and where some window holds cells outside the
    input (zero padding, ceil-mode overhang, the tail of a shorter adaptive window; they hold ``fill``,
    other padding modes pad with copies): ``valid``, which window cells are input cells, and ``count``,
    how many per window (both ``None`` when every cell is; never computed without ``geometry``).
    """
    args = (kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
    if output_size is not None:
        out = resolve_output_size(x, output_size)
        filled = any(int(n) % o for n, o in zip(x.shape[2:], out))
        if filled:
            src = adaptive_windows(x, out, fill)
            view: Callable[[Tensor], Tensor] = _identity
        else:
            src, view = x, functools.partial(adaptive_windows, out=out, fill=fill)
        disjoint = tiles = True
    else:
        if kernel_size is None:
            raise TypeError("kernel_size is required unless output_size is given")
        win = resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
        filled = (padding_mode == "zeros" and win.padded) or any(win.overhang)
        src = pad(x, win, padding_mode, value=fill, extra=True)
        view = functools.partial(windows, win=win)
        disjoint = all(s >= e for s, e in zip(win.stride, win.extent))
        tiles = all(s == k and dl == 1 and o * s == n
                    for s, k, dl, o, n in zip(win.stride, win.kernel, win.dilation, win.out, src.shape[2:]))
    valid = count = None
    if filled and geometry:
        ones = x.new_ones((1, 1, *x.shape[2:]), dtype=torch.float32)
        ones_src, ones_win, _, _ = _source(ones, *args, 0.0, geometry=False)
        w = ones_win.view(ones_src)
        valid = w > 0
        count = w.flatten(-(x.ndim - 2)).sum(-1)
    return src, _Windows(view, disjoint, tiles), valid, count


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


def _offsets(kshape: tuple[int, ...]) -> list[tuple]:
    """Index of each window cell, in window (row-major) order, for ``w[o]`` on windows ``w``."""
    return [(Ellipsis, *j) for j in itertools.product(*(range(k) for k in kshape))]


# a min/max sorting network on strided views beats copying and sorting each window (about 5x at 9 to
# 64 cells on CPU); past 64 cells its comparator count grows faster than a sort's cost
_NETWORK_MAX_CELLS = 64


def _network(w: Tensor, d: int, keep: int, descending: bool) -> list[Tensor]:
    """Sorted positions ``0 .. keep - 1`` of each window (ascending or descending), one tensor each."""
    kshape = tuple(w.shape[-d:])
    cells = [w[o] for o in _offsets(kshape)]
    if len(cells) == 1:  # no comparator: never hand out a view of the input
        return [cells[0].clone()]
    lo, hi = (torch.maximum, torch.minimum) if descending else (torch.minimum, torch.maximum)
    for i, j in _median_network(len(cells), keep):
        cells[i], cells[j] = lo(cells[i], cells[j]), hi(cells[i], cells[j])
    return cells[:keep]


def _median_values(w: Tensor, d: int, count: Tensor | None) -> Tensor:
    """Lower median of each window of ``w``; ``count``: real cells per window (they sort first)."""
    size = math.prod(w.shape[-d:])
    mid = (size - 1) // 2
    if size <= _NETWORK_MAX_CELLS:  # NaN propagates through min/max by itself
        cells = _network(w, d, mid + 1, descending=False)
        if count is None:
            return cells[mid]
        low = torch.stack(cells, -1)
        has_nan = None
    else:
        srt = w.flatten(-d).sort(-1).values
        has_nan = srt[..., -1].isnan()  # sort puts NaN last, past the median
        low = srt[..., : mid + 1]
        if count is None:
            return torch.where(has_nan, torch.nan, low[..., mid])
    idx = ((count - 1) // 2).long().unsqueeze(-1).expand(*low.shape[:-1], 1)
    y = low.gather(-1, idx).squeeze(-1)
    return y if has_nan is None else torch.where(has_nan, torch.nan, y)


def _topk_values(w: Tensor, d: int, kk: int, count: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean of the ``kk`` largest of each window's real cells, and the smallest value in that mean
    (NaN where the window holds a NaN)."""
    size = math.prod(w.shape[-d:])
    if size <= _NETWORK_MAX_CELLS:  # NaN propagates through min/max to every decided position
        top_l = _network(w, d, kk, descending=True)
        if count is None:
            y = top_l[0] if kk == 1 else torch.add(top_l[0], top_l[1])
            for c in top_l[2:]:
                y.add_(c)
            return (y.div(kk) if kk > 1 else y), top_l[-1]
        top = torch.stack(top_l, -1)
    else:
        top = w.flatten(-d).topk(kk, dim=-1).values
        if count is None:
            return top.mean(-1), torch.where(top[..., 0].isnan(), torch.nan, top[..., -1])  # topk: NaN first
    # the first min(kk, count) of the sorted values are real cells
    m = count.clamp(max=kk)
    keep = torch.arange(kk, device=w.device) < m.unsqueeze(-1)
    y = (torch.where(keep, top, 0.0).sum(-1) / m.to(w.dtype)).to(w.dtype)
    last = top.gather(-1, (m.long() - 1).unsqueeze(-1).expand(*top.shape[:-1], 1)).squeeze(-1)
    return y, torch.where(top[..., 0].isnan(), torch.nan, last)


def _scatter(src: Tensor, s: _Windows, masks: list[Tensor], g: Tensor) -> Tensor:
    """Gradient of ``src``: ``g`` to the window cells where ``masks`` (one per cell offset) hold.

    Writes through the same strided window views as the forward: one offset's view maps the windows
    to distinct cells, so an in-place add per offset is right even for overlapping windows.
    """
    differentiable = torch.is_grad_enabled()  # double backward: autograd records the in-place adds
    out = torch.empty_like(src) if s.tiles and not differentiable else torch.zeros_like(src)
    gw = s.view(out)
    offsets = _offsets(tuple(gw.shape[g.ndim:]))
    zero = g.new_zeros(())
    for o, m in zip(offsets, masks):
        if differentiable or not s.disjoint:
            gw[o].add_(torch.where(m, g, zero))
        else:
            torch.where(m, g, zero, out=gw[o])
    return out


def _counter(n: int, like: Tensor) -> Tensor:
    return torch.zeros_like(like, dtype=torch.uint8 if n < 256 else torch.int32)


class _MedianFn(torch.autograd.Function):
    """Median from strided window views; the backward sends each window's gradient to its median cell.

    That cell is the one ``sort`` (stable) and ``torch.median`` pick: among cells equal to the median,
    the ``r``-th in window order, ``r = mid - (cells below the median)``. NaN windows pass no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, src: Tensor, valid: Tensor | None, count: Tensor | None, s: _Windows, d: int
    ) -> Tensor:
        y = _median_values(s.view(src), d, count)
        if y._is_view():  # an output that is a view of an internal tensor cannot be changed in place
            y = y.clone()
        ctx.s = s
        # the backward keeps its own copy of the output, free to be changed in place (an in-place ReLU)
        ctx.save_for_backward(src, y.clone(), valid, count)
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        src, y, valid, count = ctx.saved_tensors
        s: _Windows = ctx.s
        w = s.view(src)
        offsets = _offsets(tuple(w.shape[y.ndim:]))
        # a +inf fill cell may equal a +inf median: only then do fill cells need masking out
        if valid is not None and not bool(y.isposinf().any()):
            valid = None
        with torch.no_grad():
            eqs, ties = [], _counter(len(offsets), y)
            for o in offsets:
                e = w[o] == y
                if valid is not None:
                    e &= valid[o]
                eqs.append(e)
                ties.add_(e)
            if bool((ties > 1).any()):  # equal cells: the stable sort's rank decides
                below = _counter(len(offsets), y).to(torch.int32)
                for o in offsets:
                    below.add_(w[o] < y)
                mid = (len(offsets) - 1) // 2 if count is None else ((count - 1) // 2).to(torch.int32)
                rank = mid - below
                for i, e in enumerate(eqs):
                    eqs[i] = e & (rank == 0)
                    rank.sub_(e.to(rank.dtype))
        return _scatter(src, s, eqs, g), None, None, None, None


class _TopKFn(torch.autograd.Function):
    """Top-k mean from strided window views; the backward sends ``g / m`` to the window's ``m`` largest
    real cells (``m = min(k, real cells)``), ties at the ``m``-th value broken in window order (a stable
    descending sort's pick). NaN windows pass no gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, src: Tensor, valid: Tensor | None, count: Tensor | None, s: _Windows, d: int, kk: int
    ) -> Tensor:
        y, last = _topk_values(s.view(src), d, kk, count)
        if y._is_view():  # an output that is a view of an internal tensor cannot be changed in place
            y = y.clone()
        ctx.s, ctx.kk = s, kk
        ctx.save_for_backward(src, last.clone() if last is y else last, valid, count)  # y may change in place
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:  # type: ignore[override]
        src, last, valid, count = ctx.saved_tensors
        s: _Windows = ctx.s
        w = s.view(src)
        offsets = _offsets(tuple(w.shape[last.ndim:]))
        m: int | Tensor = ctx.kk if count is None else count.clamp(max=ctx.kk).to(torch.int32)
        if valid is not None and not bool(last.isneginf().any()):
            valid = None
        with torch.no_grad():
            takes, n = [], _counter(len(offsets), last)
            for o in offsets:
                t = w[o] >= last
                if valid is not None:
                    t &= valid[o]
                takes.append(t)
                n.add_(t)
            wrong = n != m
            if bool(wrong.any()) and bool((wrong & ~last.isnan()).any()):  # ties at the m-th value
                above = _counter(len(offsets), last).to(torch.int32)
                for o in offsets:
                    above.add_(w[o] > last)
                quota = m - above  # equal cells still to take, in window order
                for i, (o, t) in enumerate(zip(offsets, takes)):
                    gt = w[o] > last
                    tie = t & ~gt & (quota > 0)
                    takes[i] = gt | tie
                    quota.sub_(tie.to(quota.dtype))
        scale = g / (m if isinstance(m, int) else m.to(g.dtype))
        return _scatter(src, s, takes, scale), None, None, None, None, None


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

    Windows of up to 64 cells (3×3, 5×5, 3×3×3, ...) run a min/max sorting
    network on strided views of the input, with no copy of the windows; larger
    ones are copied and sorted. The backward finds each window's median cell by
    comparing the same strided views with the output (the input is the only
    full-size tensor kept for it).

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
    src, s, valid, count = _source(x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size,
                                   torch.inf)
    if custom_backward(src):
        return _MedianFn.apply(src, valid, count, s, d)
    return _median_values(s.view(src), d, count)


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

    Windows of up to 64 cells pick their ``k`` largest with a min/max sorting
    network on strided views (no copy of the windows); larger ones are copied
    and ``torch.topk`` runs on them. The backward compares the same strided
    views with the smallest averaged value of each window.

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
    src, s, valid, count = _source(x, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size,
                                   -torch.inf)
    kk = min(k, math.prod(s.view(src).shape[-d:]))
    if custom_backward(src):
        return _TopKFn.apply(src, valid, count, s, d, kk)
    return _topk_values(s.view(src), d, kk, count)[0]


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

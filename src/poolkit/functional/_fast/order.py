"""Fast kernels of the order statistics (max, min, median, top-k); the formulas are in ``functional/order.py``.

- ``max_pool`` / ``channels_last``: inference on contiguous 2-d/3-d CPU input runs torch's max pooling on a
  channels-last copy (its CPU kernel is several times faster there) and copies the result back to the
  contiguous layout torch's op gives.
- ``min_pool`` / ``scatter_backward``: with a gradient on channels-last input, one custom function whose
  backward scatters by the max pooling's indices (the formula ``-max_pool(-x)`` negates the gradient twice).
- ``median`` / ``topk`` ``network``: windows of up to 64 cells, a min/max sorting network on strided views
  of the input (no copy of the windows, no sort); with a gradient, a custom function whose backward finds
  each window's chosen cells by comparing the same views with the output (no host sync).
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor

from .._window import WindowViews, crop, native, pad, resolve, resolve_output_size
from . import custom_backward, needs_grad, register

__all__: list[str] = []

_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


# ---------------------------------------------------------------- max: channels-last routing


def _canonical(y: Tensor) -> Tensor:
    """``y`` with the strides of a fresh contiguous tensor (``contiguous()`` may keep odd strides of size-1 dims)."""
    fresh = torch.empty_like(y, memory_format=torch.contiguous_format)
    return y if y.stride() == fresh.stride() else fresh.copy_(y)


def _max_cl_applies(x: Tensor, win: object, padding_mode: str, return_indices: bool) -> bool:
    d = x.ndim - 2
    return (
        d in _CHANNELS_LAST
        and x.device.type == "cpu"
        and x.shape[1] > 1
        and padding_mode == "zeros"
        and getattr(win, "symmetric", False)
        and not needs_grad(x)
        and x.is_contiguous()
        and not x.is_contiguous(memory_format=_CHANNELS_LAST[d])  # not both layouts at once (size-1 dims)
    )


@register("max_pool", "channels_last", "CPU, 2-d/3-d, no gradient, contiguous input, zero symmetric padding",
          _max_cl_applies)
def _max_pool_channels_last(x: Tensor, win, padding_mode: str, return_indices: bool):  # type: ignore[no-untyped-def]
    f = native("max_pool", win.dims)
    xc = x.contiguous(memory_format=_CHANNELS_LAST[win.dims])
    out = f(xc, win.kernel, win.stride, [a for a, _ in win.pad], win.dilation, win.ceil_mode, return_indices)
    if return_indices:
        return _canonical(out[0]), _canonical(out[1])
    return _canonical(out)


# ---------------------------------------------------------------- min: one backward by the indices


def _min_applies(x: Tensor, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size,  # type: ignore[no-untyped-def]
                 return_indices) -> bool:
    fmt = _CHANNELS_LAST.get(x.ndim - 2)
    return (custom_backward(x) and fmt is not None and not x.is_contiguous()
            and x.is_contiguous(memory_format=fmt))


@register("min_pool", "scatter_backward", "gradient wanted, channels-last 2-d/3-d input", _min_applies)
def _min_pool(x: Tensor, kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size,  # type: ignore[no-untyped-def]
              return_indices):
    d = x.ndim - 2
    if output_size is not None:
        y, idx = _MinFn.apply(x, d, None, resolve_output_size(x, output_size))
        return (y, idx) if return_indices else y
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
    """Min pooling as ``-max_pool(-x)`` whose backward scatters ``g`` by the max pooling's indices."""

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
        return -y, idx  # as the formula negates: the same strides

    @staticmethod
    def backward(ctx, g: Tensor, _: Tensor | None) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        x, idx = ctx.saved_tensors
        d, geom = ctx.d, ctx.geom
        if geom is None:
            gx = getattr(torch.ops.aten, f"adaptive_max_pool{d}d_backward")(g, x, idx)
        else:
            kernel, stride, padding, dilation, ceil_mode = geom
            backward = getattr(torch.ops.aten, f"max_pool{d}d_with_indices_backward")
            gx = backward(g, x, list(kernel), list(stride), list(padding), list(dilation), ceil_mode, idx)
        return gx, None, None, None


# ---------------------------------------------------------------- median and top-k: a sorting network

#: a min/max sorting network on strided views beats copying and sorting each window (about 5x at 9 to
#: 64 cells on CPU); past 64 cells its comparator count grows faster than a sort's cost
_NETWORK_MAX_CELLS = 64


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


def _network(w: Tensor, d: int, keep: int, descending: bool) -> list[Tensor]:
    """Sorted positions ``0 .. keep - 1`` of each window (ascending or descending), one tensor each."""
    cells = [w[o] for o in _offsets(tuple(w.shape[-d:]))]
    if len(cells) == 1:  # no comparator: never hand out a view of the input
        return [cells[0].clone()]
    lo, hi = (torch.maximum, torch.minimum) if descending else (torch.minimum, torch.maximum)
    for i, j in _median_network(len(cells), keep):
        cells[i], cells[j] = lo(cells[i], cells[j]), hi(cells[i], cells[j])
    return cells[:keep]


def _median_values(w: Tensor, d: int, count: Tensor | None) -> Tensor:
    """Lower median of each window of ``w``; ``count``: real cells per window (they sort first).
    NaN propagates through min/max by itself."""
    mid = (math.prod(w.shape[-d:]) - 1) // 2
    cells = _network(w, d, mid + 1, descending=False)
    if count is None:
        return cells[mid]
    low = torch.stack(cells, -1)
    idx = ((count - 1) // 2).long().unsqueeze(-1).expand(*low.shape[:-1], 1)
    return low.gather(-1, idx).squeeze(-1)


def _topk_values(w: Tensor, d: int, kk: int, count: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean of the ``kk`` largest of each window's real cells, and the smallest value in that mean
    (NaN where the window holds a NaN: it propagates through min/max to every decided position)."""
    top_l = _network(w, d, kk, descending=True)
    if count is None:
        y = top_l[0] if kk == 1 else torch.add(top_l[0], top_l[1])
        for c in top_l[2:]:
            y.add_(c)
        return (y.div(kk) if kk > 1 else y), top_l[-1]
    top = torch.stack(top_l, -1)
    m = count.clamp(max=kk)  # the first min(kk, count) of the sorted values are real cells
    keep = torch.arange(kk, device=w.device) < m.unsqueeze(-1)
    y = (torch.where(keep, top, 0.0).sum(-1) / m.to(w.dtype)).to(w.dtype)
    last = top.gather(-1, (m.long() - 1).unsqueeze(-1).expand(*top.shape[:-1], 1)).squeeze(-1)
    return y, torch.where(top[..., 0].isnan(), torch.nan, last)


def _scatter(src: Tensor, s: WindowViews, masks: list[Tensor], g: Tensor) -> Tensor:
    """Gradient of ``src``: ``g`` to the window cells where ``masks`` (one per cell offset) hold.

    Writes through the same strided window views as the forward: one offset's view maps the windows
    to distinct cells, so an in-place add per offset is right even for overlapping windows.
    """
    differentiable = torch.is_grad_enabled()  # double backward: autograd records the in-place adds
    # contiguous, as the reference formula's gradient is for every input layout
    fmt = torch.contiguous_format
    out = torch.empty_like(src, memory_format=fmt) if s.tiles and not differentiable else torch.zeros_like(
        src, memory_format=fmt)
    gw = s.view(out)
    zero = g.new_zeros(())
    for o, m in zip(_offsets(tuple(gw.shape[g.ndim:])), masks):
        if differentiable or not s.disjoint:
            gw[o].add_(torch.where(m, g, zero))
        else:
            torch.where(m, g, zero, out=gw[o])
    return out


def _counter(n: int, like: Tensor) -> Tensor:
    return torch.zeros_like(like, dtype=torch.int16 if n < 2 ** 15 else torch.int32)


class _MedianFn(torch.autograd.Function):
    """Median by the sorting network; the backward sends each window's gradient to its median cell.

    That cell is the one a stable sort picks: among cells equal to the median, the ``r``-th in window
    order, ``r = mid - (cells below the median)``. NaN windows pass no gradient. No host sync.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, src: Tensor, valid: Tensor | None, count: Tensor | None, s: WindowViews, d: int
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
        s: WindowViews = ctx.s
        w = s.view(src)
        offsets = _offsets(tuple(w.shape[y.ndim:]))
        with torch.no_grad():
            below = _counter(len(offsets), y)
            eqs = []
            for o in offsets:
                below.add_(w[o] < y)  # fill cells (+inf) are never below
                e = w[o] == y
                eqs.append(e if valid is None else e & valid[o])  # a +inf fill cell may equal a +inf median
            rank = ((len(offsets) - 1) // 2 if count is None else ((count - 1) // 2).to(below.dtype)) - below
            for i, e in enumerate(eqs):  # equal cells: the stable sort's rank decides
                eqs[i] = e & (rank == 0)
                rank.sub_(e.to(rank.dtype))
        return _scatter(src, s, eqs, g), None, None, None, None


class _TopKFn(torch.autograd.Function):
    """Top-k mean by the sorting network; the backward sends ``g / m`` to the window's ``m`` largest real
    cells (``m = min(k, real cells)``), ties at the ``m``-th value broken in window order (a stable
    descending sort's pick). NaN windows pass no gradient. No host sync."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, src: Tensor, valid: Tensor | None, count: Tensor | None, s: WindowViews, d: int, kk: int
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
        s: WindowViews = ctx.s
        w = s.view(src)
        offsets = _offsets(tuple(w.shape[last.ndim:]))
        with torch.no_grad():
            above = _counter(len(offsets), last)
            gts, eqs = [], []
            for o in offsets:
                gt = w[o] > last  # fill cells (-inf) are never above
                above.add_(gt)
                e = w[o] == last
                gts.append(gt)
                eqs.append(e if valid is None else e & valid[o])  # a -inf fill cell may equal a -inf last
            m = ctx.kk if count is None else count.clamp(max=ctx.kk).to(above.dtype)
            quota = m - above  # equal cells still to take, in window order
            takes = []
            for gt, e in zip(gts, eqs):
                tie = e & (quota > 0)
                takes.append(gt | tie)
                quota.sub_(tie.to(quota.dtype))
        scale = g / (m if isinstance(m, int) else m.to(g.dtype))
        return _scatter(src, s, takes, scale), None, None, None, None, None


def _small(src: Tensor, s: WindowViews, d: int) -> bool:
    return math.prod(s.view(src).shape[-d:]) <= _NETWORK_MAX_CELLS


def _median_applies(src: Tensor, s: WindowViews, valid: Tensor | None, count: Tensor | None, d: int) -> bool:
    return _small(src, s, d)


@register("median", "network", "windows of up to 64 cells (any device, dtype, layout)", _median_applies)
def _median(src: Tensor, s: WindowViews, valid: Tensor | None, count: Tensor | None, d: int) -> Tensor:
    if custom_backward(src):
        return _MedianFn.apply(src, valid, count, s, d)
    return _median_values(s.view(src), d, count)


def _topk_applies(src: Tensor, s: WindowViews, valid: Tensor | None, count: Tensor | None, d: int, kk: int) -> bool:
    return _small(src, s, d)


@register("topk", "network", "windows of up to 64 cells (any device, dtype, layout)", _topk_applies)
def _topk(src: Tensor, s: WindowViews, valid: Tensor | None, count: Tensor | None, d: int, kk: int) -> Tensor:
    if custom_backward(src):
        return _TopKFn.apply(src, valid, count, s, d, kk)
    return _topk_values(s.view(src), d, kk, count)[0]

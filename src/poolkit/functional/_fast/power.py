"""Fast kernels of the power-mean family (avg, lp, gem, lse, softpool, mixed) and of stochastic pooling's
expectation (``stochastic_mean``), beside the reference formulas of :mod:`poolkit.functional.power`.

Each kernel states when it applies (its ``when`` text and its ``applies`` predicate, registered with
:func:`poolkit.functional._fast.register`) and returns the reference's values (to rounding), gradients,
dtype, device and memory layout: an output computed in another layout is copied back (:func:`restore`).
None inspects a value to choose a path (no host sync on any device).

* ``chunked`` (lp, gem, stochastic_mean; no autograd, CPU): the pointwise map runs a few samples at a time
  into a small reused buffer that torch's average pooling reads straight into its slice of the output, so
  no input-sized temporary is made (:func:`_chunked_means`); ``mixed`` does the same with max and avg.
* ``analytic backward`` (lp, gem, stochastic_mean; autograd): custom ``autograd.Function`` s built on
  torch's average-pooling backward, saving the input and output-sized tensors only; with
  ``create_graph=True`` they differentiate the reference formula instead, so double backward works.
* ``phases`` (lse, softpool): ``m + log(mean exp(x - m))`` with ``m`` each window's own maximum, from native
  max and average poolings; overlapping windows split into non-overlapping phases (:func:`_phase_reduce`).
* ``channels_last`` (avg): torch's CPU average pooling of large windows runs several times faster on
  channels_last; the output is copied back to the reference's layout.

Measured fast on / off (``benchmarks/ops.py``, 2-core CPU, 1 thread, 2-d 32x64x56x56, kernel 2, forward
without autograd | forward + backward): lp 0.75 | 0.74, gem 0.61 | 0.86, stochastic_mean 0.47 | 0.75, mixed
0.28 | -, lse 0.28 | 0.37, softpool 0.32 | 0.43; avg channels_last 0.77 (kernel 3, stride 2) to 0.40 (kernel
3, stride 1), none for kernel 2 (hence >= 9 cells). Dropped where the gain disappeared: lse/softpool phases in
1-d, chunked lp and stochastic_mean in 3-d, every layout routing under autograd, and the plain-formula paths
of lse/softpool (they needed a host-side range check).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .._window import Window, crop, native, pad
from . import custom_backward, needs_grad, register, transformed
from .layout import as_layout

_CL = {4: torch.channels_last, 5: torch.channels_last_3d}
_FLOATS = (torch.float32, torch.float64)


def avg_format(x: Tensor) -> torch.memory_format:
    """The memory format of torch's CPU average pooling of a dense ``x``: channels_last for channels_last 2-d
    input, else contiguous (``avg_pool3d`` returns contiguous output for channels_last_3d input)."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(x: Tensor) -> bool:
    """``x`` is contiguous or channels_last(_3d): the layouts whose reference output layout the kernels know
    (they apply to those only)."""
    return x.numel() > 0 and (x.is_contiguous() or (x.ndim in _CL and x.is_contiguous(memory_format=_CL[x.ndim])))


def _canonical(shape: tuple[int, ...], fmt: torch.memory_format) -> tuple[int, ...]:
    nd = len(shape)
    order = list(range(nd - 1, -1, -1)) if fmt == torch.contiguous_format else [1, *range(nd - 1, 1, -1), 0]
    st, s = [0] * len(shape), 1
    for i in order:
        st[i], s = s, s * shape[i]
    return tuple(st)


def restore(y: Tensor, fmt: torch.memory_format) -> Tensor:
    """``y`` with the strides torch gives a fresh tensor of ``fmt`` (a differentiable copy where they differ)."""
    return y if y.stride() == _canonical(tuple(y.shape), fmt) else y.clone(memory_format=fmt)


def native_geometry(win: object, padding_mode: str) -> bool:
    """One native average pooling serves the window: no dilation, no padding or symmetric zero padding."""
    return (isinstance(win, Window) and all(dl == 1 for dl in win.dilation)
            and (not win.padded or (padding_mode == "zeros" and win.symmetric)))


def _work(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _NativeMean:
    """One native average pooling (1-d as 2-d with a unit height) and its backward, for the kernels below.

    ``fmt``: the memory format the chunked paths compute in (channels_last in 2-d, where torch's CPU average
    pooling is fastest; contiguous in 3-d), or ``None`` to keep the input's own layout.
    """

    def __init__(self, win: Window, count_include_pad: bool, divisor_override: int | None, route: bool) -> None:
        k, s, p = win.kernel, win.stride, tuple(a for a, _ in win.pad)
        self.one_d = win.dims == 1
        if self.one_d:
            k, s, p = (1, *k), (1, *s), (0, *p)
        self.nd = len(k)
        self.out = (1, *win.out) if self.one_d else win.out
        self.args = (k, s, p, win.ceil_mode, count_include_pad, divisor_override)
        self.fmt = (torch.channels_last if self.nd == 2 else torch.contiguous_format) if route else None

    def view(self, x: Tensor) -> Tensor:
        return x.unsqueeze(2) if self.one_d else x

    def unview(self, t: Tensor) -> Tensor:
        return t.squeeze(2) if self.one_d else t

    def param(self, v: float | Tensor) -> float | Tensor:
        """A ``(1, C, 1, ...)`` parameter shaped for :meth:`view`'s input."""
        return v.unsqueeze(-1) if self.one_d and isinstance(v, Tensor) and v.ndim > 0 else v

    def mean(self, z: Tensor) -> Tensor:
        return native("avg_pool", self.nd)(z, *self.args)

    def mean_backward(self, g: Tensor, z: Tensor) -> Tensor:
        """Gradient of :meth:`mean` at ``z`` (only its shape and layout matter) for the output gradient ``g``."""
        op = torch.ops.aten.avg_pool2d_backward if self.nd == 2 else torch.ops.aten.avg_pool3d_backward
        return op(g, z, *self.args)


def _native_ok(x: Tensor, win: object, padding_mode: str) -> bool:
    return native_geometry(win, padding_mode) and dense(x) and not (x.ndim == 5 and x.dtype not in _FLOATS)


# ---------------------------------------------------------------- chunked (no autograd, CPU)

# a pointwise map feeding a native average runs a few samples at a time into one small reused buffer that stays
# in cache; 0 turns this off
_CHUNK_BYTES = 1 << 20

Map = Callable[[Tensor, Tensor], object]


def _chunked_ok(x: Tensor, *params: object) -> bool:
    return (bool(_CHUNK_BYTES) and x.device.type == "cpu" and _work(x).dtype in _FLOATS
            and not needs_grad(x, *params) and not torch.jit.is_tracing())


def _chunks(x: Tensor, nat: _NativeMean, per_channel: bool) -> tuple[Tensor, tuple, torch.memory_format, int, int, int]:
    """``x`` viewed as rows ``(rows, per, *spatial)``, the spatial size, the buffers' memory format, the number
    of rows, of channels per row, and of rows per chunk (about ``_CHUNK_BYTES``)."""
    xv = nat.view(x)
    n, c = xv.shape[:2]
    sp = tuple(xv.shape[2:])
    assert nat.fmt is not None
    if nat.nd == 3 and xv.is_contiguous() and not per_channel:
        # contiguous 3-d: rows of (sample, channel), each a unit-channel volume, so chunks can be smaller
        xv, fmt, rows, per = xv.reshape((n * c, 1, *sp)), torch.contiguous_format, n * c, 1
    else:
        fmt, rows, per = nat.fmt, n, c  # torch's avg_pool3d.out writes channels_last_3d slices wrongly: fmt
    unit = per * math.prod(sp) * x.element_size()
    return xv, sp, fmt, rows, per, min(rows, max(1, _CHUNK_BYTES // unit))


def _chunked_means(x: Tensor, nat: _NativeMean, maps: list[Map], per_channel: bool = False) -> list[Tensor]:
    """Native means of successive in-place maps of ``x``, chunk by chunk, in ``x``'s reference layout.

    Each map is ``f(x_chunk, buf)`` and updates ``buf`` (which holds the previous map's result); the mean is
    taken after each. ``per_channel``: a map broadcasts a ``(1, C, 1, ...)`` tensor, so chunks keep all channels.
    """
    xv, sp, fmt, rows, per, u = _chunks(x, nat, per_channel)
    n, c = x.shape[:2]
    buf = torch.empty((u, per, *sp), dtype=x.dtype, device=x.device, memory_format=fmt)
    outs = [torch.empty((rows, per, *nat.out), dtype=x.dtype, device=x.device, memory_format=fmt) for _ in maps]
    op = getattr(torch.ops.aten, f"avg_pool{nat.nd}d").out
    for r0 in range(0, rows, u):
        xc = xv[r0 : r0 + u]
        b = buf[: xc.shape[0]]
        for f, o in zip(maps, outs):
            f(xc, b)
            op(b, *nat.args, out=o[r0 : r0 + u])
    return [restore(nat.unview(o.view((n, c, *nat.out))), avg_format(x)) for o in outs]


def _root_(s: Tensor, p: float | Tensor) -> Tensor:
    """``s ** (1/p)`` in place for ``s >= 0`` (0 maps to 0): ``exp(log(s) / p)``, exact to rounding and several
    times faster than ``pow`` with a fractional exponent on CPU."""
    if isinstance(p, float) and p == 2.0:
        return s.sqrt_()
    return s.log_().div_(p).exp_()


def _power_map(p: float, absolute: bool) -> Map:
    """``buf = |x|^p`` (``absolute``) or ``x^p``."""
    if p == 2.0:
        return lambda xc, b: torch.mul(xc, xc, out=b)
    if not absolute:
        return lambda xc, b: torch.pow(xc, p, out=b)
    if p == 1.0:
        return lambda xc, b: torch.abs(xc, out=b)
    return lambda xc, b: torch.abs(xc, out=b).pow_(p)


@register("lp", "chunked", "no autograd, CPU, float16/32/64, 1-d or 2-d (measured: no gain in 3-d), one native "
          "average (no padding or symmetric zero padding), contiguous or channels_last input",
          lambda x, win, p, absolute, mode: x.ndim < 5 and _chunked_ok(x) and _native_ok(x, win, mode))
def _lp_chunked(x: Tensor, win: Window, p: float, absolute: bool, padding_mode: str) -> Tensor:
    nat = _NativeMean(win, True, None, route=True)
    return _torch_lp(_chunked_means(_work(x), nat, [_power_map(p, absolute)])[0], p, win).to(x.dtype)


def _torch_lp(s: Tensor, p: float, win: Window) -> Tensor:
    """torch's ``lp_pool`` after its average (the same ops, so the same values and strides)."""
    return (torch.sign(s) * torch.relu(torch.abs(s))).mul(float(math.prod(win.kernel))).pow(1.0 / p)


@register("gem", "chunked", "no autograd, CPU, float16/32/64, one native average, contiguous or channels_last",
          lambda x, win, p, eps, mode, cip: _chunked_ok(x, p) and not transformed(p) and _native_ok(x, win, mode))
def _gem_chunked(x: Tensor, win: Window, p: float | Tensor, eps: float, padding_mode: str, cip: bool) -> Tensor:
    nat = _NativeMean(win, cip, None, route=True)
    pv = nat.param(p)
    m = _chunked_means(_work(x), nat, [lambda xc, b: torch.clamp(xc, min=eps, out=b).pow_(pv)],
                       per_channel=isinstance(p, Tensor))[0]
    return as_layout(_root_(m, p).to(x.dtype), x)


@register("stochastic_mean", "chunked", "no autograd, CPU, float32/64, 1-d or 2-d (measured: no gain in 3-d), one "
          "native average, contiguous or channels_last", lambda x, win, mode: x.ndim < 5 and _chunked_ok(x)
          and x.dtype in _FLOATS and _native_ok(x, win, mode))
def _lehmer_chunked(x: Tensor, win: Window, padding_mode: str) -> Tensor:
    nat = _NativeMean(win, True, None, route=True)
    den, num = _chunked_means(x, nat, [lambda xc, b: torch.clamp(xc, min=0.0, out=b), lambda xc, b: b.mul_(b)])
    return as_layout(num.div_(den.clamp_min_(torch.finfo(x.dtype).tiny)), x)  # num = 0 where den = 0


def _mixed_applies(x: Tensor, win: object, a: object, mode: str, cip: bool) -> bool:
    # measured: a win only where the chunks change the layout (1-d, 2-d NCHW); 3-d pools lose on chunks
    return (_chunked_ok(x, a) and x.dtype in _FLOATS and _native_ok(x, win, mode) and x.ndim in (3, 4)
            and x.is_contiguous())


@register("mixed", "chunked", "no autograd, CPU, float32/64, one native average, contiguous 1-d or 2-d input",
          _mixed_applies)
def _mixed_chunked(x: Tensor, win: Window, alpha: float | Tensor, padding_mode: str, cip: bool) -> Tensor:
    """``avg + alpha (max - avg)`` chunk by chunk, each chunk copied into one reused channels_last buffer."""
    nat = _NativeMean(win, cip, None, route=True)
    xv, sp, fmt, rows, per, u = _chunks(x, nat, isinstance(alpha, Tensor))
    n, c = x.shape[:2]
    a = nat.param(alpha) if isinstance(alpha, Tensor) and per == c else alpha
    buf = torch.empty((u, per, *sp), dtype=x.dtype, device=x.device, memory_format=fmt)
    out = torch.empty((rows, per, *nat.out), dtype=x.dtype, device=x.device, memory_format=fmt)
    k, s, p, ceil = nat.args[:4]
    mp, op = native("max_pool", nat.nd), getattr(torch.ops.aten, f"avg_pool{nat.nd}d").out
    for r0 in range(0, rows, u):
        xc = xv[r0 : r0 + u]
        src = buf[: xc.shape[0]].copy_(xc)
        o = out[r0 : r0 + u]
        op(src, *nat.args, out=o)
        o.lerp_(mp(src, k, s, p, 1, ceil), a)
    return as_layout(nat.unview(out.view((n, c, *nat.out))), x)


@register("avg", "channels_last", "no autograd, CPU, float32/64, contiguous 2-d input with C > 1, windows of >= 9 "
          "cells served by one native average: torch's channels_last kernel, output copied back to contiguous",
          lambda x, win, mode, cip, div: x.device.type == "cpu" and x.ndim == 4 and x.dtype in _FLOATS
          and not needs_grad(x) and x.is_contiguous() and x.shape[1] > 1 and not x.is_contiguous(
              memory_format=torch.channels_last) and native_geometry(win, mode) and math.prod(win.kernel) >= 9)
def _avg_channels_last(x: Tensor, win: Window, padding_mode: str, cip: bool, div: int | None) -> Tensor:
    y = F.avg_pool2d(x.contiguous(memory_format=torch.channels_last), win.kernel, win.stride,
                     [a for a, _ in win.pad], win.ceil_mode, cip, div)
    return restore(y, torch.contiguous_format)


# ---------------------------------------------------------------- analytic backwards (autograd)


def _graph_grads(g: Tensor, wrt: list[Tensor], plain: Callable[[], Tensor]) -> tuple[Tensor | None, ...]:
    """Gradients of a differentiable recomputation ``plain()`` of a forward, with a graph (double backward).

    The backwards below keep no graph; when autograd asks for one (``create_graph=True`` runs the backward
    with grad mode on) they hand over to this, which costs one plain autograd pass.
    """
    with torch.enable_grad():
        y = plain()
    return torch.autograd.grad(y, wrt, g, create_graph=True, allow_unused=True)


def _safe_root(s: Tensor, p: float | Tensor) -> Tensor:
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, 1.0) ** (1.0 / p), 0.0)


def _root_grad(g: Tensor, s: Tensor, p: float | Tensor) -> Tensor:
    """``g * s^(1/p - 1)``, 0 where ``s == 0``; a power, not ``y / s``, so an infinite window gives 0."""
    pos = s > 0
    return torch.where(pos, g * torch.where(pos, s, 1.0) ** (1.0 / p - 1.0), 0.0)


def _sum_to(t: Tensor, like: Tensor) -> Tensor:
    """``t`` summed over the dims that ``like`` broadcasts (a parameter's gradient)."""
    if like.ndim == 0:
        return t.sum()
    dims = [i for i, (a, b) in enumerate(zip(t.shape, like.shape)) if b == 1 and a != 1]
    return (t.sum(dims, keepdim=True) if dims else t).view(like.shape)


class _LpFn(torch.autograd.Function):
    """``y = s^(1/p)``, ``s = cells * mean(|z|^p)``; ``dy/dz = cells * mean_backward(g y / s) |z|^(p-1) sign(z)``
    (0 for windows with ``s = 0``). Saves ``z`` and ``s``."""

    @staticmethod
    def forward(ctx, z: Tensor, p: float, win: Window, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        mean = nat.mean(z * z if p == 2.0 else z.abs().pow_(p))
        scale = float(math.prod(win.kernel))
        ctx.save_for_backward(z, mean * scale)  # not y, which the caller may change in place (an in-place ReLU)
        ctx.p, ctx.scale, ctx.nat = p, scale, nat
        return _torch_lp(mean, p, win)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        z, s = ctx.saved_tensors
        p, nat = ctx.p, ctx.nat
        if torch.is_grad_enabled():
            (gz,) = _graph_grads(g, [z], lambda: _safe_root(nat.mean(z.abs() ** p) * ctx.scale, p))
            return gz, None, None, None
        gs = (g * ctx.scale) if p == 1.0 else _root_grad(g, s, p).mul_(ctx.scale)
        a = nat.mean_backward(gs, z)
        if p == 2.0:
            w = z
        elif p == 1.0:
            w = z.sign()
        elif p > 2.0:
            w = z.abs().pow_(p - 2.0).mul_(z)
        else:
            w = z.abs().pow_(p - 1.0).mul_(z.sign())
        return a.mul_(w), None, None, None


class _GemFn(torch.autograd.Function):
    """GeM ``y = m^(1/p)``, ``m = mean(clamp(z, eps)^p)``; ``dy/dz = mean_backward(g y / m) c^(p-1) [z >= eps]``
    with ``c = clamp(z, eps)``, and for a tensor ``p`` that requires grad
    ``dy/dp = y (mean(c^p log c) / m - log(m) / p) / p``. Saves ``z`` and ``m``."""

    @staticmethod
    def forward(ctx, z: Tensor, p: float | Tensor, eps: float, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        m = nat.mean(z.clamp(min=eps).pow_(p))
        ctx.save_for_backward(z, m, *((p,) if isinstance(p, Tensor) else ()))  # not y: it may change in place
        ctx.p, ctx.eps, ctx.nat = (None if isinstance(p, Tensor) else p), eps, nat
        return _root_(m.clone(), p)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        z, m, *rest = ctx.saved_tensors
        p = rest[0] if rest else ctx.p
        nat, eps = ctx.nat, ctx.eps
        if torch.is_grad_enabled():
            wrt = [t for t, need in zip((z, p), ctx.needs_input_grad[:2]) if need and isinstance(t, Tensor)]
            grads = iter(_graph_grads(g, wrt, lambda: _safe_root(nat.mean(z.clamp(min=eps) ** p), p)))
            return (next(grads) if ctx.needs_input_grad[0] else None,
                    next(grads) if ctx.needs_input_grad[1] and isinstance(p, Tensor) else None, None, None)
        gy = _root_grad(g, m, p)
        gz = gp = None
        if ctx.needs_input_grad[0]:
            gz = nat.mean_backward(gy, z).mul_(z.clamp(min=eps).pow_(p - 1.0).masked_fill_(z < eps, 0.0))
        if ctx.needs_input_grad[1]:
            c = z.clamp(min=eps)
            u = nat.mean(c.pow(p).mul_(c.log_()))
            pos = m > 0
            logm = torch.where(pos, m, 1.0).log()
            gp = _sum_to(torch.where(pos, gy * (u - m * logm / p) / p, 0.0), p)
        return gz, gp, None, None


class _LehmerFn(torch.autograd.Function):
    """``y = avg(a^2) / avg(a)``, ``a = relu(z)`` (0 where a window has no positive cell): stochastic pooling's
    expectation. The input gradient is ``(2 z A - B) [z > 0]`` with ``A = mean_backward(g / den)`` and
    ``B = mean_backward(g y / den)``. Saves ``z`` and two output-sized tensors."""

    @staticmethod
    def forward(ctx, z: Tensor, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        a = torch.relu(z)
        den = nat.mean(a)
        num = nat.mean(a.mul_(a))
        ctx.save_for_backward(z, den, num)  # not y, which the caller may change in place (an in-place ReLU)
        ctx.nat = nat
        pos = den > 0
        return torch.where(pos, num / torch.where(pos, den, 1.0), 0.0)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        z, den, num = ctx.saved_tensors
        nat: _NativeMean = ctx.nat
        if torch.is_grad_enabled():

            def plain() -> Tensor:
                a = torch.relu(z)
                d = nat.mean(a)
                pos = d > 0
                return torch.where(pos, nat.mean(a * a) / torch.where(pos, d, 1.0), 0.0)

            (gz,) = _graph_grads(g, [z], plain)
            return gz, None
        pos = den > 0
        gd = torch.where(pos, g / torch.where(pos, den, 1.0), 0.0)
        y = torch.where(pos, num / torch.where(pos, den, 1.0), 0.0)
        b = nat.mean_backward(-gd * y, z)
        a = nat.mean_backward(gd.mul_(2.0), z)
        return b.addcmul_(z, a).masked_fill_(z <= 0, 0.0), None


def _backward_ok(x: Tensor, win: object, mode: str, *params: object) -> bool:
    # not channels_last_3d: autograd of the reference returns gradients in layouts that differ between maps
    return (custom_backward(x, *params) and not transformed(*params) and _native_ok(x, win, mode)
            and (x.ndim < 5 or x.is_contiguous()))


@register("lp", "analytic_backward", "autograd (no torch.func), absolute=True or an even power (sums >= 0), one "
          "native average, contiguous or channels_last (not channels_last_3d)",
          lambda x, win, p, absolute, mode: (absolute or p % 2 == 0) and _backward_ok(x, win, mode))
def _lp_backward(x: Tensor, win: Window, p: float, absolute: bool, padding_mode: str) -> Tensor:
    nat = _NativeMean(win, True, None, route=False)
    return nat.unview(_LpFn.apply(nat.view(_work(x)), p, win, nat)).to(x.dtype)


@register("gem", "analytic_backward", "autograd (no torch.func), one native average, contiguous or channels_last",
          lambda x, win, p, eps, mode, cip: _backward_ok(x, win, mode, p))
def _gem_backward(x: Tensor, win: Window, p: float | Tensor, eps: float, padding_mode: str, cip: bool) -> Tensor:
    nat = _NativeMean(win, cip, None, route=False)
    return as_layout(nat.unview(_GemFn.apply(nat.view(_work(x)), nat.param(p), eps, nat)).to(x.dtype), x)


@register("stochastic_mean", "analytic_backward", "autograd (no torch.func), float32/64, one native average, "
          "contiguous or channels_last", lambda x, win, mode: x.dtype in _FLOATS and _backward_ok(x, win, mode))
def _lehmer_backward(x: Tensor, win: Window, padding_mode: str) -> Tensor:
    nat = _NativeMean(win, True, None, route=False)
    return as_layout(nat.unview(_LehmerFn.apply(nat.view(x), nat)), x)


# ---------------------------------------------------------------- window-max shifted phases (lse, softpool)


def _avg_valid(t: Tensor, win: Window, stride: tuple[int, ...]) -> Tensor:
    """Mean over the cells inside ``t`` (already padded) of windows of ``win``'s kernel at ``stride``."""
    if t.ndim == 3:
        return F.avg_pool1d(t, win.kernel, stride, 0, True, True)
    return native("avg_pool", t.ndim - 2)(t, win.kernel, stride, 0, True, True)


def _phase_reduce(
    xp: Tensor, win: Window, terms: Callable[[Tensor, Tensor], list[Tensor]]
) -> tuple[list[Tensor], Tensor]:
    """Window means of ``terms(x, x - m)`` where ``m`` is each window's own maximum, constant inside it.

    Overlapping windows cannot share one per-cell shift, so they are split into ``prod(ceil(kernel / stride))``
    phases whose windows do not overlap (stride ``q * stride``); each phase runs one native max and one native
    average, and the outputs are interleaved back. ``xp`` is the padded input, uncounted cells at ``-inf``.
    Returns the means (``(N, C, *out)`` each) and the window maxima.
    """
    d = win.dims
    q = tuple(-(-k // s) for k, s in zip(win.kernel, win.stride))
    step = tuple(qi * s for qi, s in zip(q, win.stride))
    full = all(qi == 1 for qi in q)
    means: list[Tensor] | None = None
    mx: Tensor | None = None
    for phase in itertools.product(*(range(qi) for qi in q)):
        n_out = tuple(-(-(o - g) // qi) for o, g, qi in zip(win.out, phase, q))
        if any(n <= 0 for n in n_out):
            continue
        sub = xp
        for i, (g, s) in enumerate(zip(phase, win.stride)):
            sub = sub.narrow(2 + i, g * s, int(sub.shape[2 + i]) - g * s)
        m = crop(native("max_pool", d)(sub, win.kernel, step, 0, 1, True), n_out)
        m = torch.where(torch.isfinite(m), m, 0.0).detach()  # the shift cancels exactly: no gradient through it
        if step == win.kernel and all(int(sub.shape[2 + i]) >= n * st for i, (st, n) in enumerate(zip(step, n_out))):
            # windows tile the phase: x - m by broadcasting over a (N, C, o1, k1, o2, k2, ...) view, no upsampling
            for i, (st, n) in enumerate(zip(step, n_out)):
                sub = sub.narrow(2 + i, 0, n * st)
            xv, mv = sub, m
            for i in reversed(range(d)):
                xv = xv.unflatten(2 + i, (n_out[i], win.kernel[i]))
                mv = mv.unsqueeze(3 + i)
            diff = xv - mv.view(mv.shape[:2] + tuple(v for n in n_out for v in (n, 1)))
            for i in range(d):
                diff = diff.flatten(2 + i, 3 + i)
        else:
            up = m
            for i, (st, n) in enumerate(zip(step, n_out)):
                length = min(int(sub.shape[2 + i]), n * st)
                up = up.repeat_interleave(st, dim=2 + i).narrow(2 + i, 0, length)
                sub = sub.narrow(2 + i, 0, length)
            diff = (sub - up).clamp_max_(0.0)  # cells between windows may exceed m
        ts = [crop(_avg_valid(t, win, step), n_out) for t in terms(sub, diff)]
        if full:
            return ts, m
        if means is None:
            means = [t.new_zeros(t.shape[:2] + win.out) for t in ts]
            mx = m.new_zeros(m.shape[:2] + win.out)
        idx = (slice(None), slice(None), *tuple(slice(g, None, qi) for g, qi in zip(phase, q)))
        for acc, t in zip(means, ts):
            acc[idx] = t
        assert mx is not None
        mx[idx] = m
    assert means is not None and mx is not None
    return means, mx


def _padded(x: Tensor, win: Window, padding_mode: str, counted: bool) -> tuple[Tensor, Tensor | None]:
    """The padded input with uncounted padding at ``-inf``, and the counted-cell mask (``None``: all count)."""
    xp = pad(x, win, padding_mode, 0.0)
    if padding_mode != "zeros" or not win.padded or counted:
        return xp, None
    mask = pad(x.new_ones((1, 1, *win.size)), win, "zeros", 0.0)
    return xp.masked_fill(mask == 0, -torch.inf), mask


# windows above this many cells take the reference: its sum and torch's average pooling add in different orders,
# which differ by more than a few ulp over large (global) windows
_PHASES_MAX_CELLS = 64


class _ChannelsLast(torch.autograd.Function):
    """``x`` copied to channels_last (where torch's CPU max and average poolings run several times faster than
    on NCHW), its gradient handed back contiguous, as the reference formula gives it."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        return g.contiguous()


def _routed(x: Tensor) -> Tensor:
    """Contiguous 2-d CPU input (C > 1) in channels_last for the phases; the output goes back by ``as_layout``."""
    if x.device.type == "cpu" and x.ndim == 4 and x.shape[1] > 1 and x.is_contiguous() and not x.is_contiguous(
            memory_format=torch.channels_last):
        return _ChannelsLast.apply(x) if x.requires_grad and torch.is_grad_enabled() else x.contiguous(
            memory_format=torch.channels_last)
    return x


def _phases_ok(x: Tensor, win: object, *params: object) -> bool:
    """Local windows of at most 64 cells whose every phase holds a full kernel of the padded input (else torch's
    pooling refuses)."""
    # measured: in 1-d the reference (one reduction over the window view) is as fast or faster
    if (not isinstance(win, Window) or x.ndim == 3 or math.prod(win.kernel) > _PHASES_MAX_CELLS or not dense(x)
            or transformed(*params)):
        return False
    q = (-(-k // s) for k, s in zip(win.kernel, win.stride))
    return all(n + a + b - (qi - 1) * s >= k
               for n, (a, b), qi, s, k in zip(win.size, win.pad, q, win.stride, win.kernel))


@register("lse", "phases", "2-d/3-d local windows of <= 64 cells (any padding, ceil_mode, overlap), contiguous "
          "or channels_last input: "
          "native max and average poolings of exp(beta (x - window max)), one pair per non-overlapping phase",
          lambda x, win, b, mode, cip: _phases_ok(x, win, b))
def _lse_phases(x: Tensor, win: Window, b: float | Tensor, padding_mode: str, cip: bool) -> Tensor:
    xmax, mask = _padded(_routed(_work(x)), win, padding_mode, cip)

    def terms(xs: Tensor, diff: Tensor) -> list[Tensor]:
        # as the reference: the mean of exp, and of expm1 (exact where cells are close to the maximum);
        # uncounted cells are -inf (exp 0, expm1 -1)
        if isinstance(b, float) and b == 1.0:
            t = diff
        else:
            t = b * diff if diff.requires_grad else diff.mul_(b)
        return [torch.exp(t), torch.expm1(t) if t.requires_grad else t.expm1_()]  # in place: one buffer less

    (mean, mean1), m = _phase_reduce(xmax, win, terms)
    if mask is not None:  # means over the counted cells
        frac = crop(_avg_valid(mask, win, win.stride), win.out)
        mean, mean1 = mean / frac, (mean1 + (1.0 - frac)) / frac
    return as_layout((m + torch.where(mean1 > -0.5, torch.log1p(mean1), torch.log(mean)) / b).to(x.dtype), x)


@register("softpool", "phases", "2-d/3-d local windows of <= 64 cells (any padding, ceil_mode, overlap), "
          "contiguous or channels_last input: native average poolings of x e^(x - window max) and "
          "e^(x - window max) per phase",
          lambda x, win, mode: _phases_ok(x, win))
def _softpool_phases(x: Tensor, win: Window, padding_mode: str) -> Tensor:
    xmax, _ = _padded(_routed(_work(x)), win, padding_mode, False)

    def terms(xs: Tensor, diff: Tensor) -> list[Tensor]:
        e = torch.exp(diff)  # ignored cells are -inf: weight 0
        num = torch.where(e > 0, xs, 0.0)
        return [num * e if e.requires_grad else num.mul_(e), e]

    (num, den), _ = _phase_reduce(xmax, win, terms)
    return as_layout((num / den).to(x.dtype), x)

"""Power-mean family: avg, lp, gem, lse, softpool, mixed, gated.

Every statistic here is a fused native average pooling of a pointwise map,
``f^-1(avg_pool(g(x)))``, a ratio of two average poolings, or a blend of native
max and average poolings (mixed; gated adds one strided grouped convolution), so
the adaptive/global forms come for free. lse and softpool first try the plain
formula and fall back to a max-shifted form only where an exponential would
overflow or a window's sum underflow (see :func:`lse_pool`).

Speed, where the window is one native average (no padding, or symmetric zero
padding): without autograd on CPU the pointwise map runs a chunk of samples at a
time into a small reused buffer that the native average pools straight into the
output (:func:`_chunked_means`); under autograd lp, gem, lse, softpool, mixed and
stochastic pooling's eval mode run in the memory layout where torch's CPU kernels
are fastest (channels_last in 1-d/2-d, contiguous in 3-d) and lp, gem, lse,
softpool and stochastic eval use analytic backwards built on torch's
average-pooling backward, saving only the input, what autograd would save of the
map, and output-sized tensors. When a graph of the backward is asked for
(``create_graph=True``, double backward), those backwards differentiate the plain
formula instead, so higher derivatives work. Other geometry (padding by copies,
adaptive windows that do not divide the input) takes plain autograd.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._fast import needs_grad, transformed
from ._fast.layout import fast_layout
from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    adaptive_bounds,
    adaptive_windows,
    check_input,
    check_padding_mode,
    crop,
    native,
    pad,
    resolve,
    resolve_output_size,
)
from .order import max_pool, window_max

__all__ = ["avg_pool", "gated_pool", "gem_pool", "lp_pool", "lse_pool", "mixed_pool", "softpool", "window_mean"]


def _avg_native(x: Tensor, k, s, p, ceil_mode: bool, count_include_pad: bool, divisor_override) -> Tensor:
    if x.ndim == 3:  # avg_pool1d has no divisor_override (and is slower on CPU): run it as 2-d
        y = native("avg_pool", 2)(
            fast_layout(x.unsqueeze(2), "avg_pool"), (1, k[0]), (1, s[0]), (0, p[0]), ceil_mode,
            count_include_pad, divisor_override,
        )
        return y.squeeze(2).contiguous()
    if x.ndim == 5 and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # torch's CPU avg_pool3d has no half kernels: compute in float32
        y = native("avg_pool", 3)(x.float(), k, s, p, ceil_mode, count_include_pad, divisor_override)
        return y.to(x.dtype)
    return native("avg_pool", x.ndim - 2)(fast_layout(x, "avg_pool"), k, s, p, ceil_mode, count_include_pad,
                                          divisor_override)


def window_mean(
    x: Tensor,
    win: Window | tuple[int, ...],
    padding_mode: str = "zeros",
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean of ``x`` over each window of ``win`` (a :class:`Window`, or an adaptive output size).

    The building block of every smooth statistic: one native average pooling.
    ``padding_mode="zeros"`` pads with zeros that count when ``count_include_pad``;
    other modes pad with copies of the input, which always count. Windows that
    ceil_mode lets run past the padded input are averaged over their cells inside.
    """
    if not isinstance(win, Window):
        return native("adaptive_avg_pool", x.ndim - 2)(x, win)
    if any(dl != 1 for dl in win.dilation):
        raise ValueError("dilation must be 1 for mean-based statistics (torch's avg_pool has none)")
    if padding_mode == "zeros" and win.symmetric:
        p = [a for a, _ in win.pad]
        return _avg_native(x, win.kernel, win.stride, p, win.ceil_mode, count_include_pad, divisor_override)
    xp = pad(x, win, padding_mode, 0.0)
    zero = (0,) * win.dims
    y = crop(_avg_native(xp, win.kernel, win.stride, zero, win.ceil_mode, True, divisor_override), win.out)
    if padding_mode == "zeros" and not count_include_pad and win.padded and divisor_override is None:
        ones = pad(x.new_ones((1, 1, *win.size)), win, "zeros", 0.0)
        frac = crop(_avg_native(ones, win.kernel, win.stride, zero, win.ceil_mode, True, None), win.out)
        y = y / frac
    return y


def avg_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Average over each window, in 1-D, 2-D or 3-D.

    Equal to ``torch.nn.functional.avg_pool{1,2,3}d`` wherever torch has the op
    (``count_include_pad`` and ``divisor_override`` included, also in 1-D).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the divisor (``"zeros"`` mode).
        divisor_override: divide each window sum by this instead.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global average).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> avg_pool(torch.arange(8.0).view(1, 1, 8), 2)
        tensor([[[0.5000, 2.5000, 4.5000, 6.5000]]])
    """
    check_input(x)
    check_padding_mode(padding_mode)
    if divisor_override is not None and (
        isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override < 1
    ):
        raise ValueError(f"divisor_override must be a positive int or None, got {divisor_override!r}")
    if output_size is not None:
        return window_mean(x, resolve_output_size(x, output_size))
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    return window_mean(x, win, padding_mode, count_include_pad, divisor_override)


# ---------------------------------------------------------------- shared helpers


def _work(x: Tensor) -> Tensor:
    """Half-precision inputs are computed in float32: pow/exp/log overflow or lose too much in 16 bits."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _geometry(
    x: Tensor,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None,
    padding: Padding,
    ceil_mode: bool,
    padding_mode: str,
    output_size: OutputSize,
) -> Window | tuple[int, ...]:
    """Validate the input and return a local :class:`Window` or an adaptive output size."""
    check_input(x)
    check_padding_mode(padding_mode)
    if output_size is not None:
        return resolve_output_size(x, output_size)
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    return resolve(x, kernel_size, stride, padding, 1, ceil_mode)


def _as_local(x: Tensor, win: Window | tuple[int, ...]) -> Window | tuple[int, ...]:
    """Adaptive sizes that divide the input evenly are plain non-overlapping windows."""
    if isinstance(win, Window):
        return win
    size = tuple(int(n) for n in x.shape[2:])
    if all(n % o == 0 for n, o in zip(size, win)):
        k = tuple(n // o for n, o in zip(size, win))
        return Window(size, k, k, (1,) * len(k), tuple((0, 0) for _ in k), tuple(win), False)
    return win


def _channel_param(value: float | Tensor, x: Tensor, name: str, low: float | None = None) -> float | Tensor:
    """A float, or a tensor of shape () / (C,) broadcast against ``x`` as ``(1, C, 1, ...)``.

    ``low`` bounds floats only: a tensor's values are not checked, which would cost a device sync per call.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor of shape () or (C,), got {type(value).__name__}")
    if isinstance(value, Tensor):
        if value.ndim == 1 and value.numel() == x.shape[1]:
            value = value.view((1, -1) + (1,) * (x.ndim - 2))
        elif value.ndim != 0:
            raise ValueError(
                f"{name} must be a scalar or have shape (C,) = ({x.shape[1]},), got shape {tuple(value.shape)}"
            )
        return value.to(_work(x).dtype)
    value = float(value)
    if low is not None and not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def _sum_count(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Number of cells in each adaptive window, ``(*out)``, to turn adaptive means into sums."""
    count = None
    for i, (n, o) in enumerate(zip(x.shape[2:], out)):
        starts, ends = adaptive_bounds(int(n), o)
        c = torch.tensor([e - s for s, e in zip(starts, ends)], dtype=_work(x).dtype, device=x.device)
        c = c.view((-1,) + (1,) * (len(out) - 1 - i))
        count = c if count is None else count * c
    assert count is not None
    return count


def _safe_root(s: Tensor, p: float | Tensor) -> Tensor:
    """``s ** (1/p)`` for ``s >= 0`` with a finite (zero) gradient where ``s == 0``."""
    if isinstance(p, float) and not transformed(s):
        return _Root.apply(s, p)
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, 1.0) ** (1.0 / p), 0.0)


def _root_(s: Tensor, p: float | Tensor) -> Tensor:
    """:func:`_safe_root` in place on ``s`` (no autograd): the same values, no output-sized temporaries."""
    if isinstance(p, float) and p == 2.0:
        return s.sqrt_()
    # exp(log(s) / p) is exact to rounding, maps 0 to 0, and runs several times faster than pow with a
    # fractional exponent on CPU
    return s.log_().div_(p).exp_()


class _Root(torch.autograd.Function):
    """``s ** (1/p)`` for ``s >= 0`` and a float ``p > 0``, with gradient ``y / (p s)`` and 0 where ``s == 0``.

    One output-sized pass each way instead of autograd's chain of ``where`` and ``pow`` (whose CPU kernel for a
    fractional exponent is slow). The backward is built from differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(ctx, s: Tensor, p: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(s)  # not the output, which the caller may change in place (an in-place ReLU)
        ctx.p = p
        return s.sqrt() if p == 2.0 else s.log().div_(p).exp_()

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (s,) = ctx.saved_tensors
        y = s.sqrt() if ctx.p == 2.0 else (s.log() / ctx.p).exp()
        pos = s > 0
        return torch.where(pos, g * y / (ctx.p * torch.where(pos, s, 1.0)), 0.0), None


def _mean_valid(t: Tensor, win: Window, stride: tuple[int, ...] | None = None) -> Tensor:
    s = win.stride if stride is None else stride
    return _avg_native(t, win.kernel, s, (0,) * win.dims, win.ceil_mode or stride is not None, True, None)


def _phase_reduce(
    xp: Tensor, win: Window, terms: Callable[[Tensor, Tensor], list[Tensor]]
) -> tuple[list[Tensor], Tensor]:
    """Window means of ``terms(x, m)`` where ``m`` is each window's own maximum, constant inside it.

    Overlapping windows cannot share one per-cell shift, so they are split into
    ``prod(ceil(kernel / stride))`` phases whose windows do not overlap (stride
    ``q * stride``); each phase runs one native max and one native average, and
    the outputs are interleaved back. Non-overlapping windows are one phase.
    ``xp`` is the padded input, with cells that must not count at ``-inf``.
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
        up = m
        for i, (st, n) in enumerate(zip(step, n_out)):
            length = min(int(sub.shape[2 + i]), n * st)
            up = up.repeat_interleave(st, dim=2 + i).narrow(2 + i, 0, length)
            sub = sub.narrow(2 + i, 0, length)
        ts = [crop(_mean_valid(t, win, step), n_out) for t in terms(sub, up)]
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


def _padded(x: Tensor, win: Window, padding_mode: str, counted: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Padded input, the same with uncounted padding at ``-inf`` (for maxima), and the counted-cell mask."""
    xp = pad(x, win, padding_mode, 0.0)
    if padding_mode != "zeros" or not win.padded or counted:
        return xp, xp, None
    mask = pad(x.new_ones((1, 1, *win.size)), win, "zeros", 0.0)
    return xp, xp.masked_fill(mask == 0, -torch.inf), mask


def _check_float(value: object, name: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    v = float(value)
    if (low is not None and not v >= low) or (high is not None and not v <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return v


class _NativeMean:
    """One native average pooling and its backward, for the custom autograd functions below.

    Only for geometry that :func:`window_mean` runs as a single native call (no padding, or symmetric zero
    padding); :meth:`of` returns ``None`` otherwise. On CPU the work runs in the memory layout where torch's
    kernels (forward and backward) are fastest: channels_last in 2-d (1-d runs as 2-d with a unit height),
    contiguous in 3-d; converting once costs less than one slow pass.
    """

    def __init__(self, win: Window, count_include_pad: bool, divisor_override: int | None, cpu: bool) -> None:
        k, s, p = win.kernel, win.stride, tuple(a for a, _ in win.pad)
        self.one_d = win.dims == 1
        if self.one_d:
            k, s, p = (1, *k), (1, *s), (0, *p)
        self.nd = len(k)
        self.out = (1, *win.out) if self.one_d else win.out
        self.args = (k, s, p, win.ceil_mode, count_include_pad, divisor_override)
        self.fmt = (torch.channels_last if self.nd == 2 else torch.contiguous_format) if cpu else None

    @classmethod
    def of(
        cls, x: Tensor, win: Window | tuple[int, ...], padding_mode: str, count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> _NativeMean | None:
        if not isinstance(win, Window) or any(dl != 1 for dl in win.dilation):
            return None
        if win.padded and not (padding_mode == "zeros" and win.symmetric):
            return None
        if x.ndim == 5 and x.dtype in (torch.float16, torch.bfloat16):
            return None  # no half avg_pool3d on CPU
        if transformed(x):
            return None  # torch.func transforms and forward-mode AD take the plain formulas
        return cls(win, count_include_pad, divisor_override, x.device.type == "cpu")

    def view(self, x: Tensor) -> Tensor:
        """``x`` as the native op sees it (a differentiable view or copy)."""
        z = x.unsqueeze(2) if self.one_d else x
        return z if self.fmt is None else z.contiguous(memory_format=self.fmt)

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


# Without autograd, a pointwise map feeding a native average runs a few samples at a time: the map writes into
# one small reused buffer that stays in cache and the average pools it straight into its slice of the output,
# so no input-sized tensor is made. 0 turns this off.
_CHUNK_BYTES = 1 << 20

Map = Callable[[Tensor, Tensor], object]


def _chunks(
    x: Tensor, nat: _NativeMean, per_channel: bool
) -> tuple[Tensor, tuple[int, ...], torch.memory_format, int, int, int] | None:
    """How :func:`_chunked_means` and :func:`_chunked_mixed` cut ``x``; ``None`` where chunking is not used.

    Returns ``x`` viewed as rows ``(rows, per, *spatial)``, the spatial size, the memory format of the
    buffers, the number of rows, of channels per row, and of rows per chunk (about ``_CHUNK_BYTES``).
    Used on CPU for float32/float64 outside tracing and compilation (``out=`` into slices).
    """
    if (
        not _CHUNK_BYTES
        or nat.fmt is None
        or x.dtype not in (torch.float32, torch.float64)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or x.numel() == 0
    ):
        return None
    xv = x.unsqueeze(2) if nat.one_d else x
    n, c = xv.shape[:2]
    sp = tuple(xv.shape[2:])
    if nat.nd == 3 and xv.is_contiguous() and not per_channel:
        # contiguous 3-d: rows of (sample, channel), each a unit-channel volume, so chunks can be smaller
        xv = xv.reshape((n * c, 1, *sp))
        fmt, rows, per = torch.contiguous_format, n * c, 1
    else:
        fmt, rows, per = nat.fmt, n, c  # torch's avg_pool3d.out writes channels_last_3d slices wrongly: fmt
    unit = per * math.prod(sp) * x.element_size()
    return xv, sp, fmt, rows, per, min(rows, max(1, _CHUNK_BYTES // unit))


def _chunked_means(x: Tensor, nat: _NativeMean, maps: list[Map], per_channel: bool = False) -> list[Tensor] | None:
    """Native means of successive in-place maps of ``x``, chunk by chunk; ``None`` where this path is not used.

    Each map is ``f(x_chunk, buf)`` and updates ``buf`` (which holds the previous map's result); the mean is
    taken after each. ``per_channel``: a map broadcasts a ``(1, C, 1, ...)`` tensor, so chunks keep all
    channels.
    """
    plan = _chunks(x, nat, per_channel)
    if plan is None:
        return None
    xv, sp, fmt, rows, per, u = plan
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
    return [nat.unview(o.view((n, c, *nat.out))) for o in outs]


def _chunked_mixed(x: Tensor, nat: _NativeMean, alpha: float | Tensor) -> Tensor | None:
    """``avg + alpha (max - avg)`` chunk by chunk (no autograd), both pools reading a chunk while it is in cache.

    For 1-d and NCHW 2-d input: each chunk is copied into one reused channels-last buffer (where torch's
    pooling is fastest) instead of converting the whole input. ``None`` elsewhere.
    """
    plan = _chunks(x, nat, isinstance(alpha, Tensor))
    if plan is None or nat.nd != 2 or plan[0].is_contiguous(memory_format=plan[2]):
        return None  # measured: a win only where the layout changes (1-d, 2-d NCHW); 3-d pools lose on chunks
    xv, sp, fmt, rows, per, u = plan
    n, c = x.shape[:2]
    a = nat.param(alpha) if isinstance(alpha, Tensor) and per == c else alpha
    buf = torch.empty((u, per, *sp), dtype=x.dtype, device=x.device, memory_format=fmt)
    out = torch.empty((rows, per, *nat.out), dtype=x.dtype, device=x.device, memory_format=fmt)
    k, s, p, ceil = nat.args[:4]
    mp = native("max_pool", nat.nd)
    op = getattr(torch.ops.aten, f"avg_pool{nat.nd}d").out
    for r0 in range(0, rows, u):
        xc = xv[r0 : r0 + u]
        src = buf[: xc.shape[0]].copy_(xc)
        o = out[r0 : r0 + u]
        op(src, *nat.args, out=o)
        o.lerp_(mp(src, k, s, p, 1, ceil), a)
    return nat.unview(out.view((n, c, *nat.out)))


def _graph_grads(g: Tensor, wrt: list[Tensor], plain: Callable[[], Tensor]) -> tuple[Tensor | None, ...]:
    """Gradients of a differentiable recomputation ``plain()`` of a forward, with a graph (for double backward).

    The custom backwards below run in place and keep no graph; when autograd asks for one (``create_graph=True``
    makes the backward run with grad mode on), they hand over to this, which costs a plain autograd pass.
    """
    with torch.enable_grad():
        y = plain()
    return torch.autograd.grad(y, wrt, g, create_graph=True, allow_unused=True)


class _SoftPoolFn(torch.autograd.Function):
    """SoftPool ``y = avg(z e^z) / avg(e^z)`` from its precomputed means, with an analytic backward.

    ``dy_w / dz_i = e_i (1 + z_i - y_w) / sum_w e`` for every window ``w`` holding cell ``i``, so the input
    gradient is ``e ((1 + z) A - B)`` with ``A = mean_backward(g / den)`` and ``B = mean_backward(g y / den)``
    (overlapping windows included). Saves ``z``, ``e`` (as autograd would) and two output-sized tensors.
    """

    @staticmethod
    def forward(ctx, z: Tensor, e: Tensor, num: Tensor, den: Tensor, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, e, den, num)  # not y, which the caller may change in place (an in-place ReLU)
        ctx.nat = nat
        return num / den

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        z, e, den, num = ctx.saved_tensors
        nat: _NativeMean = ctx.nat
        if torch.is_grad_enabled():
            (gz,) = _graph_grads(g, [z], lambda: nat.mean(z * torch.exp(z)) / nat.mean(torch.exp(z)))
            return gz, None, None, None, None
        gd = g / den
        a = nat.mean_backward(gd, z)
        b = nat.mean_backward(gd.mul_(num).div_(den), z)  # g y / den
        return b.neg_().add_(a).addcmul_(z, a).mul_(e), None, None, None, None


def _sum_to(t: Tensor, like: Tensor) -> Tensor:
    """``t`` summed over the dims that ``like`` broadcasts (a parameter's gradient)."""
    if like.ndim == 0:
        return t.sum()
    dims = [i for i, (a, b) in enumerate(zip(t.shape, like.shape)) if b == 1 and a != 1]
    return (t.sum(dims, keepdim=True) if dims else t).view(like.shape)


class _GemFn(torch.autograd.Function):
    """GeM ``y = m^(1/p)``, ``m = mean(clamp(z, eps)^p)``, with an analytic backward.

    ``dy/dz = mean_backward(g y / m) clamp(z, eps)^(p-1) [z >= eps]`` (overlapping windows included), and for a
    tensor ``p`` that requires grad ``dy/dp = y (mean(t log c) / m - log(m) / p) / p`` with ``c = clamp(z, eps)``,
    ``t = c^p``. Saves ``z`` and two output-sized tensors.
    """

    @staticmethod
    def forward(ctx, z: Tensor, p: float | Tensor, eps: float, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        m = nat.mean(z.clamp(min=eps).pow_(p))
        y = _root_(m.clone(), p)
        ctx.save_for_backward(z, m, *((p,) if isinstance(p, Tensor) else ()))  # not y: it may change in place
        ctx.p, ctx.eps, ctx.nat = (None if isinstance(p, Tensor) else p), eps, nat
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        z, m, *rest = ctx.saved_tensors
        p = rest[0] if rest else ctx.p
        nat: _NativeMean = ctx.nat
        eps = ctx.eps
        if torch.is_grad_enabled():
            wrt = [t for t, need in zip((z, p), ctx.needs_input_grad[:2]) if need and isinstance(t, Tensor)]
            grads = iter(_graph_grads(g, wrt, lambda: _safe_root(nat.mean(z.clamp(min=eps) ** p), p)))
            return (next(grads) if ctx.needs_input_grad[0] else None,
                    next(grads) if ctx.needs_input_grad[1] and isinstance(p, Tensor) else None, None, None)
        pos = m > 0
        # dy/dm = m^(1/p - 1) / p; written as a power, not y / m, so an infinite window gives 0 (not inf / inf)
        gy = torch.where(pos, g * torch.where(pos, m, 1.0) ** (1.0 / p - 1.0), 0.0)
        gz = gp = None
        if ctx.needs_input_grad[0]:
            a = nat.mean_backward(gy, z)
            if isinstance(p, float) and p > 1.0:
                # threshold keeps z where z > the float below eps, i.e. z >= eps, and 0^(p-1) = 0 masks the rest
                below = torch.nextafter(torch.tensor(eps, dtype=z.dtype), torch.tensor(-math.inf, dtype=z.dtype))
                w = F.threshold(z, below.item(), 0.0)
                if p != 2.0:
                    w = w.pow_(p - 1.0)
            else:
                w = z.clamp(min=eps).pow_(p - 1.0).masked_fill_(z < eps, 0.0)
            gz = a.mul_(w)
        if ctx.needs_input_grad[1]:
            c = z.clamp(min=eps)
            u = nat.mean(c.pow(p).mul_(c.log_()))
            logm = torch.where(pos, m, 1.0).log()
            gp = _sum_to(torch.where(pos, gy * (u - m * logm / p) / p, 0.0), p)
        return gz, gp, None, None


class _LpFn(torch.autograd.Function):
    """Power sum ``y = s^(1/p)``, ``s = scale * mean(|z|^p)`` from its precomputed ``s``, analytic backward.

    ``dy/dz = scale * mean_backward(g y / s) |z|^(p-1) sign(z)``, 0 for windows with ``s = 0``. Saves ``z`` and
    two output-sized tensors.
    """

    @staticmethod
    def forward(ctx, z: Tensor, s: Tensor, p: float, scale: float, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        y = s.clone() if p == 1.0 else _root_(s.clone(), p)
        ctx.save_for_backward(z, s)  # not y, which the caller may change in place (an in-place ReLU)
        ctx.p, ctx.scale, ctx.nat = p, scale, nat
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        z, s = ctx.saved_tensors
        p, nat = ctx.p, ctx.nat
        if torch.is_grad_enabled():

            def plain() -> Tensor:
                total = nat.mean(z * z if p == 2.0 else z.abs() ** p) * ctx.scale
                return total if p == 1.0 else _safe_root(total, p)

            (gz,) = _graph_grads(g, [z], plain)
            return gz, None, None, None, None
        if p == 1.0:
            gs = g * ctx.scale
        else:
            pos = s > 0
            # y / s written as a power, so an infinite window gives 0 (not inf / inf), as the plain formula does
            gs = torch.where(pos, g * torch.where(pos, s, 1.0) ** (1.0 / p - 1.0), 0.0).mul_(ctx.scale)
        a = nat.mean_backward(gs, z)
        if p == 2.0:
            w = z
        elif p == 1.0:
            w = z.sign()
        elif p > 2.0:
            w = z.abs().pow_(p - 2.0).mul_(z)
        else:
            w = z.abs().pow_(p - 1.0).mul_(z.sign())
        return a.mul_(w), None, None, None, None


class _LseFn(torch.autograd.Function):
    """Log-mean-exp ``y = log(mean) / b`` from its precomputed ``mean`` and ``e = exp(b z)``, analytic backward.

    ``dy/dz = e * mean_backward(g / mean)`` (``b`` cancels; overlapping windows and counted zero padding
    included, as ``mean`` holds the padding's share). Saves ``z``, ``e`` (as autograd would) and ``mean``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, e: Tensor, mean: Tensor, b: float | Tensor, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        y = mean.log()
        if not (isinstance(b, float) and b == 1.0):
            y = y.div_(b)
        ctx.save_for_backward(z, e, mean)
        ctx.nat, ctx.b = nat, b
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        z, e, mean = ctx.saved_tensors
        if torch.is_grad_enabled():
            b, nat = ctx.b, ctx.nat
            pad = (mean - nat.mean(e)).detach()  # the counted zero padding's share (a constant)
            (gz,) = _graph_grads(g, [z], lambda: torch.log(nat.mean(torch.exp(z * b)) + pad) / b)
            return gz, None, None, None, None
        return ctx.nat.mean_backward(g / mean, z).mul_(e), None, None, None, None


class _LehmerFn(torch.autograd.Function):
    """``y = avg(a^2) / avg(a)`` with ``a = relu(z)`` (0 where a window has no positive cell), analytic backward.

    The expectation of stochastic pooling. ``dy_w / dz_i = (2 a_i - y_w) / sum_w a`` where ``z_i > 0`` (else 0),
    so the input gradient is ``(2 z A - B) [z > 0]`` with ``A = mean_backward(g / den)`` and
    ``B = mean_backward(g y / den)``, overlapping windows included. Saves ``z`` and two output-sized tensors.
    """

    @staticmethod
    def forward(ctx, z: Tensor, nat: _NativeMean) -> Tensor:  # type: ignore[override]
        a = torch.relu(z)
        den = nat.mean(a)
        num = nat.mean(a.mul_(a))
        y = num / den.clamp_min(torch.finfo(den.dtype).tiny)  # num = 0 where den = 0
        ctx.save_for_backward(z, den, num)  # not y, which the caller may change in place (an in-place ReLU)
        ctx.nat = nat
        return y

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
        y = num / den.clamp_min(torch.finfo(den.dtype).tiny)
        b = nat.mean_backward(-gd * y, z)
        a = nat.mean_backward(gd.mul_(2.0), z)
        return b.addcmul_(z, a).masked_fill_(z <= 0, 0.0), None


def _lehmer_relu(x: Tensor, win: Window | tuple[int, ...], padding_mode: str) -> Tensor:
    """``avg(a^2) / avg(a)`` over each window with ``a = relu(x)``, 0 where a window has no positive cell.

    The expectation of stochastic pooling (its eval mode). Padding follows :func:`window_mean` (zeros count
    as cells of value 0, which change neither sum). Under autograd, with native geometry, a custom backward.
    """
    grad = needs_grad(x)
    nat = _NativeMean.of(x, win, padding_mode)
    if grad and nat is not None:
        return nat.unview(_LehmerFn.apply(nat.view(x), nat))
    tiny = torch.finfo(x.dtype).tiny
    means = None if grad or nat is None else _chunked_means(
        x, nat, [lambda xc, b: torch.clamp(xc, min=0.0, out=b), lambda xc, b: b.mul_(b)]
    )
    if means is not None:
        den, num = means
        return num.div_(den.clamp_min_(tiny))  # num = 0 where den = 0
    a = torch.relu(x)  # zero gradient at 0 too, so an all-zero window has zero gradient
    if not grad:  # a is not needed after its mean: square it in place (one full-size buffer)
        den = window_mean(a, win, padding_mode)
        num = window_mean(a.mul_(a), win, padding_mode)
        return num.div_(den.clamp_min_(tiny))  # num = 0 where den = 0
    num = window_mean(a * a, win, padding_mode)
    den = window_mean(a, win, padding_mode)
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, 1.0), 0.0)


# ---------------------------------------------------------------- statistics


def _power_map(p: float) -> Map:
    """``buf = |x|^p`` for :func:`_chunked_means`."""
    if p == 2.0:
        return lambda xc, b: torch.mul(xc, xc, out=b)
    if p % 2 == 0:
        return lambda xc, b: torch.pow(xc, p, out=b)
    if p == 1.0:
        return lambda xc, b: torch.abs(xc, out=b)
    return lambda xc, b: torch.abs(xc, out=b).pow_(p)


def lp_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    p: float = 2.0,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Power sum ``(sum |x|^p)^(1/p)`` over each window (torch's LPPool semantics).

    Equal to ``torch.nn.functional.lp_pool{1,2,3}d`` on non-negative input,
    ``ceil_mode`` included (torch scales a window cut by the input edge by
    ``kernel cells / cells inside``; so does this). Negative input uses ``|x|``,
    so the result is a norm of the window (torch's op is NaN there for odd ``p``).
    ``p = inf`` is the maximum of ``|x|``. Zero windows give 0 with a zero gradient.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        p: the power, ``p >= 1`` (``math.inf`` allowed).
        padding_mode: ``"zeros"`` (zeros add nothing to the sum), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global); each window's own cell count scales the mean.

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> lp_pool(torch.tensor([[[3.0, 4.0, 0.0, 0.0]]]), 2, p=2.0)
        tensor([[[5., 0.]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    p = _check_float(p, "p", 1.0, math.inf)
    if math.isinf(p):
        return max_pool(x.abs(), kernel_size, stride, padding, 1, ceil_mode,  # type: ignore[return-value]
                        padding_mode=padding_mode, output_size=output_size)
    xw = _work(x)
    grad = needs_grad(x)
    nat = None
    if isinstance(win, Window):
        nat = _NativeMean.of(x, win, padding_mode, True, None if win.ceil_mode else 1)
        scale = math.prod(win.kernel) if win.ceil_mode else 1  # torch scales windows cut by the edge
    if nat is not None and grad:
        z = nat.view(xw)
        with torch.no_grad():
            s = nat.mean(_power_map(p)(z, torch.empty_like(z)))  # type: ignore[arg-type]
            if scale != 1:
                s.mul_(scale)
        return nat.unview(_LpFn.apply(z, s, p, float(scale), nat)).to(x.dtype)
    sums = None if nat is None else _chunked_means(xw, nat, [_power_map(p)])
    if sums is not None:
        s = sums[0].mul_(scale) if scale != 1 else sums[0]
        return (s if p == 1.0 else _root_(s, p)).to(x.dtype)
    if p == 2.0:
        t = xw * xw
    elif p % 2 == 0:
        t = xw**p
    elif p == 1.0:
        t = xw.abs()
    else:
        t = xw.abs() ** p if grad else xw.abs().pow_(p)
    if isinstance(win, Window):
        if win.ceil_mode:  # torch scales windows cut by the edge: kernel cells * their mean
            s = window_mean(t, win, padding_mode) * math.prod(win.kernel)
        else:
            s = window_mean(t, win, padding_mode, divisor_override=1)
    else:
        s = window_mean(t, win) * _sum_count(x, win)
    if p == 1.0:
        y = s
    else:
        y = _safe_root(s, p) if grad else _root_(s, p)
    return y.to(x.dtype)


def gem_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    p: float | Tensor = 3.0,
    eps: float = 1e-6,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Generalized mean ``(mean clamp(x, eps)^p)^(1/p)`` over each window.

    ``p = 1`` is the average (of ``clamp(x, eps)``), ``p -> inf`` the maximum.
    ``p`` may be a float or a tensor of shape ``()`` or ``(C,)`` (one per channel),
    learnable. Zero padding adds cells of value 0 (counted with ``count_include_pad``).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the mean.
        p: the power, ``> 0``; float or tensor ``()`` / ``(C,)``.
        eps: lower clamp of the input, ``> 0``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global GeM, as in image retrieval).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> gem_pool(torch.tensor([[[1.0, 3.0]]]), output_size=1, p=1.0)
        tensor([[[2.]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    pp = _channel_param(p, x, "p")
    if isinstance(pp, float) and not pp > 0:
        raise ValueError(f"p must be > 0, got {p!r}")
    eps = _check_float(eps, "eps", 0.0)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    grad = needs_grad(x, pp)
    xw = _work(x)
    nat = _NativeMean.of(x, win, padding_mode, count_include_pad)
    if grad and nat is not None and not transformed(pp):
        return nat.unview(_GemFn.apply(nat.view(xw), nat.param(pp), eps, nat)).to(x.dtype)
    if nat is not None:
        pv = nat.param(pp)
        means = _chunked_means(
            xw, nat, [lambda xc, b: torch.clamp(xc, min=eps, out=b).pow_(pv)], per_channel=isinstance(pp, Tensor)
        )
        if means is not None:
            return _root_(means[0], pp).to(x.dtype)
    # without autograd the power runs in place on the clamped copy: one full-size buffer instead of two
    t = xw.clamp(min=eps) ** pp if grad else xw.clamp(min=eps).pow_(pp)
    m = window_mean(t, win, padding_mode, count_include_pad) if isinstance(win, Window) else window_mean(t, win)
    return (_safe_root(m, pp) if grad else _root_(m, pp)).to(x.dtype)


def lse_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    beta: float | Tensor = 1.0,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Log-mean-exp ``(1/beta) log mean exp(beta x)`` over each window.

    A smooth maximum: ``beta -> 0`` gives the average, ``beta -> inf`` the maximum.
    Zero padding adds cells of value 0, counted with ``count_include_pad`` (as
    avg, so small ``beta`` gives avg).

    Two exact paths. First the plain formula (one exp, one native average); it
    is kept when every window mean is finite and above ``tiny / eps`` (one
    reduction over the output checks this), which makes it exact to rounding.
    Otherwise (large ``beta |x|``) ``m + (1/beta) log mean exp(beta (x - m))`` with
    ``m`` each window's own maximum, so no exponential overflows and each window's
    largest term is 1; overlapping windows are split into non-overlapping phases
    (``prod(ceil(kernel / stride))`` native passes). Adaptive windows that do not
    divide the input evenly are gathered there (they overlap by at most one cell).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the mean.
        beta: inverse temperature ``> 0``; float or tensor ``()`` / ``(C,)``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> lse_pool(torch.tensor([[[0.0, 100.0]]]), 2, beta=50.0)
        tensor([[[99.9861]]])
    """
    win = _as_local(x, _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size))
    b = _channel_param(beta, x, "beta")
    if isinstance(b, float) and not b > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    xw = _work(x)
    grad = needs_grad(x, b)
    unit = isinstance(b, float) and b == 1.0
    # fast path, the plain formula: exact whenever no exp overflows and no window mean nears underflow
    nat = _NativeMean.of(x, win, padding_mode, count_include_pad)
    # counted zero cells add exp(0) = 1 each
    counted = isinstance(win, Window) and padding_mode == "zeros" and count_include_pad and win.padded
    frac = _pad_fraction(xw, win) if counted else None  # type: ignore[arg-type]
    if grad and nat is not None and not needs_grad(b):
        z, bv = nat.view(xw), nat.param(b)
        with torch.no_grad():
            e = torch.exp(z) if unit else torch.exp(z * bv)
            mean = nat.mean(e) if frac is None else nat.mean(e).add_(nat.view(frac))
        if _in_range(mean):
            return nat.unview(_LseFn.apply(z, e, mean, bv, nat)).to(x.dtype)
        return _lse_stable(xw, b, win, padding_mode, count_include_pad).to(x.dtype)
    means = None
    if nat is not None and not grad:
        bv = nat.param(b)
        f: Map = (lambda xc, t: torch.exp(xc, out=t)) if unit else (lambda xc, t: torch.mul(xc, bv, out=t).exp_())
        means = _chunked_means(xw, nat, [f], per_channel=isinstance(b, Tensor))
    if means is not None:
        mean = means[0]
    else:
        if unit:
            e = torch.exp(xw)
        else:
            e = torch.exp(xw * b) if grad else (xw * b).exp_()
        mean = window_mean(e, win, padding_mode, count_include_pad) if isinstance(win, Window) else window_mean(e, win)
    if frac is not None:
        mean = mean + frac
    if _in_range(mean):
        if grad:
            y = torch.log(mean) if unit else torch.log(mean) / b
        else:
            y = mean.log_() if unit else mean.log_().div_(b)
    else:
        y = _lse_stable(xw, b, win, padding_mode, count_include_pad)
    return y.to(x.dtype)


def _pad_fraction(x: Tensor, win: Window) -> Tensor:
    """Share of zero-padding cells in each window, ``(1, 1, *out)``."""
    return 1.0 - window_mean(x.new_ones((1, 1, *win.size)), win, "zeros", True)


def _flat(t: Tensor) -> Tensor:
    """``t`` as a 1-D view of its memory when it is dense in some order of its dims, else ``t``.

    torch's full reductions run several times slower over channels_last tensors than over the same
    memory seen as one flat run.
    """
    if t.is_contiguous():
        return t.view(-1)
    strides = t.stride()
    p = t.permute(sorted(range(t.ndim), key=lambda i: -strides[i]))
    return p.view(-1) if p.is_contiguous() else t


def _in_range(*ts: Tensor) -> bool:
    """All finite and the first at least ``tiny / eps`` (so cells lost to underflow are below rounding)."""
    if ts[0].numel() == 0:
        return True  # an empty batch: nothing can overflow
    finfo = torch.finfo(ts[0].dtype)
    lo, hi = torch.aminmax(_flat(ts[0]))
    ok = (lo >= finfo.tiny / finfo.eps) & (hi < math.inf)
    for t in ts[1:]:
        lo, hi = torch.aminmax(_flat(t))  # NaN propagates into both and fails the test
        ok = ok & (lo > -math.inf) & (hi < math.inf)
    return bool(ok)


def _lse_stable(
    xw: Tensor, b: float | Tensor, win: Window | tuple[int, ...], padding_mode: str, count_include_pad: bool
) -> Tensor:
    """Log-mean-exp shifted by each window's own maximum (overflow- and underflow-free)."""
    if isinstance(win, Window):
        _, xmax, mask = _padded(xw, win, padding_mode, count_include_pad)

        def terms(xs: Tensor, m: Tensor) -> list[Tensor]:
            # uncounted cells are -inf in xmax: exp gives 0. clamp: cells between windows may exceed m
            return [torch.exp((b * (xs - m)).clamp_max(0.0))]

        (mean,), m = _phase_reduce(xmax, win, terms)
        if mask is not None:
            mean = mean / crop(_mean_valid(mask, win), win.out)
        return m + torch.log(mean) / b
    # uneven adaptive windows overlap by at most one cell: gathering them copies about the input once
    w = adaptive_windows(xw, win, -torch.inf).flatten(-len(win))
    b_w = b.unsqueeze(-1) if isinstance(b, Tensor) else b
    return (torch.logsumexp(b_w * w, -1) - torch.log(_sum_count(xw, win))) / b


def softpool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """SoftPool (Stergiou et al., 2021): ``sum softmax(x)_i x_i`` over each window.

    Zero padding cells carry no weight (as max pooling ignores them), so there is
    no ``count_include_pad``: the divisor cancels in the ratio.

    Two exact paths. First the plain formula ``avg(x e^x) / avg(e^x)``; it is kept
    when every average is finite and the denominators are above ``tiny / eps``.
    Otherwise ``avg(x e^(x - m)) / avg(e^(x - m))`` with ``m`` each window's own
    maximum (the shift cancels in the ratio), so nothing overflows and each
    denominator is at least ``1 / cells``; overlapping windows are split into
    non-overlapping phases. Adaptive windows that do not divide the input evenly
    are gathered there (they overlap by at most one cell).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        padding_mode: ``"zeros"`` (ignored cells), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> softpool(torch.tensor([[[0.0, 1e4]]]), 2)
        tensor([[[10000.]]])
    """
    win = _as_local(x, _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size))
    xw = _work(x)
    grad = needs_grad(x)
    nat = _NativeMean.of(x, win, padding_mode)
    means = None if grad or nat is None else _chunked_means(
        xw, nat, [lambda xc, b: torch.exp(xc, out=b), lambda xc, b: b.mul_(xc)]
    )
    if means is not None:
        den, num = means
        y = num.div_(den) if _in_range(den, num) else _softpool_stable(xw, win, padding_mode)
        return y.to(x.dtype)
    if grad and nat is not None:
        z = nat.view(xw)
        with torch.no_grad():
            e = torch.exp(z)
            den = nat.mean(e)
            num = nat.mean(z * e)
        if _in_range(den, num):
            return nat.unview(_SoftPoolFn.apply(z, e, num, den, nat)).to(x.dtype)
        return _softpool_stable(xw, win, padding_mode).to(x.dtype)
    mode = (padding_mode,) if isinstance(win, Window) else ()
    # fast path, the plain formula: exact whenever no exp overflows and no denominator nears underflow
    e = torch.exp(xw)
    den = window_mean(e, win, *mode)
    # without autograd e is not needed after its mean: x e^x overwrites it (one full-size buffer, not two)
    num = window_mean(xw * e if grad else e.mul_(xw), win, *mode)
    if not _in_range(den, num):
        y = _softpool_stable(xw, win, padding_mode)
    else:
        y = num / den if grad else num.div_(den)
    return y.to(x.dtype)


def _softpool_stable(xw: Tensor, win: Window | tuple[int, ...], padding_mode: str) -> Tensor:
    """SoftPool with weights shifted by each window's own maximum (overflow- and underflow-free)."""
    if isinstance(win, Window):
        _, xmax, _ = _padded(xw, win, padding_mode, False)

        def terms(xs: Tensor, m: Tensor) -> list[Tensor]:
            e = torch.exp((xs - m).clamp_max(0.0))  # ignored cells are -inf: weight 0
            return [torch.where(e > 0, xs, 0.0) * e, e]

        (num, den), _ = _phase_reduce(xmax, win, terms)
        return num / den
    w = adaptive_windows(xw, win, -torch.inf).flatten(-len(win))  # uneven adaptive windows: see _lse_stable
    return (torch.softmax(w, -1) * w.masked_fill(w == -torch.inf, 0.0)).sum(-1)


def mixed_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    alpha: float | Tensor = 0.5,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Mixed pooling ``alpha max + (1 - alpha) avg`` over each window (Yu et al., 2014; Lee et al., 2016).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the average (the max ignores it).
        alpha: weight of the max in ``[0, 1]``; float or tensor ``()`` / ``(C,)``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> mixed_pool(torch.tensor([[[1.0, 3.0]]]), 2, alpha=0.25)
        tensor([[[2.2500]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    a = _channel_param(alpha, x, "alpha", 0.0)
    if isinstance(a, float) and not a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(a, Tensor):
        a = a.to(x.dtype)
    grad = needs_grad(x, a)
    nat = _NativeMean.of(x, win, padding_mode, count_include_pad) if grad else None
    if nat is not None and isinstance(win, Window):
        # torch's own max and avg (1-d ones in 1-d: faster with a backward than the 2-d ops), and contiguous
        # in 3-d, where torch's CPU pooling and its backward are several times slower on channels_last_3d
        z = x.contiguous() if win.dims == 3 else x
        k, s, p = win.kernel, win.stride, [b for b, _ in win.pad]
        mx = native("max_pool", win.dims)(z, k, s, p, 1, win.ceil_mode)
        return torch.lerp(native("avg_pool", win.dims)(z, k, s, p, win.ceil_mode, count_include_pad), mx, a)
    if not grad:
        nat = _NativeMean.of(x, win, padding_mode, count_include_pad)
        y = None if nat is None else _chunked_mixed(x, nat, a)
        if y is not None:
            return y
    mx, avg = _max_and_avg(x, win, padding_mode, count_include_pad)
    # lerp: avg + alpha (max - avg) in one pass
    return torch.lerp(avg, mx, a) if grad else avg.lerp_(mx, a)


def _max_and_avg(
    x: Tensor, win: Window | tuple[int, ...], padding_mode: str, count_include_pad: bool
) -> tuple[Tensor, Tensor]:
    if not isinstance(win, Window):
        return native("adaptive_max_pool", x.ndim - 2)(x, win), window_mean(x, win)
    mx = window_max(x, win, padding_mode)
    assert isinstance(mx, Tensor)
    return mx, window_mean(x, win, padding_mode, count_include_pad)


def gated_pool(
    x: Tensor,
    weight: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Gated max-average pooling (Lee, Gallagher & Tu, AISTATS 2016).

    ``a max + (1 - a) avg`` with a gate ``a = sigmoid(w . window)`` per window,
    ``w`` a learned kernel of the window's size: one convolution with stride =
    pooling stride over the padded input (grouped per channel). ``weight`` is
    ``(C, 1, *kernel)`` (one gate kernel per channel) or ``(1, 1, *kernel)``
    (one per layer, as in the paper's "responsive" gate). The adaptive/global
    form, whose windows have no fixed size, gates with ``sigmoid(w * window mean)``
    and a scalar ``w`` per channel: ``weight`` of shape ``(C,)`` or ``(1,)``.

    Args:
        x: input ``(N, C, *spatial)``.
        weight: gate kernel, see above.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the average.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> gated_pool(torch.tensor([[[1.0, 3.0]]]), torch.zeros(1, 1, 2), 2)  # gate 0.5
        tensor([[[2.5000]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a tensor, got {type(weight).__name__}")
    c = x.shape[1]
    mx, avg = _max_and_avg(x, win, padding_mode, count_include_pad)
    w = weight.to(x.dtype)
    if isinstance(win, Window):
        if tuple(w.shape) not in ((c, 1, *win.kernel), (1, 1, *win.kernel)):
            raise ValueError(
                f"weight must have shape (C, 1, *kernel) = {(c, 1, *win.kernel)} or {(1, 1, *win.kernel)}, "
                f"got {tuple(w.shape)}"
            )
        xp = pad(x, win, padding_mode, 0.0, extra=True)
        conv = getattr(F, f"conv{win.dims}d")
        z = crop(conv(xp, w.expand((c, 1, *win.kernel)), None, win.stride, 0, 1, c), win.out)
    else:
        if tuple(w.shape) not in ((c,), (1,)):
            raise ValueError(
                f"weight must have shape (C,) = ({c},) or (1,) for the adaptive form, got {tuple(w.shape)}"
            )
        z = w.view((1, -1) + (1,) * (x.ndim - 2)) * avg
    if needs_grad(x, weight):
        return avg + torch.sigmoid(z) * (mx - avg)
    return mx.sub_(avg).mul_(z.sigmoid_()).add_(avg)

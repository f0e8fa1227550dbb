"""Anti-aliased pooling: binomial blur filters, blurpool and maxblur, in 1-D, 2-D and 3-D.

Subsampling a signal that was not low-pass filtered aliases: a one-cell shift of
the input changes the output instead of moving it. The remedy (Zhang, "Making
Convolutional Networks Shift-Invariant Again", ICML 2019) blurs with a small
binomial filter before subsampling.

How it runs on CPU (timings in BENCHMARKS.md, "Shift-robust"):

- Blur of contiguous (NCHW) maps up to moderate size: one product with a
  ``(L_out, L)`` band matrix per spatial axis, a plain GEMM in which the padded
  taps of every padding mode are folded exactly; torch's NCHW depthwise
  convolution runs far slower.
- Blur otherwise (channels-last, large maps, GPU): one depthwise convolution in
  the input's layout with the convolution's own zero padding on the unpadded
  input (a padded copy costs as much as the convolution); the few edge outputs
  that reach a reflected, replicated or circular border are recomputed exactly
  from thin strips.
- Maxblur of NCHW or channels-last CPU input: one chunked pass (:class:`_MaxBlur`)
  that computes the dense max and the blur chunk by chunk in reused buffers, so
  the full-size dense max is never allocated, with a backward that recomputes
  each chunk. Elsewhere the dense max is a running maximum of shifted views.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._fast import custom_backward, transformed
from ._window import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_input,
    check_padding_mode,
    ntuple,
    pad,
    resolve,
)
from .order import max_pool

__all__ = ["binomial_filter", "blur", "blur_pool", "check_mode", "max_blur_pool"]


def check_mode(value: object, name: str) -> str:
    """Validate a padding mode given under the argument name ``name``."""
    if value not in PADDING_MODES:
        raise ValueError(f"{name} must be one of {PADDING_MODES}, got {value!r}")
    return str(value)


def binomial_filter(
    size: int, dims: int = 1, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Normalized binomial (Pascal) filter of ``size`` taps, as an outer product over ``dims`` dims.

    ``size=1`` is the identity, ``2`` the box ``[1, 1] / 2``, ``3`` is ``[1, 2, 1] / 4``, and so on.

    Args:
        size: number of taps per dim, >= 1.
        dims: number of dims of the returned kernel (1 to 3).
        dtype: dtype of the result (default float32).
        device: device of the result.

    Shape:
        ``(size,) * dims``; the entries sum to 1.

    Example:
        >>> binomial_filter(3)
        tensor([0.2500, 0.5000, 0.2500])
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"filt (the binomial filter size) must be an int >= 1, got {size!r}")
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims!r}")
    taps = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    taps = taps / taps.sum()
    kernel = taps
    for _ in range(dims - 1):
        kernel = kernel[..., None] * taps
    return kernel.to(dtype=dtype or torch.float32, device=device)


def _channels_last(d: int) -> torch.memory_format | None:
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(d)


def blur(
    x: Tensor,
    filt: int = 3,
    stride: IntOrTuple = 1,
    padding_mode: str = "reflect",
) -> Tensor:
    """Binomial blur of size ``filt`` per spatial dim, sampled every ``stride`` cells from index 0.

    The input is padded by ``(filt - 1) // 2`` cells before and ``filt // 2`` after
    in each dim (antialiased-cnns' split for even sizes), so the blurred map keeps
    the input size before subsampling.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        filt: binomial filter size >= 1 (1 = no blur, 2 = box, 3 = ``[1, 2, 1]``, ...).
        stride: subsampling factor (int or one per dim).
        padding_mode: ``"reflect"``, ``"replicate"``, ``"zeros"`` or ``"circular"``.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> blur(torch.tensor([[[0.0, 0.0, 4.0, 0.0, 0.0]]]), 3)
        tensor([[[0., 1., 2., 1., 0.]]])
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    s = ntuple(stride, d, "stride")
    if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
        raise ValueError(f"filt (the binomial filter size) must be an int >= 1, got {filt!r}")
    if filt == 1:
        index = (slice(None), slice(None), *(slice(None, None, si) for si in s))
        return x[index]
    before, after = (filt - 1) // 2, filt // 2
    size = x.shape[2:]
    if padding_mode == "reflect" and after >= min(size):
        raise ValueError(
            f"padding_mode='reflect' needs filt // 2 < every input size, got filt={filt} for size {tuple(size)}; "
            "use a smaller filt or padding_mode 'replicate', 'zeros' or 'circular'"
        )
    wraps = padding_mode == "circular" and after > min(size)  # the filter wraps around more than once
    work = x
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        work = x.float()  # CPU depthwise convs lack fast (or any) half kernels
    if _use_band(work):
        return _blur_band(work, filt, s, padding_mode).to(x.dtype)
    c = x.shape[1]
    kernel = binomial_filter(filt, d, dtype=work.dtype, device=work.device)
    weight = kernel.expand((c, 1, *kernel.shape)).contiguous()
    geo = _BlurGeometry(tuple(int(n) for n in x.shape[2:]), s, filt, padding_mode)
    if wraps:
        padded = work
        for i, n in enumerate(size):  # circular padding of any width: indices modulo the size
            idx = torch.arange(-before, int(n) + after, device=work.device) % int(n)
            padded = padded.index_select(2 + i, idx)
        y = getattr(F, f"conv{d}d")(padded, weight, stride=s, groups=c)
    elif not geo.native_ok:
        pads = [before, after] * d
        padded = F.pad(work, pads) if padding_mode == "zeros" else F.pad(work, pads, mode=padding_mode)
        y = getattr(F, f"conv{d}d")(padded, weight, stride=s, groups=c)
    else:
        track = custom_backward(work)  # a torch.func transform takes the plain ops below
        nchw = track and work.device.type == "cpu" and d == 2 and work.is_contiguous() and work.numel() >= _TO_CL_MIN
        if nchw:
            # the NCHW depthwise convolution's backward is several times slower on CPU than channels-last's;
            # the layout copies cost less (forward alone they cost about what they save, so only with grad)
            work = work.contiguous(memory_format=torch.channels_last)
        if track:
            y = _Blur.apply(work, weight, geo)
        else:
            y = _blur_forward(work, weight, geo)
        if nchw:
            y = y.contiguous()
    return y.to(x.dtype)


#: NCHW inputs needing a gradient with at least this many elements are blurred in channels-last
_TO_CL_MIN = 1 << 16

#: largest spatial size blurred by band matrices (forward only, and with a backward pass, where the
#: convolution's backward is slower still)
_BAND_MAX = 128
_BAND_MAX_GRAD = 256


def _use_band(x: Tensor) -> bool:
    """Whether to blur ``x`` by band-matrix products: contiguous CPU input of moderate size.

    On CPU a depthwise convolution in NCHW runs far below the machine's speed, while
    a product with a ``(L_out, L)`` band matrix per axis is a plain GEMM (exact for
    every padding mode: the padded taps fold into the matrix); its cost grows with
    ``L`` per output, so large maps keep the convolution.
    """
    return (
        x.device.type == "cpu"
        and x.is_contiguous()
        and max(x.shape[2:]) <= (_BAND_MAX_GRAD if torch.is_grad_enabled() and x.requires_grad else _BAND_MAX)
        and x.numel() > 0
    )


@functools.lru_cache(maxsize=256)
def _band(n: int, stride: int, filt: int, mode: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(ceil(n / stride), n)`` matrix of the 1-D blur with padding ``mode``: row ``j`` holds output ``j``'s taps."""
    taps = [math.comb(filt - 1, k) / 2 ** (filt - 1) for k in range(filt)]
    before = (filt - 1) // 2
    m = -(-n // stride)
    rows = [[0.0] * n for _ in range(m)]
    for j in range(m):
        for a, w in enumerate(taps):
            i = j * stride - before + a
            if not 0 <= i < n:
                if mode == "zeros":
                    continue
                if mode == "reflect":
                    i = -i if i < 0 else 2 * (n - 1) - i
                elif mode == "replicate":
                    i = min(max(i, 0), n - 1)
                else:
                    i %= n
            rows[j][i] += w
    with torch.inference_mode(False):  # cached: a matrix made under inference_mode could not be saved for backward
        return torch.tensor(rows, dtype=torch.float64).to(dtype=dtype, device=device)


def _blur_band(x: Tensor, filt: int, stride: tuple[int, ...], mode: str) -> Tensor:
    """The blur as one matrix product per spatial axis (``x`` contiguous); autograd's backward is products too."""
    y = x
    for ax in reversed(range(2, x.ndim)):  # last axis first: one GEMM over all rows
        n = y.shape[ax]
        mat = _band(n, stride[ax - 2], filt, mode, x.dtype, x.device)
        if ax == y.ndim - 1:
            y = y @ mat.t()
        else:
            shape = list(y.shape)
            lead = math.prod(shape[:ax])
            y = (mat @ y.reshape(lead, n, -1)).view(*shape[:ax], mat.shape[0], *shape[ax + 1 :])
    return y


class _BlurGeometry:
    """Where the blur's padded borders matter: the native zero-padded conv is exact except on a few edge outputs.

    The padded input would be a full copy (as costly as the convolution itself on
    CPU), so the convolution runs on the unpadded input with its own symmetric
    zero padding ``(filt - 1) // 2``; the outputs whose windows reach a padded
    cell (or lie past the native output, when the padding after is larger) are
    recomputed exactly from thin padded strips.
    """

    def __init__(self, size: tuple[int, ...], stride: tuple[int, ...], filt: int, mode: str) -> None:
        self.size, self.stride, self.filt, self.mode = size, stride, filt, mode
        self.before = (filt - 1) // 2
        self.after = filt // 2
        self.out = tuple(-(-n // st) for n, st in zip(size, stride))
        self.native = tuple((n + 2 * self.before - filt) // st + 1 for n, st in zip(size, stride))
        self.native_ok = all(v >= 1 for v in self.native)
        # strips: (axis index, first output, end output), exact recomputation, applied in this order
        self.strips: list[tuple[int, int, int]] = []
        for i, (n, st, m, nat) in enumerate(zip(size, stride, self.out, self.native)):
            if mode != "zeros":
                front = min(m, -(-self.before // st))
                back = max(front, min(nat, (n - filt + self.before) // st + 1))
            else:
                front, back = 0, min(nat, m)
            if front > 0:
                self.strips.append((i, 0, front))
            if back < m:
                self.strips.append((i, back, m))

    def runs(self, k: int) -> list[tuple[int | None, int]]:
        """Input cells along its axis that strip ``k`` reads, as runs ``(first index or None for zeros, length)``."""
        axis, start, end = self.strips[k]
        n, st = self.size[axis], self.stride[axis]
        out: list[tuple[int | None, int]] = []
        for i in range(start * st - self.before, (end - 1) * st - self.before + self.filt):
            j: int | None
            if 0 <= i < n:
                j = i
            elif self.mode == "reflect":
                j = -i if i < 0 else 2 * (n - 1) - i
            elif self.mode == "circular":
                j = i % n
            elif self.mode == "replicate":
                j = min(max(i, 0), n - 1)
            else:
                j = None
            last = out[-1] if out else None
            if last is not None and (
                (j is None and last[0] is None) or (j is not None and last[0] is not None and j == last[0] + last[1])
            ):
                out[-1] = (last[0], last[1] + 1)
            else:
                out.append((j, 1))
        return out

    def part(self, x: Tensor, k: int) -> Tensor:
        """The input cells strip ``k`` reads along its axis (narrow views joined; a gather along the last
        axis is several times slower)."""
        ax = 2 + self.strips[k][0]
        pieces = []
        for j, length in self.runs(k):
            if j is None:
                shape = list(x.shape)
                shape[ax] = length
                pieces.append(x.new_zeros(shape))
            else:
                pieces.append(x.narrow(ax, j, length))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, ax)

    def strip(self, x: Tensor, weight: Tensor, k: int) -> Tensor:
        """The exact outputs of strip ``k``."""
        return self.strip_from_part(self.part(x, k), weight, k)

    def strip_from_part(self, part: Tensor, weight: Tensor, k: int) -> Tensor:
        """Strip ``k`` from its input cells ``part`` (as :meth:`part` returns them)."""
        axis = self.strips[k][0]
        d = len(self.size)
        pads: list[int] = []
        for a in reversed(range(d)):
            pads += [0, 0] if a == axis else [self.before, self.after]
        if self.mode == "zeros":
            part = F.pad(part, pads)
        else:
            part = F.pad(part, pads, mode=self.mode)
        return getattr(F, f"conv{d}d")(part, weight, stride=self.stride, groups=part.shape[1])


def _layout_of(x: Tensor) -> torch.memory_format:
    fmt = _channels_last(x.ndim - 2)
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        return fmt
    return torch.contiguous_format


def _blur_forward(x: Tensor, weight: Tensor, geo: _BlurGeometry) -> Tensor:
    d = len(geo.size)
    y = getattr(F, f"conv{d}d")(x, weight, stride=geo.stride, padding=geo.before, groups=x.shape[1])
    if geo.native != geo.out:
        full = torch.empty((*x.shape[:2], *geo.out), dtype=y.dtype, device=y.device, memory_format=_layout_of(y))
        core = full
        for i, v in enumerate(geo.native):
            core = core.narrow(2 + i, 0, v)
        core.copy_(y)
        y = full
    for k, (axis, start, end) in enumerate(geo.strips):
        y.narrow(2 + axis, start, end - start).copy_(geo.strip(x, weight, k))
    return y


class _Blur(torch.autograd.Function):
    """Blur as native zero-padded conv plus exact edge strips, with a backward that allocates one input gradient.

    Autograd through the strips' index selections would add a full-size zero
    gradient per strip; here the strips' gradients are added in place.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, geo: _BlurGeometry) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geo = geo
        return _blur_forward(x, weight, geo)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return _blur_backward(grad, x, weight, ctx.geo), None, None


def _blur_backward(grad: Tensor, x: Tensor, weight: Tensor, geo: _BlurGeometry) -> Tensor:
    """Gradient of :func:`_blur_forward` with respect to ``x`` (whose values it never reads: the blur is linear)."""
    d = len(geo.size)
    # the gradient in the input's layout: mixed layouts send the convolution's backward to a slow path
    fmt = _layout_of(x)
    rest = grad.clone(memory_format=fmt) if geo.strips or not grad.is_contiguous(memory_format=fmt) else grad
    strip_grads = []
    for k in reversed(range(len(geo.strips))):  # later strips overwrote earlier ones where they overlap
        axis, start, end = geo.strips[k]
        region = rest.narrow(2 + axis, start, end - start)
        strip_grads.append((k, region.clone()))
        region.zero_()
    core = rest
    for i, v in enumerate(geo.native):  # native counts never exceed ceil(L / stride)
        core = core.narrow(2 + i, 0, v)
    gx = torch.ops.aten.convolution_backward(
        core, x, weight, None, list(geo.stride), [geo.before] * d, [1] * d, False, [0] * d, x.shape[1],
        [True, False, False])[0]
    for k, g in strip_grads:
        axis = geo.strips[k][0]
        with torch.enable_grad():
            part = geo.part(x.detach(), k).requires_grad_(True)
            y = geo.strip_from_part(part, weight, k)
            (gpart,) = torch.autograd.grad(y, part, g)
        pos = 0
        for j, length in geo.runs(k):
            if j is not None:
                gx.narrow(2 + axis, j, length).add_(gpart.narrow(2 + axis, pos, length))
            pos += length
    return gx


def blur_pool(
    x: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    filt: int = 4,
    *,
    padding_mode: str = "reflect",
) -> Tensor:
    """Blur, then subsample: the anti-aliased replacement for average pooling or strided subsampling.

    Equal to antialiased-cnns' ``BlurPool``/``BlurPool1D`` for its filter sizes
    and pad types (``"zeros"`` is its ``'zero'``), and to ``blur_pool2d`` of kornia
    with ``padding_mode="zeros"``. ``filt=1`` is plain strided subsampling;
    ``filt=2`` equals average pooling with kernel 2 (and the same stride).

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: the subsampling factor, used when ``stride`` is None (the
            window is ``filt``, so the registry's ``kernel_size=2`` means stride 2).
        stride: the subsampling factor; default ``kernel_size``.
        filt: binomial filter size >= 1.
        padding_mode: ``"reflect"`` (default, as antialiased-cnns), ``"replicate"``,
            ``"zeros"``, ``"circular"``.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> x = torch.arange(8.0).view(1, 1, 8)
        >>> blur_pool(x, 2, filt=2)
        tensor([[[0.5000, 2.5000, 4.5000, 6.5000]]])
    """
    d = check_input(x)
    s = ntuple(kernel_size, d, "kernel_size") if stride is None else ntuple(stride, d, "stride")
    return blur(x, filt, s, padding_mode)


def max_blur_pool(
    x: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    filt: int = 4,
    *,
    blur_padding_mode: str = "reflect",
) -> Tensor:
    """Dense max (stride 1), then blurpool: the anti-aliased replacement for max pooling.

    ``max_blur_pool(x, k, s, p)`` has the output size of ``max_pool(x, k, s, p)``
    (floor mode). Equal to kornia's ``max_blur_pool2d(x, filt, s, k)`` with
    ``blur_padding_mode="zeros"``.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: max window size.
        stride: subsampling factor of the blur; default ``kernel_size``.
        padding: padding of the max (``-inf``, as torch's max pooling): ints, ``"same"`` or ``"valid"``.
        dilation: dilation of the max window.
        filt: binomial filter size >= 1.
        blur_padding_mode: border handling of the blur: ``"reflect"``, ``"replicate"``,
            ``"zeros"``, ``"circular"``.

    Shape:
        ``L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1``
        (``ceil(L / stride)`` with ``padding="same"``).

    Example:
        >>> max_blur_pool(torch.rand(1, 3, 8, 8), 2).shape
        torch.Size([1, 3, 4, 4])
    """
    d = check_input(x)
    check_mode(blur_padding_mode, "blur_padding_mode")
    k = ntuple(kernel_size, d, "kernel_size")
    s = k if stride is None else ntuple(stride, d, "stride")
    fused = _fused_max_blur(x, k, s, padding, dilation, filt, blur_padding_mode)
    if fused is not None:
        return fused
    return blur(_dense_max(x, k, padding, dilation), filt, s, blur_padding_mode)


#: elements per chunk (per thread) of the fused maxblur, NCHW: the chunk's few buffers stay near the core's
#: L2 cache (measured best among 2**15 to 2**18); channels-last chunks hold whole samples and pay one depthwise
#: convolution call each, so larger ones measured faster (forward best at 2**20, backward, with more buffers
#: per chunk, at 2**19)
_CHUNK = 1 << 17
_CHUNK_CL = 1 << 20
_CHUNK_CL_BACKWARD = 1 << 19


def _fused_max_blur(
    x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding: Padding, dilation: IntOrTuple, filt: int, mode: str
) -> Tensor | None:
    """Maxblur of contiguous or channels-last CPU input as one chunked pass, or None where it does not apply."""
    if (
        x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or x.numel() == 0
        or isinstance(filt, bool)
        or not isinstance(filt, int)
        or filt < 1
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or transformed(x)
    ):
        return None
    win = resolve(x, k, 1, padding, dilation)
    if max(win.out) > _BAND_MAX or (mode == "reflect" and filt // 2 >= min(win.out)):
        return None  # large maps keep the convolution; bad reflect sizes get blur's error
    d = x.ndim - 2
    fmt = _layout_of(x)
    if fmt == torch.contiguous_format:
        if not x.is_contiguous():
            return None
        # planes as the batch, a trailing unit axis for the channels
        phys = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:], 1)
    else:
        phys = x.permute(0, *range(2, d + 2), 1)  # (N, *spatial, C), contiguous
    mats = tuple(_band(o, si, filt, mode, x.dtype, x.device) for o, si in zip(win.out, s))
    conv = None
    if fmt != torch.contiguous_format:
        # channels-last: the depthwise convolution over the channels beats the band products (small matrices)
        if mode == "circular" and filt // 2 > min(win.out):
            return None  # the filter wraps around more than once: blur's own path handles it
        geo = _BlurGeometry(win.out, s, filt, mode)
        if geo.native_ok and filt > 1:
            kernel = binomial_filter(filt, d, dtype=x.dtype, device=x.device)
            conv = (kernel.expand((x.shape[1], 1, *kernel.shape)).contiguous(), geo)
    plan = _FlatPlan(tuple(phys.shape), win, mats, conv)
    y = _MaxBlur.apply(phys, plan)
    if fmt == torch.contiguous_format:
        return y.view(x.shape[0], x.shape[1], *y.shape[1:-1])
    return y.permute(0, d + 1, *range(1, d + 1))


class _FlatPlan:
    """Geometry of the fused maxblur on a contiguous ``(B, *spatial, T)`` tensor, chunked over ``B``.

    Every stage of the dense max (one spatial axis at a time) keeps the padded
    input's shape and runs on the flattened chunk: the ``j``-th shift along an axis
    is an offset of ``j * dilation * (axis stride)`` in memory, so each maximum is
    one contiguous elementwise op. Cells past a stage's output size hold garbage
    that no valid output reads; the backward keeps the gradient zero there.
    """

    def __init__(
        self, shape: tuple[int, ...], win: Any, mats: tuple[Tensor, ...], conv: tuple[Tensor, _BlurGeometry] | None
    ) -> None:
        self.d = len(shape) - 2
        self.conv = conv
        self.pad = win.pad
        self.padded_size = tuple(n + a + b for n, (a, b) in zip(win.size, win.pad))
        self.out = win.out
        self.mats = mats
        cells = math.prod(self.padded_size) * shape[-1]
        # (flat offset between shifts, number of shifts) per axis with a window > 1, last axis first: on ties the
        # gradient then goes to the window's first maximum in row-major order, as max pooling sends it
        self.steps = []
        self.axes = []  # (axis, dilation) of each step
        for i, (kk, dl) in reversed(list(enumerate(zip(win.kernel, win.dilation)))):
            if kk > 1:
                self.steps.append((dl * math.prod(self.padded_size[i + 1 :]) * shape[-1], kk))
                self.axes.append((i, dl))
        threads = max(1, torch.get_num_threads())
        self.chunk = max(1, ((_CHUNK if shape[-1] == 1 else _CHUNK_CL) * threads) // cells)
        self.chunk_backward = max(1, ((_CHUNK if shape[-1] == 1 else _CHUNK_CL_BACKWARD) * threads) // cells)
        self.buf_shape = (*self.padded_size, shape[-1])
        self.max_shape = (*self.out, shape[-1])

    def last_max(self, y: Tensor, out: Tensor) -> None:
        """The last stage of the dense max, from the padded-shape chunk ``y`` into the compact ``out``."""
        if not self.steps:
            out.copy_(self.valid(y))
            return
        axis, dl = self.axes[-1]
        k = self.steps[-1][1]
        views = []
        for j in range(k):
            v = y
            for i, o in enumerate(self.out):
                v = v.narrow(1 + i, j * dl if i == axis else 0, o)
            views.append(v)
        torch.maximum(views[0], views[1], out=out)
        for v in views[2:]:
            torch.maximum(out, v, out=out)

    def blur(self, m: Tensor) -> Tensor:
        """The blur of a compact chunk of the dense max."""
        if self.conv is None:
            return self.band(m, transpose=False)
        weight, geo = self.conv
        d = self.d
        y = _blur_forward(m.permute(0, d + 1, *range(1, d + 1)), weight, geo)
        return y.permute(0, *range(2, d + 2), 1)

    def blur_grad(self, grad: Tensor, like: Tensor) -> Tensor:
        """The blur's transpose applied to a chunk of the output gradient; ``like`` has the compact max's shape."""
        if self.conv is None:
            return self.band(grad, transpose=True)
        weight, geo = self.conv
        d = self.d
        order = (0, d + 1, *range(1, d + 1))
        g = _blur_backward(grad.permute(order), like.permute(order), weight, geo)
        return g.permute(0, *range(2, d + 2), 1)

    def valid(self, t: Tensor) -> Tensor:
        """The dense max's cells of a padded-shape chunk."""
        for i, o in enumerate(self.out):
            t = t.narrow(1 + i, 0, o)
        return t

    def interior(self, t: Tensor) -> Tensor:
        """The input's cells of a padded-shape chunk."""
        for i, ((a, _), n) in enumerate(zip(self.pad, self.padded_size)):
            t = t.narrow(1 + i, a, n - a - self.pad[i][1])
        return t

    def band(self, t: Tensor, transpose: bool) -> Tensor:
        """The blur (or its transpose) of a chunk, as one band-matrix product per spatial axis."""
        for i, mat in enumerate(self.mats):
            if transpose:
                mat = mat.t()
            shape = t.shape
            n, lead, rest = shape[1 + i], math.prod(shape[: 1 + i]), math.prod(shape[2 + i :])
            if rest == 1:
                t = (t.reshape(lead, n) @ mat.t()).view(*shape[: 1 + i], mat.shape[0], *shape[2 + i :])
            else:
                t = (mat @ t.reshape(lead, n, rest)).view(*shape[: 1 + i], mat.shape[0], *shape[2 + i :])
        return t


def _flat_max(y: Tensor, z: Tensor, step: int, k: int) -> None:
    """``z[p] = max_j y[p + j * step]`` over the flat chunk, as far as every shift stays inside."""
    yf, zf = y.view(-1), z.view(-1)
    length = yf.numel() - (k - 1) * step
    head = zf[:length]
    torch.maximum(yf[:length], yf[step : step + length] if k > 2 else yf[step:], out=head)
    for j in range(2, k):
        torch.maximum(head, yf[j * step : j * step + length], out=head)


def _flat_max_backward(y: Tensor, z: Tensor, g: Tensor, out: Tensor, step: int, k: int, scratch: Tensor) -> None:
    """Gradient of :func:`_flat_max` into ``out``: each output's gradient goes to its first shift attaining the
    maximum (as max pooling does on ties). ``scratch`` holds at least ``3 * numel`` cells; the masks are float
    (comparisons writing float outputs are several times faster here than boolean masks and ``where``)."""
    yf, gf, of = y.view(-1), g.view(-1), out.view(-1)
    length = yf.numel() - (k - 1) * step
    gh = gf[:length]
    mask = scratch[:length]
    rest = scratch[length : 2 * length]
    if k == 2:
        torch.ge(yf[:length], yf[step:], out=mask)  # the first shift holds the maximum
        head = of[:length]
        torch.mul(gh, mask, out=head)
        torch.sub(gh, head, out=rest)  # the second shift's share
        of[length:].zero_()
        of[step:].add_(rest)
        return
    take = scratch[2 * length : 3 * length]
    acc = z.view(-1)[:length]
    of.zero_()
    rest.copy_(gh)
    for j in range(k - 1):
        torch.eq(yf[j * step : j * step + length], acc, out=mask)
        torch.mul(rest, mask, out=take)
        of[j * step : j * step + length].add_(take)
        rest.sub_(take)  # later shifts get only what earlier ones did not take
    of[(k - 1) * step :].add_(rest)


class _MaxBlur(torch.autograd.Function):
    """Dense max then blur on ``(B, *spatial, T)``, chunk by chunk so that the full-size dense max never exists.

    The backward recomputes each chunk's stages from the input (cheaper than storing them) and routes the
    gradient back through the blur's transposed band matrices and each max stage.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, plan: _FlatPlan) -> Tensor:
        ctx.save_for_backward(x)
        ctx.plan = plan
        n = x.shape[0]
        out = x.new_empty((n, *(m.shape[0] for m in plan.mats), x.shape[-1]))
        stages, padbuf = _buffers(x, plan, len(plan.steps) - 1, plan.chunk)
        dense = x.new_empty((plan.chunk, *plan.max_shape))
        for b in range(0, n, plan.chunk):
            c = min(plan.chunk, n - b)
            y = _chunk_input(x, plan, padbuf, b, c)
            for i, (step, k) in enumerate(plan.steps[:-1]):
                z = stages[i][:c]
                _flat_max(y, z, step, k)
                y = z
            plan.last_max(y, dense[:c])
            out[b : b + c] = plan.blur(dense[:c])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        plan: _FlatPlan = ctx.plan
        grad = grad.contiguous()
        n = x.shape[0]
        chunk = plan.chunk_backward
        gx = torch.empty_like(x, memory_format=torch.contiguous_format)
        stages, padbuf = _buffers(x, plan, len(plan.steps), chunk)
        gbufs = [x.new_empty((chunk, *plan.buf_shape)) for _ in range(2)]
        gtop = x.new_zeros((chunk, *plan.buf_shape))  # cells past the dense max stay zero
        scratch = x.new_empty(3 * gtop.numel())
        like = x.new_zeros((chunk, *plan.max_shape)) if plan.conv is not None else None
        for b in range(0, n, chunk):
            c = min(chunk, n - b)
            ys = [_chunk_input(x, plan, padbuf, b, c)]
            for i, (step, k) in enumerate(plan.steps[:-1] if plan.steps else []):
                _flat_max(ys[-1], stages[i][:c], step, k)
                ys.append(stages[i][:c])
            g = gtop[:c]
            plan.valid(g).copy_(plan.blur_grad(grad[b : b + c], like[:c] if like is not None else g))
            for i in reversed(range(len(plan.steps))):
                step, k = plan.steps[i]
                last = i == 0
                target = gx[b : b + c] if last and padbuf is None else gbufs[i % 2][:c]
                z = stages[i][:c] if k > 2 else g
                if k > 2 and i == len(plan.steps) - 1:
                    _flat_max(ys[i], z, step, k)  # the last stage's output was not kept above
                _flat_max_backward(ys[i], z, g, target, step, k, scratch)
                g = target
            if padbuf is not None or not plan.steps:
                gx[b : b + c] = plan.interior(g)
        return gx, None


def _buffers(x: Tensor, plan: _FlatPlan, count: int, chunk: int) -> tuple[list[Tensor], Tensor | None]:
    stages = [x.new_empty((chunk, *plan.buf_shape)) for _ in range(max(count, 0))]
    padbuf = None
    if any(a or b for a, b in plan.pad):
        padbuf = x.new_full((chunk, *plan.buf_shape), -torch.inf)  # the max's padding, kept between chunks
    return stages, padbuf


def _chunk_input(x: Tensor, plan: _FlatPlan, padbuf: Tensor | None, b: int, c: int) -> Tensor:
    if padbuf is None:
        return x[b : b + c]
    plan.interior(padbuf[:c]).copy_(x[b : b + c])
    return padbuf[:c]


class _RunningMax(torch.autograd.Function):
    """Maximum of ``k`` shifted views along one axis, with a lean backward.

    Autograd through a chain of ``torch.maximum`` on views is many times slower
    than the forward; here the forward is that chain and the backward routes
    the gradient to the first shift that attains the maximum (as max pooling
    does on ties) with one mask and masked multiplies into one buffer per shift.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, ax: int, k: int, dl: int, o: int) -> Tensor:
        acc = y.narrow(ax, 0, o)
        for j in range(1, k):
            acc = torch.maximum(acc, y.narrow(ax, j * dl, o))
        ctx.save_for_backward(y, acc)
        ctx.meta = (ax, k, dl, o)
        return acc

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        y, acc = ctx.saved_tensors
        ax, k, dl, o = ctx.meta
        # masked multiplies into one output buffer: where/sub temporaries cost about twice as much here
        out = torch.empty_like(y)
        out.narrow(ax, o, y.shape[ax] - o).zero_()
        rest = grad
        for j in range(k - 1):
            hit = y.narrow(ax, j * dl, o) == acc
            if j == 0:
                torch.mul(rest, hit, out=out.narrow(ax, 0, o))
            else:
                out.narrow(ax, j * dl, o).addcmul_(rest, hit)
            miss = hit.logical_not_()  # later shifts get only what earlier ones did not take
            if j < k - 2:
                rest = rest * miss
            else:
                out.narrow(ax, (k - 1) * dl, o).addcmul_(rest, miss)
        return out, None, None, None, None


def _dense_max(x: Tensor, kernel_size: tuple[int, ...], padding: Padding, dilation: IntOrTuple) -> Tensor:
    """Stride-1 max pooling (``-inf`` padding), one dim at a time, as a running maximum of shifted views.

    Maxblur's dense max where the fused pass does not apply (GPU, half precision,
    large maps, other strides). On CPU this is several times faster than torch's
    stride-1 max pooling in NCHW layout; channels-last input that needs a gradient
    uses torch's pooling, whose backward is as fast there.
    """
    track = custom_backward(x)
    win = resolve(x, kernel_size, 1, padding, dilation)
    # torch's pooling takes symmetric padding of at most half the window only ("same" with dilation exceeds it)
    native_ok = all(a == b <= k // 2 for (a, b), k in zip(win.pad, win.kernel))
    if track and native_ok and _layout_of(x) != torch.contiguous_format:
        # channels-last with backward: native max pooling's backward is as fast as the running max's there
        y = max_pool(x, kernel_size, 1, padding, dilation)
        assert isinstance(y, Tensor)
        return y
    y = pad(x, win, "zeros", value=-torch.inf)
    for i, (k, dl, o) in reversed(list(enumerate(zip(win.kernel, win.dilation, win.out)))):
        ax = 2 + i  # last axis first: ties resolve as in max pooling (first maximum in row-major order)
        if k == 1:
            continue
        if track:
            y = _RunningMax.apply(y, ax, k, dl, o)
            continue
        acc = y.narrow(ax, 0, o)
        for j in range(1, k):
            acc = torch.maximum(acc, y.narrow(ax, j * dl, o))
        y = acc
    return y

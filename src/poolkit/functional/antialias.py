"""Anti-aliased pooling: binomial blur filters, blurpool and maxblur, in 1-D, 2-D and 3-D.

Subsampling a signal that was not low-pass filtered aliases: a one-cell shift of
the input changes the output instead of moving it. The remedy (Zhang, "Making
Convolutional Networks Shift-Invariant Again", ICML 2019) blurs with a small
binomial filter before subsampling. The blur here is one depthwise convolution
with the binomial kernel in the input's layout (converting NCHW input to
channels-last costs about what it saves on the 2-thread CPU we measured); the
dense max of maxblur is a running maximum of shifted views, several times
faster than torch's stride-1 max pooling in NCHW.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._window import PADDING_MODES, IntOrTuple, Padding, check_input, check_padding_mode, ntuple, pad, resolve
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
    if padding_mode == "circular" and after > min(size):
        raise ValueError(f"padding_mode='circular' needs filt // 2 <= every input size, got filt={filt} "
                         f"for size {tuple(size)}")
    work = x
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        work = x.float()  # CPU depthwise convs lack fast (or any) half kernels
    pads = [before, after] * d
    if padding_mode == "zeros":
        work = F.pad(work, pads)
    else:
        work = F.pad(work, pads, mode=padding_mode)
    c = x.shape[1]
    kernel = binomial_filter(filt, d, dtype=work.dtype, device=work.device)
    weight = kernel.expand((c, 1, *kernel.shape))
    y = getattr(F, f"conv{d}d")(work, weight, stride=s, groups=c)
    return y.to(x.dtype)


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
    return blur(_dense_max(x, k, padding, dilation), filt, s, blur_padding_mode)


class _RunningMax(torch.autograd.Function):
    """Maximum of ``k`` shifted views along one axis, with a lean backward.

    Autograd through a chain of ``torch.maximum`` on views is many times slower
    than the forward; here the forward is that chain and the backward routes
    the gradient to the first shift that attains the maximum (as max pooling
    does on ties) with one mask, one ``where`` and a few in-place adds per shift.
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
        out = grad.new_zeros(y.shape)
        rest = grad
        for j in range(k - 1):
            hit = y.narrow(ax, j * dl, o) == acc
            part = torch.where(hit, rest, 0)
            out.narrow(ax, j * dl, o).add_(part)
            rest = rest - part  # later shifts get only what earlier ones did not take
        out.narrow(ax, (k - 1) * dl, o).add_(rest)
        return out, None, None, None, None


def _dense_max(x: Tensor, kernel_size: tuple[int, ...], padding: Padding, dilation: IntOrTuple) -> Tensor:
    """Stride-1 max pooling (``-inf`` padding), one dim at a time, as a running maximum of shifted views.

    On CPU this is several times faster than torch's stride-1 max pooling in
    NCHW layout; channels-last input, where torch's pooling is fast, uses it.
    """
    fmt = _channels_last(x.ndim - 2)
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        y = max_pool(x, kernel_size, 1, padding, dilation)
        assert isinstance(y, Tensor)
        return y
    win = resolve(x, kernel_size, 1, padding, dilation)
    y = pad(x, win, "zeros", value=-torch.inf)
    track = torch.is_grad_enabled() and y.requires_grad
    for i, (k, dl, o) in enumerate(zip(win.kernel, win.dilation, win.out)):
        ax = 2 + i
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

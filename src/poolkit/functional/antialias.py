"""Anti-aliased pooling: binomial blur filters, blurpool and maxblur, in 1-D, 2-D and 3-D.

Subsampling a signal that was not low-pass filtered aliases: a one-cell shift of
the input changes the output instead of moving it. The remedy (Zhang, "Making
Convolutional Networks Shift-Invariant Again", ICML 2019) blurs with a small
binomial filter before subsampling.

Reference formulas: the blur is one depthwise convolution with the binomial
filter after padding (in float32 at least); maxblur is a stride-1 max pooling,
then the blur. Fast CPU kernels beside them (band-matrix products for the blur
of contiguous maps, a chunked fused maxblur, a running maximum) are in
``_fast/blur.py`` and ``_fast/maxblur.py`` (timings in BENCHMARKS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _fast
from ._fast import blur as _blur_kernels  # noqa: F401  (registers the kernels)
from ._fast import maxblur as _maxblur_kernels  # noqa: F401
from ._window import PADDING_MODES, IntOrTuple, Padding, check_input, check_padding_mode, ntuple
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


def _check_filt(filt: object) -> int:
    if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
        raise ValueError(f"filt (the binomial filter size) must be an int >= 1, got {filt!r}")
    return filt


def _check_weight(weight: Tensor | None, filt: int, d: int, like: Tensor) -> Tensor:
    """The filter to blur with: ``weight`` (checked) or a fresh ``binomial_filter(filt, d)``."""
    if weight is None:
        return binomial_filter(filt, d, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32,
                               device=like.device)
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (filt,) * d:
        raise ValueError(f"weight must be the binomial filter of shape {(filt,) * d} (binomial_filter({filt}, {d})), "
                         f"got {getattr(weight, 'shape', type(weight).__name__)}")
    return weight


def blur_pad(x: Tensor, filt: int, mode: str) -> Tensor:
    """Pad ``(filt - 1) // 2`` cells before and ``filt // 2`` after in each spatial dim; circular of any width."""
    d = x.ndim - 2
    before, after = (filt - 1) // 2, filt // 2
    if mode == "circular" and after > min(x.shape[2:]):  # the filter wraps around more than once
        for i, n in enumerate(x.shape[2:]):
            x = x.index_select(2 + i, torch.arange(-before, int(n) + after, device=x.device) % int(n))
        return x
    return F.pad(x, [before, after] * d, mode="constant" if mode == "zeros" else mode)


def blur(
    x: Tensor,
    filt: int = 3,
    stride: IntOrTuple = 1,
    padding_mode: str = "reflect",
    *,
    weight: Tensor | None = None,
) -> Tensor:
    """Binomial blur of size ``filt`` per spatial dim, sampled every ``stride`` cells from index 0.

    The input is padded by ``(filt - 1) // 2`` cells before and ``filt // 2`` after
    in each dim (antialiased-cnns' split for even sizes), so the blurred map keeps
    the input size before subsampling. Half-precision input is blurred in float32
    and rounded once.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        filt: binomial filter size >= 1 (1 = no blur, 2 = box, 3 = ``[1, 2, 1]``, ...).
        stride: subsampling factor (int or one per dim).
        padding_mode: ``"reflect"``, ``"replicate"``, ``"zeros"`` or ``"circular"``.
        weight: the filter ``binomial_filter(filt, d)`` already built (a module's buffer), any dtype
            and device; built on each call when None. Other filters are not supported.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> blur(torch.tensor([[[0.0, 0.0, 4.0, 0.0, 0.0]]]), 3)
        tensor([[[0., 1., 2., 1., 0.]]])
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    s = ntuple(stride, d, "stride")
    filt = _check_filt(filt)
    if padding_mode == "reflect" and filt // 2 >= min(x.shape[2:]):
        raise ValueError(
            f"padding_mode='reflect' needs filt // 2 < every input size, got filt={filt} for size "
            f"{tuple(x.shape[2:])}; use a smaller filt or padding_mode 'replicate', 'zeros' or 'circular'"
        )
    weight = _check_weight(weight, filt, d, x)
    y = _fast.dispatch("blur", x, filt, s, padding_mode, weight)
    if y is not None:
        return y
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    w = weight.to(device=x.device, dtype=work.dtype).expand(x.shape[1], 1, *weight.shape).contiguous()
    y = getattr(F, f"conv{d}d")(blur_pad(work, filt, padding_mode), w, stride=s, groups=x.shape[1])
    return y.to(x.dtype)


def blur_pool(
    x: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    filt: int = 4,
    *,
    padding_mode: str = "reflect",
    weight: Tensor | None = None,
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
        weight: ``binomial_filter(filt, d)`` already built (a module's buffer); built when None.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> x = torch.arange(8.0).view(1, 1, 8)
        >>> blur_pool(x, 2, filt=2)
        tensor([[[0.5000, 2.5000, 4.5000, 6.5000]]])
    """
    d = check_input(x)
    s = ntuple(kernel_size, d, "kernel_size") if stride is None else ntuple(stride, d, "stride")
    return blur(x, filt, s, padding_mode, weight=weight)


def max_blur_pool(
    x: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    filt: int = 4,
    *,
    blur_padding_mode: str = "reflect",
    weight: Tensor | None = None,
) -> Tensor:
    """Dense max (stride 1), then blurpool: the anti-aliased replacement for max pooling.

    ``max_blur_pool(x, k, s, p)`` has the output size of ``max_pool(x, k, s, p)``
    (floor mode). Equal to kornia's ``max_blur_pool2d(x, filt, s, k)`` with
    ``blur_padding_mode="zeros"``. Formula: ``blur(max_pool(x, kernel_size, 1, padding,
    dilation), filt, stride, blur_padding_mode)``; values and gradients as that.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: max window size.
        stride: subsampling factor of the blur; default ``kernel_size``.
        padding: padding of the max (``-inf``, as torch's max pooling): ints, ``"same"`` or ``"valid"``.
        dilation: dilation of the max window.
        filt: binomial filter size >= 1.
        blur_padding_mode: border handling of the blur: ``"reflect"``, ``"replicate"``,
            ``"zeros"``, ``"circular"``.
        weight: ``binomial_filter(filt, d)`` already built (a module's buffer); built when None.

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
    filt = _check_filt(filt)
    weight = _check_weight(weight, filt, d, x)
    y = _fast.dispatch("maxblur", x, k, s, padding, dilation, filt, blur_padding_mode, weight)
    if y is not None:
        return y
    dense = max_pool(x, k, 1, padding, dilation)
    assert isinstance(dense, Tensor)
    return blur(dense, filt, s, blur_padding_mode, weight=weight)

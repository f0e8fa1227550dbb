"""Spectral pooling with a learnable stride (DiffStride), in 1-D, 2-D and 3-D.

DiffStride (Riad, Teboul, Grangier and Zeghidour, "Learning strides in
convolutional neural networks", ICLR 2022) downsamples by cropping the Fourier
spectrum. For an axis of length ``n`` and a (real-valued) stride ``s``, the
frequencies up to ``t = max(n / s, 2) / 2`` are kept, and a linear ramp of
width ``R`` (the smoothness) beyond ``t`` fades the next ones out::

    mask(f) = clip((t + R - |f|) / R, 0, 1)

The spectrum is then cropped to the ramp's support, so the output has
``m = min(n, 2 * ceil(t + R))`` cells on that axis (``2 * ceil(t)`` when
``R = 0``). Frequencies inside the ramp carry a gradient with respect to ``s``,
which is how the stride is learned.

The axes are processed one after the other with a real FFT (``rfft`` / ``irfft``,
both with ``norm="forward"``, so a constant input keeps its value, as an average
pool would). Each axis is therefore an ideal low-pass filter followed by a
resampling to ``m`` cells; with ``R = 0`` and ``s`` dividing ``n`` it is exactly
the ideal low-pass at the new Nyquist frequency (weight 1/2 at it) followed by
taking every ``s``-th sample.

The output size depends on the value of ``s``: when ``s`` is a tensor, the sizes
are read from it once per call (one small device-to-host copy); a Python float
costs nothing. float16 and bfloat16 inputs are computed in float32 (the FFT
has no half-precision CPU kernel) and returned in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._window import check_input

__all__ = ["diffstride_pool", "spectral_mask", "spectral_output_size", "stride_bounds"]

StrideLike = float | Sequence[float] | Tensor


def _check_smoothness(smoothness: object) -> float:
    if isinstance(smoothness, bool) or not isinstance(smoothness, (int, float)) or not smoothness >= 0:
        raise ValueError(f"smoothness (the ramp width R) must be a number >= 0, got {smoothness!r}")
    return float(smoothness)


def stride_bounds(n: int, smoothness: float, lower: float = 1.0, upper: float | None = None) -> tuple[float, float]:
    """The range a stride is held to on an axis of ``n`` cells.

    The lower end is ``max(lower, n / (n - R))`` (when ``n > R``): below that the
    ramp would lie past the input's Nyquist frequency and the stride would get no
    gradient (the bound the paper uses). The upper end is ``upper`` (no bound if None).

    Example:
        >>> stride_bounds(40, 4.0)
        (1.1111111111111112, inf)
    """
    lo = float(lower)
    if n > smoothness:
        lo = max(lo, n / (n - smoothness))
    hi = math.inf if upper is None else float(upper)
    return lo, max(lo, hi)


def spectral_output_size(n: int, stride: float, smoothness: float = 4.0, cropping: bool = True) -> int:
    """Output cells on an axis of ``n`` cells for a stride value (already within its bounds).

    ``min(n, 2 * ceil(t + R))`` with ``t = max(n / stride, min(n, 2)) / 2``; ``n`` without cropping.

    Example:
        >>> spectral_output_size(40, 2.0, smoothness=0.0), spectral_output_size(40, 2.0)
        (20, 28)
    """
    if not cropping:
        return n
    t = max(n / stride, min(n, 2)) / 2.0
    # a hair below the exact edge: float noise in n / stride must not add a cell
    edge = math.ceil(t + smoothness - 1e-9)
    return max(1, min(n, 2 * edge))


def _stride_values(stride: StrideLike, d: int) -> tuple[list[float], Tensor | None]:
    """Per-axis stride values as floats (one host read for a tensor) and the tensor itself, if any."""
    if isinstance(stride, Tensor):
        if stride.ndim > 1 or stride.numel() not in (1, d):
            raise ValueError(f"stride must be a scalar or hold one value per spatial axis ({d}), "
                             f"got shape {tuple(stride.shape)}")
        if not stride.is_floating_point():
            raise TypeError(f"stride must be a floating-point tensor, got {stride.dtype}")
        vals = [float(v) for v in stride.detach().reshape(-1).tolist()]
        vals = vals * d if len(vals) == 1 else vals
        return vals, stride.reshape(-1).expand(d) if stride.numel() == 1 else stride.reshape(-1)
    items = list(stride) if isinstance(stride, Sequence) else [stride] * d
    if len(items) != d:
        raise ValueError(f"stride must be a number or {d} numbers (one per spatial axis), got {stride!r}")
    vals = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"stride must hold numbers, got {stride!r}")
        vals.append(float(v))
    return vals, None


def spectral_mask(n: int, stride: Tensor | float, smoothness: float = 4.0) -> Tensor:
    """The ramp mask over the ``n // 2 + 1`` real-FFT frequencies of an axis of ``n`` cells.

    ``clip((t + R - f) / R, 0, 1)`` with ``t = max(n / stride, min(n, 2)) / 2``; a step
    (``f <= t``) when ``R = 0``. Differentiable in ``stride`` when it is a tensor.

    Example:
        >>> spectral_mask(8, torch.tensor(2.0), smoothness=1.0)
        tensor([1., 1., 1., 0., 0.])
    """
    smoothness = _check_smoothness(smoothness)
    s = stride if isinstance(stride, Tensor) else torch.tensor(float(stride), dtype=torch.float64)
    f = torch.arange(n // 2 + 1, dtype=s.dtype, device=s.device)
    t = torch.clamp(n / s, min=float(min(n, 2))) / 2.0
    if smoothness == 0:
        return (f <= t).to(s.dtype)
    return torch.clamp((t + smoothness - f) / smoothness, 0.0, 1.0)


def _bounded(s: Tensor, lo: float, hi: float) -> Tensor:
    # straight-through clamp: the value stays in [lo, hi], the gradient still reaches s
    return s + (torch.clamp(s, lo, hi) - s).detach()


def diffstride_pool(
    input: Tensor,
    stride: StrideLike = 2.0,
    smoothness: float = 4.0,
    lower: float = 1.0,
    upper: float | None = None,
    cropping: bool = True,
) -> Tensor:
    """Spectral pooling with a (learnable) real-valued stride per axis, DiffStride's layer.

    Args:
        input: ``(N, C, *spatial)`` with 1 to 3 spatial axes, floating point.
        stride: a number (>= 1), one number per axis, or a tensor (scalar or one value per
            axis) that may require grad; a tensor's values are held within
            :func:`stride_bounds` (an optimizer may push them past a bound), with the gradient
            passed straight through at a bound.
        smoothness: ramp width ``R`` in frequency bins (the paper's default 4); 0 is a hard
            crop, whose output does not depend on the stride differentiably.
        lower: lowest stride (default 1: never upsample).
        upper: highest stride (default: none).
        cropping: crop the spectrum to the ramp's support (downsample); False keeps the
            input size and only applies the mask (a learnable low-pass filter).

    Returns:
        ``(N, C, *out)``, ``out`` per axis from :func:`spectral_output_size`, in the input's
        dtype; channels-last inputs give channels-last outputs.

    Raises:
        TypeError: non-tensor or non-floating input, a non-numeric stride.
        ValueError: a bad rank, a stride below 1 or not one per axis, a bad smoothness or bounds.

    Example:
        >>> x = torch.rand(2, 3, 40)
        >>> diffstride_pool(x, 2.0, smoothness=0.0).shape
        torch.Size([2, 3, 20])
        >>> s = torch.tensor([2.0, 4.0], requires_grad=True)
        >>> y = diffstride_pool(torch.rand(1, 1, 32, 32), s, smoothness=2.0)
        >>> y.shape
        torch.Size([1, 1, 20, 12])
        >>> y.square().sum().backward(); s.grad.shape
        torch.Size([2])
    """
    d = check_input(input)
    smoothness = _check_smoothness(smoothness)
    if isinstance(lower, bool) or not isinstance(lower, (int, float)) or not lower >= 1:
        raise ValueError(f"lower (the lowest stride) must be a number >= 1, got {lower!r}")
    if upper is not None and (isinstance(upper, bool) or not isinstance(upper, (int, float)) or upper < lower):
        raise ValueError(f"upper (the highest stride) must be None or a number >= lower ({lower}), got {upper!r}")
    vals, tensor = _stride_values(stride, d)
    if any(not math.isfinite(v) for v in vals) or (tensor is None and any(v < 1 for v in vals)):
        # a learned (tensor) stride that an optimizer pushed past a bound is held at the bound instead
        raise ValueError(f"stride must be finite, and >= 1 on every axis when given as numbers, got {vals}")
    dtype = input.dtype
    x = input.float() if dtype in (torch.float16, torch.bfloat16) else input
    work = x.dtype
    channels_last = d in (2, 3) and x.dim() > 3 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last if d == 2 else torch.channels_last_3d
    )
    for a in range(d):
        axis = 2 + a
        n = x.shape[axis]
        lo, hi = stride_bounds(n, smoothness, lower, upper)
        v = min(max(vals[a], lo), hi)
        m = spectral_output_size(n, v, smoothness, cropping)
        if tensor is not None:
            s_a = _bounded(tensor[a].to(device=x.device, dtype=work), lo, hi)
        else:
            s_a = torch.tensor(v, device=x.device, dtype=work)
        mask = spectral_mask(n, s_a, smoothness)
        spec = torch.fft.rfft(x, dim=axis, norm="forward")
        shape = [1] * x.dim()
        shape[axis] = n // 2 + 1
        spec = spec * mask.reshape(shape)
        keep = m // 2 + 1
        if keep < n // 2 + 1:
            spec = spec.narrow(axis, 0, keep)
        x = torch.fft.irfft(spec, n=m, dim=axis, norm="forward")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if d == 2 else torch.channels_last_3d)
    return x.to(dtype)

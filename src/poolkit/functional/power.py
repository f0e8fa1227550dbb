"""Power-mean family: avg (lp, gem, lse, softpool, mixed, gated join them here).

Every statistic here is a fused native average pooling of a pointwise map,
``f^-1(avg_pool(g(x)))`` or a ratio of two average poolings, so memory stays a
few output-sized buffers and the adaptive/global forms come for free.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
)

__all__ = ["avg_pool", "window_mean"]


def _avg_native(x: Tensor, k, s, p, ceil_mode: bool, count_include_pad: bool, divisor_override) -> Tensor:
    if x.ndim == 3:  # avg_pool1d has no divisor_override: run it as 2-d
        y = native("avg_pool", 2)(
            x.unsqueeze(2), (1, k[0]), (1, s[0]), (0, p[0]), ceil_mode, count_include_pad, divisor_override
        )
        return y.squeeze(2)
    if x.ndim == 5 and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # torch's CPU avg_pool3d has no half kernels: compute in float32
        y = native("avg_pool", 3)(x.float(), k, s, p, ceil_mode, count_include_pad, divisor_override)
        return y.to(x.dtype)
    return native("avg_pool", x.ndim - 2)(x, k, s, p, ceil_mode, count_include_pad, divisor_override)


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
        ones = pad(x.new_ones((1, 1) + win.size), win, "zeros", 0.0)
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
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override < 1):
        raise ValueError(f"divisor_override must be a positive int or None, got {divisor_override!r}")
    if output_size is not None:
        return window_mean(x, resolve_output_size(x, output_size))
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    return window_mean(x, win, padding_mode, count_include_pad, divisor_override)


"""Fast kernels of the binomial blur; the formula (pad, then one depthwise convolution) is in ``antialias.py``.

- ``band``: contiguous 2-d/3-d CPU maps of moderate size (28 to 128, subsampled): one product with a
  ``(L_out, L)`` band matrix per spatial axis, a plain GEMM in which the padded taps of every padding mode
  are folded exactly; torch's NCHW depthwise convolution runs far slower on CPU.
- ``conv_padding`` (tried first): zero padding with an odd filter, any device: the convolution's own zero padding
  instead of a padded copy of the input.
- ``subsample``: ``filt=1``, the identity filter: a strided copy.

Every kernel returns the formula's layout: contiguous input gives contiguous output, channels-last
input channels-last output (as the depthwise convolution does).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import register

__all__ = ["band", "blur_band", "layout_of"]

_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}

#: largest spatial size blurred by band matrices, without and with a gradient (measured: the products' cost grows
#: with ``L`` per output, the convolution's does not)
_BAND_MAX = 128
_BAND_MAX_GRAD = 256
#: below this size the convolution measured faster (small GEMMs run far below the machine's speed)
_BAND_MIN = 28


def layout_of(x: Tensor) -> torch.memory_format:
    """The memory format the depthwise convolution keeps for ``x``: channels-last or contiguous."""
    fmt = _CHANNELS_LAST.get(x.ndim - 2)
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        return fmt
    return torch.contiguous_format


@functools.lru_cache(maxsize=256)
def band(n: int, stride: int, filt: int, mode: str, dtype: torch.dtype, device: torch.device) -> Tensor:
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


def blur_band(x: Tensor, filt: int, stride: tuple[int, ...], mode: str) -> Tensor:
    """The blur as one matrix product per spatial axis (``x`` contiguous); autograd's backward is products too."""
    y = x
    for ax in reversed(range(2, x.ndim)):  # last axis first: one GEMM over all rows
        n = y.shape[ax]
        mat = band(n, stride[ax - 2], filt, mode, x.dtype, x.device)
        if ax == y.ndim - 1:
            y = y @ mat.t()
        else:
            shape = list(y.shape)
            lead = math.prod(shape[:ax])
            y = (mat @ y.reshape(lead, n, -1)).view(*shape[:ax], mat.shape[0], *shape[ax + 1 :])
    return y


def _conv_padding_applies(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> bool:
    return mode == "zeros" and filt % 2 == 1 and filt > 1


@register("blur", "conv_padding", "zero padding, odd filter (any device)", _conv_padding_applies)
def _blur_conv_padding(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> Tensor:
    d = x.ndim - 2
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    w = weight.to(device=x.device, dtype=work.dtype).expand(x.shape[1], 1, *weight.shape).contiguous()
    y = getattr(F, f"conv{d}d")(work, w, stride=s, padding=(filt - 1) // 2, groups=x.shape[1])
    return y.to(x.dtype)


def _band_applies(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> bool:
    grad = torch.is_grad_enabled() and x.requires_grad
    return (
        x.device.type == "cpu"
        and filt > 1
        and weight.dtype in (torch.float32, torch.float64)  # its taps exactly (a half buffer is rounded)
        and max(s) > 1  # at stride 1 the convolution measured faster
        and x.ndim > 3  # 1-d: no gain measured
        and x.is_contiguous()
        and max(x.shape[2:]) >= _BAND_MIN
        and x.numel() > 0
        and max(x.shape[2:]) <= (_BAND_MAX_GRAD if grad else _BAND_MAX)
    )


@register("blur", "band", "CPU, 2-d/3-d contiguous, stride > 1, maps of 28 to 128 (256 with a gradient)", _band_applies)
def _blur_band(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> Tensor:
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return blur_band(work, filt, s, mode).to(x.dtype)


def _subsample_applies(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> bool:
    return filt == 1 and (x.is_contiguous() or layout_of(x) != torch.contiguous_format)


@register("blur", "subsample", "filt=1, contiguous or channels-last input", _subsample_applies)
def _blur_subsample(x: Tensor, filt: int, s: tuple[int, ...], mode: str, weight: Tensor) -> Tensor:
    index = (slice(None), slice(None), *(slice(None, None, si) for si in s))
    return x[index].clone(memory_format=layout_of(x))

"""Modules for anti-aliased pooling, thin shells over :mod:`poolkit.functional.antialias`."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from .. import functional as PF
from ..functional._window import IntOrTuple, Padding, check_padding_mode
from ..functional.antialias import check_mode
from .base import _PoolNd

__all__ = [
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "MaxBlurPool1d",
    "MaxBlurPool2d",
    "MaxBlurPool3d",
]

_FACTOR_SKIP = {
    "kernel_larger": "kernel_size is the subsampling factor; a factor past the input size is well defined "
    "(output size ceil(L / stride) = 1), as strided subsampling is",
}


def _check_filt(filt: object) -> int:
    if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
        raise ValueError(f"filt (the binomial filter size) must be an int >= 1, got {filt!r}")
    return filt


def _register_filter(module: _PoolNd, filt: int) -> None:
    """The fixed binomial filter as a non-persistent buffer ``blur_filter``: ``.to(device)``, ``.half()`` and
    ``torch.compile`` see it, no call rebuilds it, and state dicts stay free of it."""
    module.register_buffer("blur_filter", PF.binomial_filter(filt, module._dim), persistent=False)


class _BlurPoolNd(_PoolNd):
    """Blur, then subsample; see :func:`poolkit.functional.blur_pool`.

    ``kernel_size`` is the subsampling factor (``stride`` overrides it); the
    window is the binomial filter of size ``filt``, held as the non-persistent
    buffer ``blur_filter``.

    Example:
        >>> import torch
        >>> BlurPool2d(2, filt=4)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.blur_pool)
    blur_filter: Tensor
    #: kernel_size is the subsampling factor; other window geometry is not taken
    subsampling: ClassVar[bool] = True
    conformance_skip: ClassVar[dict[str, str]] = dict(_FACTOR_SKIP)

    def __init__(
        self,
        kernel_size: IntOrTuple = 2,
        stride: IntOrTuple | None = None,
        filt: int = 4,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__(kernel_size, stride)
        self.filt = _check_filt(filt)
        self.padding_mode = check_padding_mode(padding_mode)
        _register_filter(self, self.filt)

    def fn_kwargs(self) -> dict[str, Any]:
        return dict(kernel_size=self.kernel_size, stride=self.stride, filt=self.filt, padding_mode=self.padding_mode,
                    weight=self.blur_filter)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, filt={self.filt}, "
                f"padding_mode={self.padding_mode!r}")


class _MaxBlurPoolNd(_PoolNd):
    """Dense max (stride 1), then blurpool; see :func:`poolkit.functional.max_blur_pool`.

    The blur has its own border handling, ``blur_padding_mode``; the max pads
    with ``-inf`` as torch's max pooling does. The binomial filter is the
    non-persistent buffer ``blur_filter``.

    Example:
        >>> import torch
        >>> MaxBlurPool2d(3, stride=2, padding=1)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.max_blur_pool)
    _has_dilation = True
    blur_filter: Tensor

    def __init__(
        self,
        kernel_size: IntOrTuple = 2,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        filt: int = 4,
        blur_padding_mode: str = "reflect",
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation)
        self.filt = _check_filt(filt)
        self.blur_padding_mode = check_mode(blur_padding_mode, "blur_padding_mode")
        _register_filter(self, self.filt)

    def fn_kwargs(self) -> dict[str, Any]:
        return dict(
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
            filt=self.filt, blur_padding_mode=self.blur_padding_mode, weight=self.blur_filter,
        )

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"
        if self.dilation != 1:
            text += f", dilation={self.dilation}"
        return text + f", filt={self.filt}, blur_padding_mode={self.blur_padding_mode!r}"


class BlurPool1d(_BlurPoolNd):
    _dim = 1


class BlurPool2d(_BlurPoolNd):
    _dim = 2


class BlurPool3d(_BlurPoolNd):
    _dim = 3


class MaxBlurPool1d(_MaxBlurPoolNd):
    _dim = 1


class MaxBlurPool2d(_MaxBlurPoolNd):
    _dim = 2


class MaxBlurPool3d(_MaxBlurPoolNd):
    _dim = 3


# registry name -> (1-d, 2-d, 3-d) module classes
POOLS: dict[str, tuple[type, type, type]] = {
    "blurpool": (BlurPool1d, BlurPool2d, BlurPool3d),
    "maxblur": (MaxBlurPool1d, MaxBlurPool2d, MaxBlurPool3d),
}

"""Modules for order statistics, thin shells over :mod:`poolkit.functional.order`."""

from __future__ import annotations

from typing import Any

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding
from .base import _PoolNd

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "MinPool1d", "MinPool2d", "MinPool3d"]


class _MaxPoolNd(_PoolNd):
    """Max pooling; see :func:`poolkit.functional.max_pool` for the arguments.

    Example:
        >>> MaxPool2d(2)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    _has_dilation = True
    _repr_keys = ("return_indices",)
    fn = staticmethod(PF.max_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
        self.return_indices = return_indices

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "return_indices": self.return_indices}


class _MinPoolNd(_MaxPoolNd):
    """Min pooling; see :func:`poolkit.functional.min_pool`."""

    fn = staticmethod(PF.min_pool)


class MaxPool1d(_MaxPoolNd):
    _dim = 1


class MaxPool2d(_MaxPoolNd):
    _dim = 2


class MaxPool3d(_MaxPoolNd):
    _dim = 3


class MinPool1d(_MinPoolNd):
    _dim = 1


class MinPool2d(_MinPoolNd):
    _dim = 2


class MinPool3d(_MinPoolNd):
    _dim = 3


POOLS: dict[str, tuple[type, type, type]] = {
    "max": (MaxPool1d, MaxPool2d, MaxPool3d),
    "min": (MinPool1d, MinPool2d, MinPool3d),
}

"""Modules for the power-mean family, thin shells over :mod:`poolkit.functional.power`."""

from __future__ import annotations

from typing import Any

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding
from .base import _PoolNd

__all__ = ["AvgPool1d", "AvgPool2d", "AvgPool3d"]


class _AvgPoolNd(_PoolNd):
    """Average pooling; see :func:`poolkit.functional.avg_pool` for the arguments.

    Example:
        >>> AvgPool1d(2)(torch.arange(4.0).view(1, 1, 4))
        tensor([[[0.5000, 2.5000]]])
    """

    _repr_keys = ("count_include_pad", "divisor_override")
    fn = staticmethod(PF.avg_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def fn_kwargs(self) -> dict[str, Any]:
        return {
            **self.window_kwargs(),
            "count_include_pad": self.count_include_pad,
            "divisor_override": self.divisor_override,
        }


class AvgPool1d(_AvgPoolNd):
    _dim = 1


class AvgPool2d(_AvgPoolNd):
    _dim = 2


class AvgPool3d(_AvgPoolNd):
    _dim = 3


POOLS: dict[str, tuple[type, type, type]] = {
    "avg": (AvgPool1d, AvgPool2d, AvgPool3d),
}

"""Modules for order statistics, thin shells over :mod:`poolkit.functional.order`."""

from __future__ import annotations

from typing import Any

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding
from ..functional.order import _check_k
from .base import _PoolNd

__all__ = [
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "MedianPool1d", "MedianPool2d", "MedianPool3d",
    "MinPool1d", "MinPool2d", "MinPool3d",
    "RangePool1d", "RangePool2d", "RangePool3d",
    "TopKPool1d", "TopKPool2d", "TopKPool3d",
]


class _MaxPoolNd(_PoolNd):
    """Max pooling, a drop-in for ``torch.nn.MaxPool1d/2d/3d``; see :func:`poolkit.functional.max_pool`.

    torch's arguments in torch's order (``kernel_size, stride=None, padding=0, dilation=1,
    return_indices=False, ceil_mode=False``); poolkit's extras (``padding_mode``, ``output_size``)
    are keyword-only. As in torch, ``stride`` defaults to ``kernel_size``.

    Example:
        >>> import torch
        >>> MaxPool2d(2)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    _has_dilation = True
    _repr_keys = ("return_indices",)
    _unbatched = True
    fn = staticmethod(PF.max_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
        *,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        if stride is None and output_size is None:
            stride = kernel_size  # torch's modules store the default stride
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
        self.return_indices = return_indices

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "return_indices": self.return_indices}


class _AdaptiveMaxPoolNd(_PoolNd):
    """Adaptive max pooling, a drop-in for ``torch.nn.AdaptiveMaxPool1d/2d/3d``: ``output_size`` cells, cell
    ``i`` the max over ``[floor(i L / out), ceil((i + 1) L / out))`` (uneven windows where ``out`` does not
    divide ``L``); ``None`` in ``output_size`` keeps that input size. See :func:`poolkit.functional.max_pool`.

    Args:
        output_size: int or one size (or ``None``) per spatial dim.
        return_indices: also return the flat indices of the maxima (torch's).

    Example:
        >>> import torch
        >>> AdaptiveMaxPool1d(2)(torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0]]]))
        tensor([[[5., 4.]]])
    """

    _repr_keys = ("return_indices",)
    _unbatched = True
    fn = staticmethod(PF.max_pool)

    def __init__(self, output_size: OutputSize, return_indices: bool = False) -> None:
        if output_size is None:
            raise ValueError("output_size must be an int or a tuple of ints (None entries keep that size), got None")
        super().__init__(None, None, 0, 1, False, "zeros", output_size)
        self.return_indices = return_indices

    def fn_kwargs(self) -> dict[str, Any]:
        return {"output_size": self.output_size, "return_indices": self.return_indices}


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    _dim = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    _dim = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    _dim = 3


class _MinPoolNd(_MaxPoolNd):
    """Min pooling, with :class:`MaxPool2d`'s arguments; see :func:`poolkit.functional.min_pool`."""

    fn = staticmethod(PF.min_pool)
    _unbatched = False  # no torch namesake: poolkit's (N, C, *spatial) contract, a wrong rank is refused


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


class _WindowPoolNd(_PoolNd):
    """Order statistic over each window with dilation and no extra parameters."""

    _has_dilation = True


class _MedianPoolNd(_WindowPoolNd):
    """Median pooling (lower median for even windows); see :func:`poolkit.functional.median_pool`.

    Example:
        >>> import torch
        >>> MedianPool1d(3)(torch.tensor([[[3.0, 1.0, 2.0, 9.0, 7.0, 8.0]]]))
        tensor([[[2., 8.]]])
    """

    fn = staticmethod(PF.median_pool)


class _RangePoolNd(_WindowPoolNd):
    """Range (max − min) pooling; see :func:`poolkit.functional.range_pool`.

    Example:
        >>> import torch
        >>> RangePool2d(2)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.range_pool)


class _TopKPoolNd(_PoolNd):
    """Mean of the ``k`` largest values per window; see :func:`poolkit.functional.topk_pool`.

    Example:
        >>> import torch
        >>> TopKPool1d(3, k=2)(torch.tensor([[[3.0, 1.0, 2.0, 9.0, 7.0, 8.0]]]))
        tensor([[[2.5000, 8.5000]]])
    """

    _has_dilation = True
    _repr_keys = ("k",)
    fn = staticmethod(PF.topk_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        k: int = 2,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
        self.k = _check_k(k)

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "k": self.k}


class MedianPool1d(_MedianPoolNd):
    _dim = 1


class MedianPool2d(_MedianPoolNd):
    _dim = 2


class MedianPool3d(_MedianPoolNd):
    _dim = 3


class TopKPool1d(_TopKPoolNd):
    _dim = 1


class TopKPool2d(_TopKPoolNd):
    _dim = 2


class TopKPool3d(_TopKPoolNd):
    _dim = 3


class RangePool1d(_RangePoolNd):
    _dim = 1


class RangePool2d(_RangePoolNd):
    _dim = 2


class RangePool3d(_RangePoolNd):
    _dim = 3


POOLS: dict[str, tuple[type, type, type]] = {
    "max": (MaxPool1d, MaxPool2d, MaxPool3d),
    "min": (MinPool1d, MinPool2d, MinPool3d),
    "median": (MedianPool1d, MedianPool2d, MedianPool3d),
    "topk": (TopKPool1d, TopKPool2d, TopKPool3d),
    "range": (RangePool1d, RangePool2d, RangePool3d),
}

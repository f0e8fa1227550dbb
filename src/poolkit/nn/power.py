"""Modules for the power-mean family (avg, lp, gem, lse, softpool, mixed, gated), thin shells over
:mod:`poolkit.functional.power`."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding, ntuple
from .base import _PoolNd

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "GatedPool1d", "GatedPool2d", "GatedPool3d",
    "GeMPool1d", "GeMPool2d", "GeMPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "LSEPool1d", "LSEPool2d", "LSEPool3d",
    "MixedPool1d", "MixedPool2d", "MixedPool3d",
    "SoftPool1d", "SoftPool2d", "SoftPool3d",
]


class _AvgPoolNd(_PoolNd):
    """Average pooling, a drop-in for ``torch.nn.AvgPool1d/2d/3d``; see :func:`poolkit.functional.avg_pool`.

    torch's arguments in torch's order (``kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None``; torch's ``AvgPool1d`` has no ``divisor_override``,
    so there it is keyword-only); poolkit's extras (``padding_mode``, ``output_size``) are keyword-only.
    As in torch, ``stride`` defaults to ``kernel_size``.

    Example:
        >>> AvgPool1d(2)(torch.arange(4.0).view(1, 1, 4))
        tensor([[[0.5000, 2.5000]]])
    """

    _repr_keys = ("count_include_pad", "divisor_override")
    _unbatched = True
    fn = staticmethod(PF.avg_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        *,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        if stride is None and output_size is None:
            stride = kernel_size  # torch's modules store the default stride
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

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        *,
        divisor_override: int | None = None,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                         padding_mode=padding_mode, output_size=output_size)


class _AdaptiveAvgPoolNd(_PoolNd):
    """Adaptive average pooling, a drop-in for ``torch.nn.AdaptiveAvgPool1d/2d/3d``: ``output_size`` cells,
    cell ``i`` the mean over ``[floor(i L / out), ceil((i + 1) L / out))``; ``None`` in ``output_size``
    keeps that input size. See :func:`poolkit.functional.avg_pool`.

    Example:
        >>> AdaptiveAvgPool1d(2)(torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]]))
        tensor([[[2., 4.]]])
    """

    _unbatched = True
    fn = staticmethod(PF.avg_pool)

    def __init__(self, output_size: OutputSize) -> None:
        if output_size is None:
            raise ValueError("output_size must be an int or a tuple of ints (None entries keep that size), got None")
        super().__init__(None, None, 0, 1, False, "zeros", output_size)

    def fn_kwargs(self) -> dict[str, Any]:
        return {"output_size": self.output_size}


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    _dim = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    _dim = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    _dim = 3


class AvgPool2d(_AvgPoolNd):
    _dim = 2


class AvgPool3d(_AvgPoolNd):
    _dim = 3


POOLS: dict[str, tuple[type, type, type]] = {
    "avg": (AvgPool1d, AvgPool2d, AvgPool3d),
}
#: spec keys another name stands for, per pool: ``"lp:p=4"`` is ``norm_type=4``
SPEC_ALIASES: dict[str, dict[str, str]] = {"lp": {"p": "norm_type"}}


def _check_channels(channels: object, name: str, needed: bool) -> int | None:
    if channels is None:
        if needed:
            raise ValueError(f"{name} needs channels=<number of input channels> (an int >= 1), got None")
        return None
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an int >= 1 or None, got {channels!r}")
    return channels


class _ChannelsMixin:
    """Refuses input whose channel count differs from the module's learned per-channel tensors."""

    channels: int | None

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)  # type: ignore[misc]
        if getattr(self, "_needs_channels", False) and self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"input must have {self.channels} channels (channels={self.channels}), got {x.shape[1]}")


class _LPPoolNd(_PoolNd):
    """Power-sum pooling ``(sum |x|^p)^(1/p)``, a drop-in for ``torch.nn.LPPool1d/2d/3d``; see
    :func:`poolkit.functional.lp_pool`.

    torch's arguments in torch's order: ``norm_type`` (the power ``p``, ``>= 1``, ``math.inf`` allowed),
    ``kernel_size``, ``stride=None``, ``ceil_mode=False``; poolkit's extras (``absolute``, ``padding``,
    ``padding_mode``, ``output_size``) are keyword-only. By default torch's values on signed input too
    (the signed sum ``S = sum x^p`` then ``S^(1/p)``: NaN where torch's is, e.g. a negative ``S`` with a
    fractional ``1/p``); ``absolute=True`` pools ``|x|^p``, the norm, finite on any input. In a spec
    string the power is ``p`` (``"lp:p=4"``) or ``norm_type``. ``p`` reads ``norm_type``.

    Example:
        >>> LPPool1d(2, 2)(torch.tensor([[[3.0, 4.0]]]))
        tensor([[[5.]]])
    """

    _repr_keys = ("norm_type",)
    _unbatched = True
    fn = staticmethod(PF.lp_pool)

    def __init__(
        self,
        norm_type: float = 2.0,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        ceil_mode: bool = False,
        *,
        absolute: bool = False,
        padding: Padding = 0,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        if not isinstance(absolute, bool):
            raise TypeError(f"absolute must be a bool, got {type(absolute).__name__}")
        if kernel_size is None and output_size is None:
            raise TypeError(f"{type(self).__name__} needs kernel_size (its second argument, after norm_type) "
                            "or output_size=")
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or not norm_type >= 1:
            raise ValueError(f"norm_type (p) must be a float >= 1 (math.inf allowed), got {norm_type!r}")
        self.norm_type = float(norm_type)
        self.absolute = absolute

    @property
    def p(self) -> float:
        return self.norm_type

    def fn_kwargs(self) -> dict[str, Any]:
        kw = {**self.window_kwargs(), "p": self.norm_type}
        if self.absolute:
            kw["absolute"] = True
        return kw

    def extra_repr(self) -> str:  # torch's order: norm_type first
        base = super().extra_repr().rsplit(", norm_type=", 1)[0]
        return f"norm_type={self.norm_type:g}, {base}" + (", absolute=True" if self.absolute else "")


class _GeMPoolNd(_ChannelsMixin, _PoolNd):
    """Generalized-mean pooling with a learnable power; see :func:`poolkit.functional.gem_pool`.

    ``p`` (initial 3) is an ``nn.Parameter`` when ``learnable`` (one value, or one per
    channel with ``per_channel=True``, which needs ``channels``); otherwise a fixed float.

    Example:
        >>> GeMPool2d(output_size=1)(torch.rand(2, 8, 7, 7)).shape
        torch.Size([2, 8, 1, 1])
    """

    _repr_keys = ("learnable", "per_channel", "eps", "count_include_pad")
    fn = staticmethod(PF.gem_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        p: float = 3.0,
        eps: float = 1e-6,
        learnable: bool = True,
        per_channel: bool = False,
        channels: int | None = None,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
            raise ValueError(f"p must be a float > 0, got {p!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a float > 0, got {eps!r}")
        self._needs_channels = bool(per_channel)
        self.channels = _check_channels(channels, "GeM pooling with per_channel=True", bool(per_channel))
        self.count_include_pad = count_include_pad
        self.eps = float(eps)
        self.learnable = bool(learnable)
        self.per_channel = bool(per_channel)
        shape: tuple[int, ...] = (self.channels,) if self.channels is not None and per_channel else ()
        value = torch.full(shape, float(p), device=device, dtype=dtype)
        if learnable:
            self.p: nn.Parameter | Tensor = nn.Parameter(value)
        else:
            self.register_buffer("p", value)

    def fn_kwargs(self) -> dict[str, Any]:
        kw = {"count_include_pad": self.count_include_pad, "p": self.p, "eps": self.eps}
        return {**self.window_kwargs(), **kw}

    def extra_repr(self) -> str:
        p = self.p.detach()
        shown = f"{float(p):g}" if p.ndim == 0 else f"<{p.numel()} values>"
        return f"{super().extra_repr()}, p={shown}"


class _LSEPoolNd(_PoolNd):
    """Log-mean-exp pooling, a smooth max with inverse temperature ``beta``; see
    :func:`poolkit.functional.lse_pool`.

    With ``learnable=True`` ``beta = softplus(beta_raw)`` with ``beta_raw`` an
    ``nn.Parameter`` (so ``beta`` stays positive); otherwise ``beta`` is a fixed float.

    Example:
        >>> LSEPool1d(2, beta=1e-4)(torch.tensor([[[1.0, 3.0]]]))
        tensor([[[2.0001]]])
    """

    _repr_keys = ("learnable", "count_include_pad")
    fn = staticmethod(PF.lse_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        beta: float = 1.0,
        learnable: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < math.inf:
            raise ValueError(f"beta must be a finite float > 0, got {beta!r}")
        self.count_include_pad = count_include_pad
        self.learnable = bool(learnable)
        if learnable:
            # inverse softplus, stable for large beta
            raw = float(beta) + math.log(-math.expm1(-float(beta)))
            self.beta_raw = nn.Parameter(torch.tensor(raw, device=device, dtype=dtype))
        else:
            self._beta = float(beta)

    @property
    def beta(self) -> float | Tensor:
        return F.softplus(self.beta_raw) if self.learnable else self._beta

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "count_include_pad": self.count_include_pad, "beta": self.beta}

    def extra_repr(self) -> str:
        beta = float(F.softplus(self.beta_raw.detach())) if self.learnable else self._beta
        return f"{super().extra_repr()}, beta={beta:g}"


class _SoftPoolNd(_PoolNd):
    """SoftPool, the softmax-weighted mean of each window; see :func:`poolkit.functional.softpool`.

    Example:
        >>> SoftPool1d(2)(torch.tensor([[[0.0, 1e4]]]))
        tensor([[[10000.]]])
    """

    fn = staticmethod(PF.softpool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)


class _MixedPoolNd(_PoolNd):
    """Mixed pooling ``alpha max + (1 - alpha) avg``; see :func:`poolkit.functional.mixed_pool`.

    With ``learnable=True`` ``alpha = sigmoid(alpha_raw)``, ``alpha_raw`` an ``nn.Parameter``
    (one per layer); otherwise ``alpha`` is a fixed float in ``[0, 1]``.

    Example:
        >>> MixedPool1d(2, alpha=0.25)(torch.tensor([[[1.0, 3.0]]]))
        tensor([[[2.2500]]])
    """

    _repr_keys = ("learnable", "count_include_pad")
    fn = staticmethod(PF.mixed_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        alpha: float = 0.5,
        learnable: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be a float in [0, 1], got {alpha!r}")
        if learnable and not 0 < alpha < 1:
            raise ValueError(f"a learnable alpha = sigmoid(alpha_raw) must start in (0, 1), got {alpha!r}")
        self.count_include_pad = count_include_pad
        self.learnable = bool(learnable)
        if learnable:
            raw = math.log(alpha / (1 - alpha))
            self.alpha_raw = nn.Parameter(torch.tensor(raw, device=device, dtype=dtype))
        else:
            self._alpha = float(alpha)

    @property
    def alpha(self) -> float | Tensor:
        return torch.sigmoid(self.alpha_raw) if self.learnable else self._alpha

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "count_include_pad": self.count_include_pad, "alpha": self.alpha}

    def extra_repr(self) -> str:
        alpha = float(torch.sigmoid(self.alpha_raw.detach())) if self.learnable else self._alpha
        return f"{super().extra_repr()}, alpha={alpha:g}"


class _GatedPoolNd(_ChannelsMixin, _PoolNd):
    """Gated max-average pooling (Lee, Gallagher & Tu, 2016); see :func:`poolkit.functional.gated_pool`.

    The gate kernel ``weight`` is ``(channels, 1, *kernel)`` with ``per_channel=True``
    or ``(1, 1, *kernel)`` shared by every channel (the paper's one gate per layer,
    the default); the adaptive form holds one scalar per channel (or one). It starts
    at zero, i.e. as mixed pooling with ``alpha = 0.5``, and is learned from there.
    ``channels`` is required.

    Example:
        >>> GatedPool2d(2, channels=3)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    _repr_keys = ("channels", "per_channel", "count_include_pad")
    _needs_channels = True
    fn = staticmethod(PF.gated_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        channels: int | None = None,
        per_channel: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        self.channels = _check_channels(channels, "gated pooling", True)
        self.per_channel = bool(per_channel)
        self.count_include_pad = count_include_pad
        c = self.channels if self.channels is not None and per_channel else 1
        if output_size is None:
            shape: tuple[int, ...] = (c, 1, *ntuple(kernel_size, self._dim, "kernel_size"))
        else:
            shape = (c,)
        self.weight = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "count_include_pad": self.count_include_pad, "weight": self.weight}


class LPPool1d(_LPPoolNd):
    _dim = 1


class LPPool2d(_LPPoolNd):
    _dim = 2


class LPPool3d(_LPPoolNd):
    _dim = 3


class GeMPool1d(_GeMPoolNd):
    _dim = 1


class GeMPool2d(_GeMPoolNd):
    _dim = 2


class GeMPool3d(_GeMPoolNd):
    _dim = 3


class LSEPool1d(_LSEPoolNd):
    _dim = 1


class LSEPool2d(_LSEPoolNd):
    _dim = 2


class LSEPool3d(_LSEPoolNd):
    _dim = 3


class SoftPool1d(_SoftPoolNd):
    _dim = 1


class SoftPool2d(_SoftPoolNd):
    _dim = 2


class SoftPool3d(_SoftPoolNd):
    _dim = 3


class MixedPool1d(_MixedPoolNd):
    _dim = 1


class MixedPool2d(_MixedPoolNd):
    _dim = 2


class MixedPool3d(_MixedPoolNd):
    _dim = 3


class GatedPool1d(_GatedPoolNd):
    _dim = 1


class GatedPool2d(_GatedPoolNd):
    _dim = 2


class GatedPool3d(_GatedPoolNd):
    _dim = 3


POOLS.update(
    {
        "lp": (LPPool1d, LPPool2d, LPPool3d),
        "gem": (GeMPool1d, GeMPool2d, GeMPool3d),
        "lse": (LSEPool1d, LSEPool2d, LSEPool3d),
        "softpool": (SoftPool1d, SoftPool2d, SoftPool3d),
        "mixed": (MixedPool1d, MixedPool2d, MixedPool3d),
        "gated": (GatedPool1d, GatedPool2d, GatedPool3d),
    }
)

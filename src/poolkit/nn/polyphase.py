"""Modules for polyphase sampling, thin shells over :mod:`poolkit.functional.polyphase`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import functional as PF
from ..functional._window import IntOrTuple, check_input, ntuple
from ..functional.antialias import check_mode
from ..functional.polyphase import APS_NORMS
from .base import _PoolNd

__all__ = [
    "ApsPool1d",
    "ApsPool2d",
    "ApsPool3d",
    "ApsUnpool1d",
    "ApsUnpool2d",
    "ApsUnpool3d",
    "LpsPool1d",
    "LpsPool2d",
    "LpsPool3d",
]

_SKIP = {
    "kernel_larger": "kernel_size is the subsampling factor; a factor past the input size is well defined "
    "(one sample per candidate, output size 1)",
}


class _ApsPoolNd(_PoolNd):
    """Adaptive polyphase sampling; see :func:`poolkit.functional.aps_pool`.

    ``kernel_size`` is the subsampling factor (``stride`` overrides it). The
    output is identical for every circular shift of the input.

    Example:
        >>> import torch
        >>> ApsPool2d(2)(torch.rand(1, 3, 7, 7)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.aps_pool)
    subsampling: ClassVar[bool] = True
    conformance_skip: ClassVar[dict[str, str]] = dict(_SKIP)

    def __init__(
        self,
        kernel_size: IntOrTuple = 2,
        stride: IntOrTuple | None = None,
        norm: str = "l2",
        filt: int = 1,
        blur_padding_mode: str = "circular",
        return_phase: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride)
        if norm not in APS_NORMS:
            raise ValueError(f"norm must be one of {APS_NORMS}, got {norm!r}")
        if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
            raise ValueError(f"filt (the binomial filter size) must be an int >= 1, got {filt!r}")
        self.norm = norm
        self.filt = filt
        self.blur_padding_mode = check_mode(blur_padding_mode, "blur_padding_mode")
        self.return_phase = return_phase
        # the blur's fixed filter (filt > 1) as a non-persistent buffer: moved by .to(), never rebuilt per call
        self.register_buffer("blur_filter", PF.binomial_filter(filt, self._dim) if filt > 1 else None,
                             persistent=False)

    def fn_kwargs(self) -> dict[str, Any]:
        return dict(kernel_size=self.kernel_size, stride=self.stride, norm=self.norm, filt=self.filt,
                    blur_padding_mode=self.blur_padding_mode, return_phase=self.return_phase,
                    blur_weight=self.blur_filter)

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, norm={self.norm!r}"
        if self.filt != 1:
            text += f", filt={self.filt}, blur_padding_mode={self.blur_padding_mode!r}"
        return text + (", return_phase=True" if self.return_phase else "")


class _LpsPoolNd(_PoolNd):
    """Learnable polyphase sampling; see :func:`poolkit.functional.lps_pool`.

    A circular ``conv(channels -> hidden, scorer_kernel) -> ReLU -> conv(hidden -> 1)``
    scores every position; Gumbel-softmax over the candidates in training,
    hard argmax in eval. The temperature ``tau`` is a buffer: anneal it with
    ``pool.tau.fill_(0.5)``.

    Example:
        >>> import torch
        >>> LpsPool2d(2, channels=3)(torch.rand(1, 3, 7, 7)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.lps_pool)
    subsampling: ClassVar[bool] = True
    conformance_skip: ClassVar[dict[str, str]] = _SKIP
    tau: Tensor

    def __init__(
        self,
        kernel_size: IntOrTuple = 2,
        stride: IntOrTuple | None = None,
        channels: int | None = None,
        hidden: int = 8,
        scorer_kernel: int = 3,
        tau: float = 1.0,
        return_phase: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(kernel_size, stride)
        for name, v in (("channels", channels), ("hidden", hidden), ("scorer_kernel", scorer_kernel)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1 (lps needs the input's channel count), got {v!r}")
        if not float(tau) > 0:
            raise ValueError(f"tau (the Gumbel-softmax temperature) must be > 0, got {tau!r}")
        assert channels is not None
        d = self._dim
        kw = dict(device=device, dtype=dtype)
        self.channels, self.hidden, self.scorer_kernel = channels, hidden, scorer_kernel
        self.return_phase = return_phase
        self.weight = nn.Parameter(torch.empty((hidden, channels) + (scorer_kernel,) * d, **kw))  # type: ignore[arg-type]
        self.bias = nn.Parameter(torch.empty(hidden, **kw))  # type: ignore[arg-type]
        self.proj_weight = nn.Parameter(torch.empty((1, hidden) + (1,) * d, **kw))  # type: ignore[arg-type]
        self.proj_bias = nn.Parameter(torch.empty(1, **kw))  # type: ignore[arg-type]
        self.register_buffer("tau", torch.tensor(float(tau), device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w, b in ((self.weight, self.bias), (self.proj_weight, self.proj_bias)):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # torch's conv default
            bound = 1 / math.sqrt(w[0].numel())
            nn.init.uniform_(b, -bound, bound)

    def fn_kwargs(self) -> dict[str, Any]:
        return dict(weight=self.weight, bias=self.bias, proj_weight=self.proj_weight, proj_bias=self.proj_bias,
                    kernel_size=self.kernel_size, stride=self.stride, tau=self.tau, training=self.training,
                    return_phase=self.return_phase)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, channels={self.channels}, "
                f"hidden={self.hidden}, scorer_kernel={self.scorer_kernel}, tau={float(self.tau):g}")


class _ApsUnpoolNd(nn.Module):
    """Inverse of :class:`ApsPool2d` etc.: ``forward(y, phase, output_size=None)``; see
    :func:`poolkit.functional.aps_unpool`.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 3, 7)
        >>> y, phase = ApsPool1d(2, return_phase=True)(x)
        >>> ApsUnpool1d(2)(y, phase, output_size=(7,)).shape
        torch.Size([1, 3, 7])
    """

    _dim: ClassVar[int] = 0

    def __init__(self, kernel_size: IntOrTuple = 2, stride: IntOrTuple | None = None) -> None:
        super().__init__()
        ntuple(kernel_size, self._dim, "kernel_size")
        if stride is not None:
            ntuple(stride, self._dim, "stride")
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, y: Tensor, phase: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        check_input(y, "y", dims=self._dim)
        return PF.aps_unpool(y, phase, self.kernel_size, self.stride, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ApsPool1d(_ApsPoolNd):
    _dim = 1


class ApsPool2d(_ApsPoolNd):
    _dim = 2


class ApsPool3d(_ApsPoolNd):
    _dim = 3


class LpsPool1d(_LpsPoolNd):
    _dim = 1


class LpsPool2d(_LpsPoolNd):
    _dim = 2


class LpsPool3d(_LpsPoolNd):
    _dim = 3


class ApsUnpool1d(_ApsUnpoolNd):
    _dim = 1


class ApsUnpool2d(_ApsUnpoolNd):
    _dim = 2


class ApsUnpool3d(_ApsUnpoolNd):
    _dim = 3


# registry name -> (1-d, 2-d, 3-d) module classes
POOLS: dict[str, tuple[type, type, type]] = {
    "aps": (ApsPool1d, ApsPool2d, ApsPool3d),
    "lps": (LpsPool1d, LpsPool2d, LpsPool3d),
}

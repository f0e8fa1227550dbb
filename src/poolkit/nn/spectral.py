"""DiffStride modules: spectral pooling whose stride per axis is a learned parameter.

See :func:`poolkit.functional.diffstride_pool` for the operator. The module holds
the stride (one value shared by every axis, or one per axis), its bounds and the
ramp width; the stride is trained with the weights by any optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import functional as PF
from ..functional._window import check_input
from ..functional.spectral import _check_smoothness

__all__ = ["DiffStridePool1d", "DiffStridePool2d", "DiffStridePool3d"]


def _initial(value: object, dim: int, name: str) -> list[float]:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * dim
    if len(items) != dim:
        raise ValueError(f"{name} must be a number or {dim} numbers (one per spatial axis), got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number >= 1 or {dim} of them, got {value!r}")
        if not (v >= 1) or math.isinf(v):
            raise ValueError(f"{name} (the initial stride) must be finite and >= 1, got {value!r}")
        out.append(float(v))
    return out


class _DiffStridePoolNd(nn.Module):
    """Spectral pooling with a learnable stride (DiffStride, Riad et al., ICLR 2022).

    The output size follows the stride: per axis of ``n`` cells it is
    ``min(n, 2 * ceil(max(n / s, 2) / 2 + R))`` (see
    :func:`poolkit.functional.spectral_output_size`), so what follows must accept a
    changing size (a global pool, an adaptive pool, or a spectral head).

    Args:
        kernel_size: the initial stride when ``stride`` is not given; there is no window,
            this keeps the registry's meaning of ``kernel_size`` as the downsampling factor.
        stride: the initial stride, a number or one per axis (default 2, the paper's).
        smoothness: ramp width ``R`` in frequency bins (default 4, the paper's).
        shared: one stride for every axis (needs equal initial values) instead of one per axis.
        lower: lowest stride (default 1); the size-dependent bound ``n / (n - R)`` also applies.
        upper: highest stride (default none).
        cropping: downsample by cropping (default); False keeps the size (learnable low-pass).
        learnable: the stride is a trained parameter (default); False makes it a buffer.
        channels: accepted for the registry; unused.
        device: device of the stride.
        dtype: dtype of the stride (default float32).

    Attributes:
        stride: the ``(1,)`` (shared) or ``(dim,)`` stride parameter.

    Example:
        >>> import torch
        >>> pool = DiffStridePool2d(stride=(2.0, 3.0), smoothness=1.0)
        >>> pool(torch.rand(1, 3, 24, 24)).shape
        torch.Size([1, 3, 14, 10])
        >>> pool.strides()
        [2.0, 3.0]
    """

    _dim: ClassVar[int] = 0
    _kernel_is_stride: ClassVar[bool] = True  # kernel_size names the initial stride (registry: no default window)
    fn = staticmethod(PF.diffstride_pool)
    #: the output size follows a learned parameter (a fixed-size head after it must freeze it)
    size_follows_parameters: ClassVar[bool] = True
    conformance_skip: ClassVar[dict[str, str]] = {
        "kernel_larger": "kernel_size is the initial stride, not a window: a stride past the input size is "
        "well defined (the crop keeps at least the ramp, as in the paper)",
    }

    def __init__(
        self,
        kernel_size: float | Sequence[float] | None = None,
        stride: float | Sequence[float] | None = None,
        smoothness: float = 4.0,
        shared: bool = False,
        lower: float = 1.0,
        upper: float | None = None,
        cropping: bool = True,
        learnable: bool = True,
        channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if stride is not None and kernel_size is not None and _initial(stride, self._dim, "stride") != _initial(
            kernel_size, self._dim, "kernel_size"
        ):
            raise ValueError(f"kernel_size ({kernel_size!r}) and stride ({stride!r}) both set the initial stride of "
                             "DiffStridePool and disagree: give one of them")
        name = "stride" if stride is not None else "kernel_size"
        init = _initial(stride if stride is not None else (kernel_size if kernel_size is not None else 2.0),
                        self._dim, name)
        self.smoothness = _check_smoothness(smoothness)
        if isinstance(lower, bool) or not isinstance(lower, (int, float)) or not lower >= 1:
            raise ValueError(f"lower (the lowest stride) must be a number >= 1, got {lower!r}")
        if upper is not None and (isinstance(upper, bool) or not isinstance(upper, (int, float)) or upper < lower):
            raise ValueError(f"upper must be None or a number >= lower ({lower}), got {upper!r}")
        if any(v < lower or (upper is not None and v > upper) for v in init):
            raise ValueError(f"the initial {name} {init} must lie within [lower, upper] = [{lower}, {upper}]")
        if shared and len(set(init)) > 1:
            raise ValueError(f"shared=True needs the same initial stride on every axis, got {init}")
        self.shared = bool(shared)
        self.lower = float(lower)
        self.upper = None if upper is None else float(upper)
        self.cropping = bool(cropping)
        self.learnable = bool(learnable)
        value = torch.tensor(init[:1] if shared else init, device=device, dtype=dtype or torch.float32)
        if learnable:
            self.stride = nn.Parameter(value)
        else:
            self.register_buffer("stride", value)

    def strides(self) -> list[float]:
        """The current stride per axis as floats, within the user's bounds (reads the device)."""
        vals = [float(v) for v in self.stride.detach().reshape(-1).tolist()]
        vals = vals * self._dim if self.shared else vals
        hi = math.inf if self.upper is None else self.upper
        return [min(max(v, self.lower), hi) for v in vals]

    def fn_kwargs(self) -> dict[str, Any]:
        return dict(stride=self.stride, smoothness=self.smoothness, lower=self.lower, upper=self.upper,
                    cropping=self.cropping)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, dims=self._dim)
        return PF.diffstride_pool(x, **self.fn_kwargs())

    def extra_repr(self) -> str:
        text = f"stride={[round(v, 4) for v in self.strides()]}, smoothness={self.smoothness}"
        if self.shared:
            text += ", shared=True"
        if self.lower != 1.0 or self.upper is not None:
            text += f", lower={self.lower}, upper={self.upper}"
        if not self.cropping:
            text += ", cropping=False"
        if not self.learnable:
            text += ", learnable=False"
        return text


class DiffStridePool1d(_DiffStridePoolNd):
    """1-D DiffStride pooling; see :class:`_DiffStridePoolNd` (input ``(N, C, L)``)."""

    _dim = 1


class DiffStridePool2d(_DiffStridePoolNd):
    """2-D DiffStride pooling; see :class:`_DiffStridePoolNd` (input ``(N, C, H, W)``)."""

    _dim = 2


class DiffStridePool3d(_DiffStridePoolNd):
    """3-D DiffStride pooling; see :class:`_DiffStridePoolNd` (input ``(N, C, D, H, W)``)."""

    _dim = 3


# registry name -> (1-d, 2-d, 3-d) module classes
POOLS: dict[str, tuple[type, type, type]] = {
    "diffstride": (DiffStridePool1d, DiffStridePool2d, DiffStridePool3d),
}

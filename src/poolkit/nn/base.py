"""Shared base of every poolkit pooling module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from ..functional._window import IntOrTuple, OutputSize, Padding, check_args, check_input

__all__ = ["_PoolNd"]


class _PoolNd(nn.Module):
    """Holds window configuration, validates it eagerly, checks the input rank.

    Subclasses set ``_dim`` (1, 2 or 3) and implement ``forward`` by calling
    their function with ``self.window_kwargs()`` plus their own parameters.
    ``_repr_keys`` lists extra attributes shown in ``repr``.
    """

    _dim: ClassVar[int] = 0
    _repr_keys: ClassVar[tuple[str, ...]] = ()
    _has_dilation: ClassVar[bool] = False
    #: the function this module wraps: ``forward(x) == fn(x, **self.fn_kwargs())``
    fn: ClassVar[Callable[..., Any]]
    #: conformance checks a pool opts out of, with the reason (see tests/test_conformance.py)
    conformance_skip: ClassVar[dict[str, str]] = {}
    #: torch namesakes accept unbatched ``(C, *spatial)`` input, as torch's modules do
    _unbatched: ClassVar[bool] = False
    #: output_size means the adaptive form, which takes no window (False where it is a target size beside a window)
    _output_size_is_adaptive: ClassVar[bool] = True

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__()
        if not self._has_dilation and dilation != 1:
            raise ValueError(f"dilation is not supported by {type(self).__name__}; accepted: 1")
        window = kernel_size is not None or stride is not None or padding not in (0, None)
        if self._output_size_is_adaptive and output_size is not None and window:
            raise ValueError(f"{type(self).__name__}: output_size={output_size!r} (the adaptive form) does not take "
                             f"kernel_size, stride or padding, got kernel_size={kernel_size!r}, stride={stride!r}, "
                             f"padding={padding!r}; give one form")
        check_args(self._dim, kernel_size, stride, padding, dilation, padding_mode, output_size)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode
        self.padding_mode = padding_mode
        self.output_size = output_size

    def window_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            padding_mode=self.padding_mode,
            output_size=self.output_size,
        )
        if self._has_dilation:
            kw["dilation"] = self.dilation
        return kw

    def fn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments (parameters and buffers included) passed to ``fn``."""
        return self.window_kwargs()

    def forward(self, x: Tensor) -> Any:
        if self._unbatched and isinstance(x, Tensor) and x.ndim == self._dim + 1:  # torch's unbatched form
            y = self.forward(x.unsqueeze(0))
            return tuple(t.squeeze(0) for t in y) if isinstance(y, tuple) else y.squeeze(0)
        self.check_input(x)
        return type(self).fn(x, **self.fn_kwargs())

    def check_input(self, x: Tensor) -> None:
        check_input(x, dims=self._dim)

    def extra_repr(self) -> str:
        if self.output_size is not None:
            parts = [f"output_size={self.output_size}"]
        else:
            parts = [f"kernel_size={self.kernel_size}", f"stride={self.stride}", f"padding={self.padding!r}"]
            if self._has_dilation and self.dilation != 1:
                parts.append(f"dilation={self.dilation}")
            if self.ceil_mode:
                parts.append("ceil_mode=True")
            if self.padding_mode != "zeros":
                parts.append(f"padding_mode={self.padding_mode!r}")
        parts += [f"{k}={getattr(self, k)!r}" for k in self._repr_keys]
        return ", ".join(parts)


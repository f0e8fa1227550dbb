"""Modules for the random pools, thin shells over :mod:`poolkit.functional.random`.

They draw in ``train()`` mode and are deterministic in ``eval()`` mode.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding, ntuple
from ..functional.random import Ratio, check_ratio
from .base import _PoolNd

__all__ = [
    "FractionalMaxPool1d", "FractionalMaxPool2d", "FractionalMaxPool3d",
    "StochasticPool1d", "StochasticPool2d", "StochasticPool3d",
]


class _StochasticPoolNd(_PoolNd):
    """Stochastic pooling (Zeiler & Fergus 2013); see :func:`poolkit.functional.stochastic_pool`.

    Draws one cell per window with probability proportional to its ReLU'd
    activation in training; returns the probability-weighted mean in eval.

    Args:
        generator: random source for the draws (optional, for reproducibility).

    Example:
        >>> pool = StochasticPool2d(2).eval()
        >>> pool(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    fn = staticmethod(PF.stochastic_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "training": self.training, "generator": self.generator}


class _FractionalMaxPoolNd(_PoolNd):
    """Fractional max pooling (Graham 2014); see :func:`poolkit.functional.fractional_max_pool`.

    A drop-in for ``torch.nn.FractionalMaxPool2d/3d``: torch's arguments in torch's order
    (``kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None``);
    poolkit's extras (``stride``, ``generator``) are keyword-only. Fresh pseudo-random windows on
    every call in training; in eval poolkit uses a fixed grid (samples 0.5, deterministic) where torch
    keeps drawing, unless ``_random_samples`` is given (then both use it, in either mode).
    ``output_ratio`` defaults to 0.5 (halving) when neither it nor ``output_size`` is given (torch
    requires one); ``output_size=1`` without ``kernel_size`` is the global max.

    Args:
        kernel_size: window size; optional with ``output_size``.
        stride: mean step between windows (the windows themselves are pseudo-random): the output
            then has max pooling's size ``floor((L - kernel_size) / stride) + 1``, so a fractional
            pool can stand in for ``MaxPoolNd(kernel_size, stride)``.
        output_size: output size per dim.
        output_ratio: output size as a fraction of the input, in ``(0, 1)``.
        return_indices: also return the flat argmax indices.
        _random_samples: fixed samples in ``[0, 1)``, shape ``(N, C, dims)`` as torch's (optional).
        generator: random source for the samples (optional).

    Example:
        >>> FractionalMaxPool1d(2)(torch.rand(1, 3, 10)).shape
        torch.Size([1, 3, 5])
    """

    fn = staticmethod(PF.fractional_max_pool)
    _unbatched = True  # torch's (C, *spatial) form (handled in forward)
    _output_size_is_adaptive = False  # a target size beside the window (torch's kernel_size + output_size)
    conformance_skip: ClassVar[dict[str, str]] = {
        "shape": "output size is output_size or int(L * output_ratio), not the max-pool stride/padding formula",
        "global": "the suite's kernel_size=5 window on a 5-cell input cannot fit the default output_ratio=0.5 "
        "(output 2 needs kernel <= 4); the global form (output_size=1) is tested in tests/functional/test_random.py",
    }

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        output_size: OutputSize = None,
        output_ratio: Ratio | None = None,
        return_indices: bool = False,
        _random_samples: Tensor | None = None,
        *,
        stride: IntOrTuple | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        given = [n for n, v in (("stride", stride), ("output_size", output_size), ("output_ratio", output_ratio))
                 if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of stride, output_size and output_ratio, got {', '.join(given)}")
        if stride is not None:
            if kernel_size is None:
                raise TypeError("kernel_size is required with stride")
            ntuple(stride, self._dim, "stride")
        if output_ratio is not None:
            check_ratio(output_ratio, self._dim)
        super().__init__(kernel_size, None, 0, 1, False, "zeros", output_size)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if _random_samples is not None and not isinstance(_random_samples, Tensor):
            raise TypeError(f"_random_samples must be a Tensor or None, got {type(_random_samples).__name__}")
        self.output_ratio = output_ratio
        self.return_indices = return_indices
        self.generator = generator
        self.mean_stride = stride
        self._random_samples = _random_samples

    def forward(self, x: Tensor) -> Any:
        if isinstance(x, Tensor) and x.ndim == self._dim + 1:  # torch's unbatched form
            y = self.forward(x.unsqueeze(0))
            return tuple(t.squeeze(0) for t in y) if isinstance(y, tuple) else y.squeeze(0)
        self.check_input(x)
        kw = self.fn_kwargs()
        if self.mean_stride is not None:  # max pooling's output size for this kernel and stride
            k = ntuple(self.kernel_size, self._dim, "kernel_size")
            s = ntuple(self.mean_stride, self._dim, "stride")
            sizes = [int(n) for n in x.shape[2:]]
            for n, ki in zip(sizes, k):
                if n < ki:
                    raise ValueError(f"kernel_size {tuple(k)} is larger than the input {tuple(sizes)}")
            kw["output_size"] = tuple((n - ki) // si + 1 for n, ki, si in zip(sizes, k, s))
        return type(self).fn(x, **kw)

    def fn_kwargs(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "output_size": self.output_size,
            "output_ratio": self.output_ratio,
            "return_indices": self.return_indices,
            "random_samples": self._random_samples,
            "training": self.training,
            "generator": self.generator,
        }

    def extra_repr(self) -> str:
        parts = [f"kernel_size={self.kernel_size}"]
        if self.output_size is not None:
            parts.append(f"output_size={self.output_size}")
        else:
            parts.append(f"output_ratio={0.5 if self.output_ratio is None else self.output_ratio}")
        if self.return_indices:
            parts.append("return_indices=True")
        return ", ".join(parts)


class StochasticPool1d(_StochasticPoolNd):
    _dim = 1


class StochasticPool2d(_StochasticPoolNd):
    _dim = 2


class StochasticPool3d(_StochasticPoolNd):
    _dim = 3


class FractionalMaxPool1d(_FractionalMaxPoolNd):
    _dim = 1


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    _dim = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    _dim = 3


# registry name -> (1-d, 2-d, 3-d) module classes
POOLS: dict[str, tuple[type, type, type]] = {
    "stochastic": (StochasticPool1d, StochasticPool2d, StochasticPool3d),
    "fractional_max": (FractionalMaxPool1d, FractionalMaxPool2d, FractionalMaxPool3d),
}

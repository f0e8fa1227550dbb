"""The reference CNN that the lab sweeps: one conv stack, pooling set by the lever.

>>> import torch
>>> net = LeverNet(1, 10, (40,), lever=0.5, pool="max")
>>> net(torch.rand(2, 1, 40)).shape
torch.Size([2, 10])
>>> net.head_size, net.head_parameters()
((6,), 1930)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

import poolkit

from .lever import Schedule, check_lever, pool_schedule

__all__ = ["LeverNet", "build_pool", "PADDING_MODES", "NORMS"]

PADDING_MODES = ("zeros", "circular")
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
#: Normalizations a conv block may have after its conv: none, or batch normalization.
NORMS = ("none", "batch")
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def build_pool(
    spec: str,
    dim: int,
    kernel: tuple[int, ...] | None,
    channels: int,
    size: tuple[int, ...] | None = None,
    padding_mode: str = "zeros",
) -> nn.Module:
    """A pooling module from a registry spec: ``kernel`` = stride, or global when ``kernel`` is None.

    Statistics without an adaptive form (blurpool, maxblur, aps, lps) pool globally
    with one window covering the map, which needs the map's ``size``. Blurs pad
    like the convolutions (``padding_mode``), unless the spec says otherwise:
    circular padding keeps the network exactly invariant at ``lever=1``. A pool whose
    output size follows a learned parameter (``diffstride``) is built with it frozen.
    """
    name, given = poolkit.parse_spec(spec)
    accepted = inspect.signature(poolkit.get_pool_class(name, dim)).parameters
    kw: dict[str, object] = {}
    if getattr(poolkit.get_pool_class(name, dim), "size_follows_parameters", False):
        # a learned stride would change the map size under the flatten head: it stays at the schedule's
        if given.get("learnable"):
            raise ValueError(f"{spec!r}: a learned stride changes the size the lever's flatten head needs; "
                             "use learnable=false here, or --levers learn to learn the amount of pooling")
        kw["learnable"] = False
    for key in ("blur_padding_mode", "padding_mode"):
        if key in accepted and "filt" in accepted and not ({"blur_padding_mode", "padding_mode"} & set(given)):
            kw[key] = padding_mode
            break
    if kernel is None:
        if "output_size" in accepted or size is None:
            return poolkit.create_pool(spec, dim=dim, channels=channels, output_size=1, **kw)
        return poolkit.create_pool(spec, dim=dim, kernel_size=size, stride=size, channels=channels, **kw)
    if all(k == 1 for k in kernel):
        return nn.Identity()
    return poolkit.create_pool(spec, dim=dim, kernel_size=kernel, stride=kernel, channels=channels, **kw)


def _first(y: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The map of a pool's output (a pool that also returns indices or a mask gives a tuple)."""
    return y[0] if isinstance(y, tuple) else y


def _probe(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape ``(C, *spatial)`` of ``module`` for one positive input of ``shape`` (eval, no grad)."""
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0)) + 0.1
    was_training = module.training
    with torch.no_grad():
        y = module.eval()(x)
    module.train(was_training)
    return tuple(int(n) for n in _first(y).shape[1:])


class LeverNet(nn.Module):
    """Conv blocks (conv, optional batch norm, ReLU, then the lever's pool) and a flatten + linear head.

    The conv stack is the same for every λ; only the pools and the head's input
    size change. With ``padding_mode="circular"`` and ``lever=1`` the head's
    input is exactly invariant to circular shifts of the input.

    Args:
        in_channels: input channels.
        num_classes: outputs of the head.
        spatial: input size per spatial axis (1 to 3 axes); the model needs this fixed size.
        lever: λ in [0, 1] (0: no pooling, 1: global pooling).
        pool: any registry spec (``"max"``, ``"avg"``, ``"lp:p=2"``...); ignored at λ = 0.
        padding_mode: conv padding, ``"zeros"`` or ``"circular"``.
        channels: conv width.
        blocks: number of conv blocks.
        kernel_size: conv kernel (odd); default 5 in 1-D, 3 in 2-D and 3-D.
        norm: ``"none"`` or ``"batch"`` (a BatchNorm after each conv, before its ReLU; in eval mode a
            per-channel affine map, so shift equivariance and the exact invariance at λ = 1 hold).

    Shape:
        - Input: ``(N, in_channels, *spatial)``
        - Output: ``(N, num_classes)``; :meth:`features` gives the head's input ``(N, channels, *head_size)``.

    Example:
        >>> net = LeverNet(1, 4, (24, 24), lever=1.0, pool="avg", padding_mode="circular")
        >>> net.head_size
        (1, 1)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial: Sequence[int],
        lever: float,
        pool: str = "max",
        padding_mode: str = "zeros",
        channels: int = 32,
        blocks: int = 2,
        kernel_size: int | None = None,
        norm: str = "none",
    ) -> None:
        super().__init__()
        spatial = tuple(int(s) for s in spatial)
        dim = len(spatial)
        if dim not in _CONV:
            raise ValueError(f"spatial must have 1 to 3 axes (1-D, 2-D or 3-D data), got {spatial!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        for name, val in (("in_channels", in_channels), ("num_classes", num_classes), ("channels", channels)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        k = kernel_size if kernel_size is not None else (5 if dim == 1 else 3)
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
        self.lever = check_lever(lever)
        self.pool_spec = "none" if self.lever == 0 else pool
        self.padding_mode = padding_mode
        self.schedule: Schedule = pool_schedule(spatial, self.lever, blocks)
        layers: list[nn.Module] = []
        c_in = in_channels
        size = tuple(spatial)
        for b, kern in enumerate(self.schedule.kernels):
            layers.append(_CONV[dim](c_in, channels, k, padding=k // 2, padding_mode=padding_mode))  # type: ignore[arg-type]
            if norm == "batch":
                layers.append(_BATCHNORM[dim](channels))
            layers.append(nn.ReLU())
            last = b == blocks - 1
            c_in = channels
            if self.lever > 0:
                glob = last and self.schedule.global_pool
                pooler = build_pool(pool, dim, None if glob else kern, channels, size, padding_mode)
                layers.append(pooler)
                # the pool decides the shapes: multistat adds channels, aps and blurpool round sizes up
                c_in, *rest = _probe(pooler, (channels, *size))
                size = tuple(rest)
        self.body = nn.Sequential(*layers)
        self.head_size = size
        self.head_channels = c_in
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * math.prod(self.head_size), num_classes))
        self.input_size = spatial

    def features(self, x: Tensor) -> Tensor:
        """The head's input: the conv stack and pools applied to ``x``."""
        return _first(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def head_parameters(self) -> int:
        """Number of parameters in the head (what pooling shrinks)."""
        return sum(p.numel() for p in self.head.parameters())

    def num_parameters(self) -> int:
        """Number of parameters in the whole model."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        norm = "" if self.norm == "none" else f", norm={self.norm!r}"
        return f"lever={self.lever}, pool={self.pool_spec!r}, head_size={self.head_size}{norm}"


if __name__ == "__main__":  # pragma: no cover
    print(LeverNet(1, 10, (40,), 0.5)(torch.rand(2, 1, 40)).shape)

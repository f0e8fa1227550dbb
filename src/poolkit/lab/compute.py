"""Compute per trial: forward FLOPs, the share spent in pooling layers, measured forward time.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a forward pass
of one sample: its formulas cover matrix products and convolutions (a multiply-add counts
2). It has no formula for pooling or reductions, so poolkit adds one: a pooling or
reduction op counts one FLOP per value it reads (``output size x window`` for window
pools, the input size for adaptive pools, reductions such as ``amax``/``mean``/``sum`` and
sorts, the output size for the elementwise ``maximum``/``minimum`` of sorting networks).
Other elementwise ops (ReLU, the powers of an Lp pool, softpool's exponentials) are
counted nowhere, on either side, so the pooling share is a lower bound for statistics
built of elementwise steps.
A pooling layer is a torch pooling module, a ``poolkit.nn`` module, or
:class:`poolkit.convert.RatioPool`; FLOPs inside it (its blur convolution included) are
its FLOPs.

>>> from poolkit.lab.models import LeverNet
>>> net = LeverNet(1, 10, (40,), lever=1.0, pool="max", channels=4)
>>> c = forward_flops(net, (1, 40))
>>> c["flops_per_sample"] > c["pool_flops_per_sample"] > 0
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["forward_flops", "forward_ms", "is_pool_module", "pool_module_names", "trial_compute"]

_aten = torch.ops.aten


def _numel(shape: Any) -> int:
    return int(math.prod(shape)) if shape is not None else 0


def _first_shape(out_shape: Any) -> Any:
    # ops returning (values, indices) give a tuple of shapes
    return out_shape[0] if isinstance(out_shape, (tuple, list)) and out_shape and not isinstance(
        out_shape[0], int) else out_shape


def _window(x_shape: Any, kernel_size: Any = 1, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    k = kernel_size if isinstance(kernel_size, (tuple, list)) else [kernel_size]
    d = len(x_shape) - 2 if x_shape is not None else len(k)
    window = math.prod(k) if len(k) == d or len(k) != 1 else int(k[0]) ** d
    return _numel(_first_shape(out_shape)) * int(window)


def _reads_input(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return _numel(x_shape)


_WINDOW_OPS = ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
               "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d")
_READ_OPS = ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
             "_adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
             "amax", "amin", "max", "min", "mean", "sum", "logsumexp", "median", "nanmedian", "sort", "topk",
             "kthvalue", "argmax", "argmin")
# elementwise comparisons: the sorting networks of order statistics (median, top-k) are made of these
_COMPARE_OPS = ("maximum", "minimum", "fmax", "fmin")


def _writes_output(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return _numel(_first_shape(out_shape))


def _mapping() -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for names, fn in ((_WINDOW_OPS, _window), (_READ_OPS, _reads_input), (_COMPARE_OPS, _writes_output)):
        for name in names:
            op = getattr(_aten, name, None)
            if op is not None:
                out[op] = fn
    return out


def is_pool_module(m: nn.Module) -> bool:
    """True for a torch pooling module, a ``poolkit.nn`` module or :class:`poolkit.convert.RatioPool`."""
    mod = type(m).__module__
    return (mod == "torch.nn.modules.pooling" or mod.startswith("poolkit.nn")
            or (type(m).__name__ == "RatioPool" and mod.startswith("poolkit")))


def pool_module_names(model: nn.Module) -> list[str]:
    """Qualified names of the outermost pooling modules of ``model`` (a pool inside a pool is its part)."""
    names: list[str] = []
    for name, m in model.named_modules():
        if is_pool_module(m) and not any(name == n or name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def forward_flops(model: nn.Module, sample_shape: Sequence[int], device: torch.device | str | None = None
                  ) -> dict[str, float]:
    """FLOPs of one forward pass on one sample of ``sample_shape`` ``(C, *spatial)``, in eval mode.

    Returns:
        ``flops_per_sample``, ``pool_flops_per_sample`` and ``pool_flops_share`` (their ratio, NaN when
        nothing was counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    x = torch.rand((1, *sample_shape), generator=torch.Generator().manual_seed(0)).to(device) + 0.1
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_mapping()) as counter:
            model(x)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    total = float(counter.get_total_flops())
    # FlopCounterMode names a module "<RootClass>.<qualified name>"
    root = type(model).__name__
    pool = 0.0
    for name in pool_module_names(model):
        key = f"{root}.{name}" if name else root
        pool += float(sum(counts.get(key, {}).values()))
    return {
        "flops_per_sample": total,
        "pool_flops_per_sample": pool,
        "pool_flops_share": pool / total if total > 0 else math.nan,
    }


def forward_ms(model: nn.Module, x: Tensor, repeats: int = 3, amp: bool = False) -> float:
    """Measured forward time per sample in milliseconds: best of ``repeats`` eval passes over ``x``.

    One untimed pass warms up first. On CUDA the device is synchronized around each timed pass.
    """
    dev = x.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    best = math.inf
    try:
        with torch.no_grad(), _autocast(dev, amp):
            model(x)
            for _ in range(max(1, repeats)):
                sync()
                t0 = time.perf_counter()
                model(x)
                sync()
                best = min(best, time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return 1000.0 * best / max(1, len(x))


def _autocast(dev: torch.device, amp: bool) -> Any:
    dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=dev.type, dtype=dtype, enabled=amp)


def trial_compute(model: nn.Module, x: Tensor, amp: bool = False) -> dict[str, float]:
    """Every compute attribute of a trial: FLOPs on one sample of ``x``, forward time on all of ``x``.

    Returns:
        ``flops_per_sample``, ``pool_flops_per_sample``, ``pool_flops_share``, ``forward_ms_per_sample``.
    """
    out = forward_flops(model, tuple(x.shape[1:]), x.device)
    out["forward_ms_per_sample"] = forward_ms(model, x, amp=amp)
    return out

"""Layout routing: run a native CPU reduction in the memory layout where it is fastest.

The caller must hand the result back in the layout the reference formula gives (see issue notes in
``_fast/__init__.py``): values are unchanged, only strides differ.
"""

from __future__ import annotations

import torch
from torch import Tensor

# (op, spatial dims) whose CPU kernels run several times faster on channels_last than on contiguous
# NC(D)HW input (measured in benchmarks/ops.py; 3-d avg is the exception, 1-d runs as 2-d).
_FASTER_CHANNELS_LAST = {("max_pool", 2), ("max_pool", 3), ("avg_pool", 2)}


def fast_layout(x: Tensor, op: str) -> Tensor:
    """``x`` in the memory layout where torch's CPU kernel for ``op`` is fastest.

    Only for inference (no autograd through ``x``): with a backward pass the
    layout conversions cost more than they save. Values are unchanged; the
    result of the pool then comes back in channels_last, which every torch op accepts.
    """
    d = x.ndim - 2
    if (
        (op, d) in _FASTER_CHANNELS_LAST
        and x.device.type == "cpu"
        and x.shape[1] > 1
        and not (torch.is_grad_enabled() and x.requires_grad)
        and x.is_contiguous()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    ):
        return x.contiguous(memory_format=torch.channels_last if d == 2 else torch.channels_last_3d)
    return x


def input_layout(x: Tensor) -> torch.memory_format:
    """The memory format a pooling keeps from its input, as torch's pooling ops do: channels-last for 2-d/3-d
    input in that layout (and not also contiguous), else contiguous."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.ndim)
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        return fmt
    return torch.contiguous_format


def as_layout(y: Tensor, x: Tensor) -> Tensor:
    """``y`` with the strides of a fresh tensor in :func:`input_layout` of ``x`` (size-1 dims included): a copy
    only where they differ. Statistics without a torch op (median, top-k) end with it on every path."""
    fresh = torch.empty_like(y, memory_format=input_layout(x))
    return y if y.stride() == fresh.stride() else fresh.copy_(y)

"""Output layout helpers: the memory format a pooling keeps from its input, and a copy into it where needed.

Kernels that route through another layout (for example ``_fast/order.py``'s channels-last max pooling)
hand their result back in the layout of the reference formula, which for pools is the input's, as torch's
pooling ops keep it.
"""

from __future__ import annotations

import torch
from torch import Tensor


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

"""Small reference networks shared by the instrument tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class LocalAPS(nn.Module):
    """Adaptive polyphase sampling, stride 2 per spatial axis (test copy of Chaman & Dokmanić 2021).

    Keeps the polyphase component with the largest l2 norm, so a circular shift of
    the input gives a circular shift of the output (no aliasing choice depends on position).
    """

    def forward(self, x: Tensor) -> Tensor:
        d = x.ndim - 2
        comps = [x[(slice(None), slice(None), *(slice(o, None, 2) for o in offs))]
                 for offs in itertools.product(range(2), repeat=d)]
        stack = torch.stack(comps, 1)
        pick = stack.flatten(2).norm(dim=2).argmax(dim=1)
        return stack[torch.arange(x.shape[0]), pick]


class Subsample(nn.Module):
    """Plain stride-2 subsampling (what APS replaces)."""

    def forward(self, x: Tensor) -> Tensor:
        return x[(slice(None), slice(None), *(slice(None, None, 2) for _ in range(x.ndim - 2)))]


def circ_conv(d: int, cin: int, cout: int, k: int = 3) -> nn.Module:
    return CONV[d](cin, cout, k, padding=k // 2, padding_mode="circular")


def downsampling_net(d: int, down: Callable[[], nn.Module], c: int = 3, classes: int = 5) -> nn.Sequential:
    """circular conv -> relu -> down -> circular conv -> relu -> down -> global avg -> linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        circ_conv(d, c, 6), nn.ReLU(), down(), circ_conv(d, 6, 8), nn.ReLU(), down(),
        GAP[d](1), nn.Flatten(), nn.Linear(8, classes),
    )

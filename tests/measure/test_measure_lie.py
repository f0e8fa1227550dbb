"""Lie derivative: zero for models invariant to continuous shifts, equal to finite differences elsewhere."""

from __future__ import annotations

import pytest
import torch
from _measure_nets import CONV, GAP, circ_conv
from torch import nn

from poolkit.measure import fourier_shift, lie_derivative, translation_generator

DIMS = (1, 2, 3)
SIZE = {1: 16, 2: 8, 3: 6}


def rand(d: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 2) + (SIZE[d],) * d, generator=g, dtype=torch.float64)


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def energy_net(d: int) -> nn.Module:
    """Circular conv, then the mean of squares: invariant to every sub-pixel circular shift (Parseval)."""
    torch.manual_seed(0)
    return nn.Sequential(circ_conv(d, 2, 4), Square(), GAP[d](1), nn.Flatten(), nn.Linear(4, 3)).double()


def aliasing_net(d: int) -> nn.Module:
    """Smooth but not shift-invariant: a stride-2 conv, tanh, then a dense head."""
    torch.manual_seed(0)
    n_out = (SIZE[d] // 2) ** d
    conv = CONV[d](2, 3, 3, stride=2, padding=1)
    return nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * n_out, 4)).double()


@pytest.mark.parametrize("d", DIMS)
def test_invariant_model_has_zero_lie_derivative(d):
    x = rand(d)
    ld = lie_derivative(energy_net(d), x)
    assert ld.shape == (3,)
    other = lie_derivative(aliasing_net(d), x)
    assert ld.max() < 1e-10 * other.min()
    assert other.min() > 1e-3


@pytest.mark.parametrize("d", DIMS)
def test_lie_derivative_agrees_with_finite_differences(d):
    net = aliasing_net(d)
    x = rand(d)
    ld = lie_derivative(net, x, per_axis=True)
    assert ld.shape == (3, d)
    h = 1e-4
    with torch.no_grad():
        for k in range(d):
            plus = tuple(h if i == k else 0.0 for i in range(d))
            minus = tuple(-h if i == k else 0.0 for i in range(d))
            fd = (net(fourier_shift(x, [plus])) - net(fourier_shift(x, [minus]))) / (2 * h)
            torch.testing.assert_close(ld[:, k], fd.flatten(1).norm(dim=1), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(lie_derivative(net, x), ld.norm(dim=1))


def test_units_are_per_pixel():
    """For the identity on a sampled wave sin(2 pi f i / n), d/dt is (2 pi f / n) times its cosine."""
    n, f = 32, 3
    i = torch.arange(n, dtype=torch.float64)
    x = torch.sin(2 * torch.pi * f * i / n).view(1, 1, n)
    gen = translation_generator(x)
    torch.testing.assert_close(gen, -(2 * torch.pi * f / n) * torch.cos(2 * torch.pi * f * i / n).view(1, 1, n))
    expected = (2 * torch.pi * f / n) * torch.cos(2 * torch.pi * f * i / n).norm()
    torch.testing.assert_close(lie_derivative(lambda t: t, x), expected.view(1))


def test_relative_dims_and_mode_restored():
    net = aliasing_net(2)
    net.train()
    x = rand(2)
    only0 = lie_derivative(net, x, dims=0)
    full = lie_derivative(net, x, per_axis=True)
    torch.testing.assert_close(only0, full[:, 0])
    with torch.no_grad():
        out_norm = net(x).flatten(1).norm(dim=1)
    torch.testing.assert_close(lie_derivative(net, x, relative=True), full.norm(dim=1) / out_norm)
    assert net.training


def test_float32_and_bad_input():
    net = aliasing_net(1).float()
    assert lie_derivative(net, rand(1).float()).dtype == torch.float32
    with pytest.raises(TypeError, match="floating"):
        lie_derivative(net, torch.zeros(1, 2, 16, dtype=torch.long))


def test_fallback_without_vmap_gives_the_same_numbers(monkeypatch):
    net = aliasing_net(2)
    x = rand(2)
    batched = lie_derivative(net, x, per_axis=True, relative=True)

    def no_vmap(*args, **kwargs):
        raise RuntimeError("vmap: no batching rule")

    monkeypatch.setattr(torch.func, "vmap", no_vmap)
    torch.testing.assert_close(lie_derivative(net, x, per_axis=True, relative=True), batched)

"""Regressions found in review of the fast paths: each case worked with the plain formulas and must keep working."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import poolkit.functional as PF

INPLACE_AFTER = {
    "gem": lambda t: PF.gem_pool(t, 2),
    "lp": lambda t: PF.lp_pool(t, 2, p=3.0),
    "lp_reflect": lambda t: PF.lp_pool(t, 3, 1, 1, p=3.0, padding_mode="reflect"),
    "lse": lambda t: PF.lse_pool(t, 2, beta=2.0),
    "softpool": lambda t: PF.softpool(t, 2),
    "stochastic": lambda t: PF.stochastic_pool(t, 2, training=False),
    "median_padded": lambda t: PF.median_pool(t, 3, 1, 1),
    "median_adaptive": lambda t: PF.median_pool(t, output_size=3),
    "topk_padded": lambda t: PF.topk_pool(t, 3, 1, 1, k=2),
    "min": lambda t: PF.min_pool(t, 2),
}


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("name", list(INPLACE_AFTER))
def test_an_inplace_op_on_the_output_keeps_the_gradient(name, dim):
    """pool -> ReLU(inplace=True): the custom backwards must not depend on the output they returned."""
    x = torch.rand((2, 3) + (8,) * dim, dtype=torch.float64) - 0.3
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    torch.relu_(INPLACE_AFTER[name](a)).sum().backward()
    torch.relu(INPLACE_AFTER[name](b)).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    "fn",
    [PF.lp_pool, PF.gem_pool, PF.mixed_pool, PF.lse_pool, PF.softpool, PF.median_pool, PF.topk_pool,
     PF.max_blur_pool, PF.blur_pool, lambda t, k: PF.stochastic_pool(t, k, training=False)],
)
@pytest.mark.parametrize("grad", [False, True])
def test_an_empty_batch_gives_an_empty_output(fn, grad):
    x = torch.randn(0, 3, 8, 8, requires_grad=grad)
    y = fn(x, 2)
    assert y.shape == (0, 3, 4, 4)
    if grad:
        y.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape


def test_blur_after_an_inference_mode_call_still_has_a_backward():
    x = torch.rand(1, 2, 16, 16)
    with torch.inference_mode():
        PF.blur(x, 3, 2)
    leaf = x.clone().requires_grad_(True)
    PF.blur(leaf, 3, 2).sum().backward()
    assert leaf.grad is not None


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_maxblur_with_a_circular_blur_wider_than_its_map(layout):
    x = torch.randn(2, 3, 2, 4).contiguous(memory_format=layout)
    y = PF.max_blur_pool(x, 2, filt=5, blur_padding_mode="circular")
    ref = PF.blur(F.max_pool2d(x, 2, 1), 5, 2, "circular")
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("name", ["lp", "gem"])
def test_an_infinite_cell_leaves_its_window_neighbours_a_zero_gradient(name):
    """As autograd of the plain formula: d(root)/d(sum) is 0 at an infinite sum, so finite cells get 0."""
    x = torch.tensor([[[1.0, float("inf"), 2.0, 3.0]]], dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    if name == "lp":
        PF.lp_pool(a, 2, p=2.0).sum().backward()
        (F.avg_pool1d(b * b, 2) * 2).sqrt().sum().backward()
    else:
        PF.gem_pool(a, 2, p=3.0).sum().backward()
        F.avg_pool1d(b.clamp(min=1e-6) ** 3, 2).pow(1 / 3).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    assert a.grad[0, 0, 0] == 0

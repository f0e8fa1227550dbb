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
    torch.testing.assert_close(a.grad, b.grad, equal_nan=True)  # lp: torch's NaN on negative windows


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


# ---------------------------------------------------------------- the first symptom, and host syncs

_C = 4


def _pool(name: str, dim: int, device) -> torch.nn.Module:
    import poolkit

    torch.manual_seed(0)
    return poolkit.create_pool(name, dim=dim, kernel_size=2, channels=_C).to(device)


def _names() -> list[str]:
    import poolkit

    return poolkit.list_pools()


# the one pool whose output size depends on a tensor's value reads it once per call, by design
_READS_HOST = {"diffstride": "its output size follows the learned stride: one small device-to-host read per call"}


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", _names())
def test_a_flattening_view_works_in_train_and_eval(name, dim, device):
    """``y.view(y.size(0), -1)`` after a pool on contiguous input: it used to raise in eval (no autograd),
    where the output came back channels-last."""
    x = torch.rand((2, _C) + (8,) * dim, device=device) + 0.1
    pool = _pool(name, dim, device)
    for training in (True, False):
        pool.train(training)
        for ctx in (torch.enable_grad, torch.no_grad, torch.inference_mode):
            with ctx():
                y = pool(x)
                y = y[0] if isinstance(y, tuple) else y
                assert y.is_contiguous(), (name, training, ctx.__name__, y.stride())
                assert y.view(y.size(0), -1).shape[0] == 2


@pytest.mark.parametrize("name", _names())
def test_no_host_sync_on_cuda(name, device):
    """Forward and backward of every pool, fast kernels on, never synchronise with the host on CUDA."""
    if device.type != "cuda":
        pytest.skip("host syncs are observable on CUDA only (run with --device cuda)")
    if name in _READS_HOST:
        pytest.skip(f"{name}: {_READS_HOST[name]}")
    x = (torch.rand(4, _C, 16, 16, device=device) + 0.1).requires_grad_(True)
    pool = _pool(name, 2, device).eval()
    pool(x)  # warm-up: lazy init may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = pool(x)
        y = y[0] if isinstance(y, tuple) else y
        y.backward(torch.ones_like(y))
        with torch.no_grad():
            pool(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_reference_formula_has_no_data_dependent_branch(name):
    """The reference formulas compile as one graph (``fullgraph=True``): no ``bool(tensor)``, ``.item()`` or
    other data-dependent Python branch, which would be a host sync on CUDA and a graph break here."""
    if name in _READS_HOST:
        pytest.skip(f"{name}: {_READS_HOST[name]}")
    torch._dynamo.reset()
    pool = _pool(name, 2, "cpu").eval()
    x = torch.rand(2, _C, 8, 8) + 0.1
    compiled = torch.compile(pool, backend="eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        y, ref = compiled(x), pool(x)
    torch.testing.assert_close(y[0] if isinstance(y, tuple) else y, ref[0] if isinstance(ref, tuple) else ref)

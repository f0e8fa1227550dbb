"""Backward of median and top-k pooling against a brute-force gradient, ties and padding included.

The reference visits every window with explicit loops and sends the output gradient to the cells a
stable sort picks: the median's rank among the window's real cells (what ``torch.median`` picks), or
the ``min(k, real cells)`` largest with ties at the last one broken in window order. NaN windows send
no gradient anywhere.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolkit.functional as PF
import poolkit.functional._fast.order as order_kernels


def _same_pads(n: int, k: int, s: int, dl: int = 1) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + dl * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _windows(shape, kernel=None, stride=None, padding=0, dilation=1, ceil_mode=False, mode="zeros",
             output_size=None):
    """Output spatial size and, per output position, the flat input index of each window cell (window order)."""
    size = shape[2:]
    d = len(size)
    idx = np.arange(math.prod(size)).reshape(size)
    if output_size is not None:
        out = (output_size,) * d
        ranges = [[list(range((i * n) // o, -((-(i + 1) * n) // o))) for i in range(o)] for n, o in zip(size, out)]
        padded = idx
    else:
        k, s, dl = (kernel,) * d, (stride or kernel,) * d, (dilation,) * d
        pads = ([_same_pads(n, ki, si, di) for n, ki, si, di in zip(size, k, s, dl)] if padding == "same"
                else [(padding, padding)] * d)
        if mode == "zeros":
            padded = np.pad(idx, pads, constant_values=-1)  # -1: a cell left out of the window
        else:
            padded = np.pad(idx, pads, mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])
        ref = F.max_pool1d(torch.zeros(1, 1, size[0]), k[0], s[0], 0 if padding == "same" else padding, dl[0],
                           ceil_mode=ceil_mode).shape[-1]
        out = tuple(math.ceil(n / si) for n, si in zip(size, s)) if padding == "same" else (ref,) * d
        ranges = [[[i * si + j * di for j in range(ki) if i * si + j * di < n + p0 + p1] for i in range(o)]
                  for o, ki, si, di, n, (p0, p1) in zip(out, k, s, dl, size, pads)]
    cells = {}
    for pos in itertools.product(*(range(o) for o in out)):
        flat = [int(padded[c]) for c in itertools.product(*(ranges[i][j] for i, j in enumerate(pos)))]
        cells[pos] = [c for c in flat if c >= 0]
    return out, cells


def brute_grad(x: torch.Tensor, g: torch.Tensor, stat: str, k: int = 2, **geom) -> torch.Tensor:
    """Gradient of ``sum(pool(x) * g)`` by explicit loops over windows (see the module docstring)."""
    a = x.detach().double().numpy().reshape(x.shape[0], x.shape[1], -1)
    gn = g.detach().double().numpy()
    _, cells = _windows(tuple(x.shape), **geom)
    grad = np.zeros_like(a)
    for b, c in itertools.product(range(a.shape[0]), range(a.shape[1])):
        for pos, win in cells.items():
            vals = a[b, c, win]
            if np.isnan(vals).any():
                continue
            gv = gn[(b, c, *pos)]
            if stat == "median":
                order = np.argsort(vals, kind="stable")
                grad[b, c, win[order[(len(win) - 1) // 2]]] += gv
            else:
                m = min(k, len(win))
                for t in np.argsort(-vals, kind="stable")[:m]:
                    grad[b, c, win[t]] += gv / m
    return torch.from_numpy(grad.reshape(x.shape))


def _pool(stat: str, x: torch.Tensor, k: int = 2, **geom) -> torch.Tensor:
    kw = dict(geom)
    if "output_size" in kw:
        call = dict(output_size=kw["output_size"])
    else:
        call = dict(kernel_size=kw["kernel"], stride=kw.get("stride"), padding=kw.get("padding", 0),
                    dilation=kw.get("dilation", 1), ceil_mode=kw.get("ceil_mode", False),
                    padding_mode=kw.get("mode", "zeros"))
    if stat == "median":
        return PF.median_pool(x, **call)
    return PF.topk_pool(x, **call, k=k)


def _grad(stat: str, x: torch.Tensor, k: int = 2, seed: int = 0, **geom) -> tuple[torch.Tensor, torch.Tensor]:
    """Autograd gradient of ``sum(pool(x) * g)`` for a random ``g``, and that ``g``."""
    leaf = x.detach().clone().requires_grad_(True)
    y = _pool(stat, leaf, k, **geom)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.dtype)
    (y * g).sum().backward()
    assert leaf.grad is not None
    return leaf.grad, g


def data(dim: int, size: int, kind: str, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 3) + (size,) * dim
    if kind == "ties":  # three values only: most windows hold equal cells
        return torch.randint(0, 3, shape, generator=gen).to(dtype)
    return torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)


GEOMS = [
    dict(kernel=2),
    dict(kernel=3, stride=1, padding=1),  # overlapping windows, padded
    dict(kernel=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel=2, stride=3, ceil_mode=True),  # gaps between windows, overhang
    dict(kernel=2, stride=1, dilation=2),
    dict(kernel=4, stride=2, padding="same"),
    dict(kernel=3, stride=1, padding=1, mode="reflect"),
    dict(kernel=3, stride=2, padding=1, mode="circular", ceil_mode=True),
    dict(kernel=2, stride=1, padding=1, mode="replicate"),
    dict(output_size=1),
    dict(output_size=3),  # even for size 6, uneven (copied windows) for size 7
    dict(output_size=4),
]


def _id(geom: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in geom.items())


@pytest.fixture(params=["network", "sort"])
def path(request, monkeypatch):
    """The forward on its sorting-network path, or forced onto the sort / topk path."""
    if request.param == "sort":
        monkeypatch.setattr(order_kernels, "_NETWORK_MAX_CELLS", 0)
    return request.param


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize("kind", ["distinct", "ties"])
@pytest.mark.parametrize("geom", GEOMS, ids=_id)
def test_backward_equals_brute_force(dim, size, kind, geom, path):
    x = data(dim, size, kind, seed=dim + size)
    got, g = _grad("median", x, **geom)
    torch.testing.assert_close(got, brute_grad(x, g, "median", **geom), rtol=1e-12, atol=1e-12)
    for k in (1, 2, 3, 5):
        got, g = _grad("topk", x, k=k, seed=k, **geom)
        torch.testing.assert_close(got, brute_grad(x, g, "topk", k=k, **geom), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["distinct", "ties"])
@pytest.mark.parametrize("geom", [GEOMS[1], GEOMS[2], GEOMS[4], GEOMS[7], GEOMS[11]], ids=_id)
def test_backward_equals_brute_force_3d(kind, geom):
    x = data(3, 5, kind, seed=3)[:1, :2]
    got, g = _grad("median", x, **geom)
    torch.testing.assert_close(got, brute_grad(x, g, "median", **geom), rtol=1e-12, atol=1e-12)
    got, g = _grad("topk", x, k=3, **geom)
    torch.testing.assert_close(got, brute_grad(x, g, "topk", k=3, **geom), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_backward_of_large_windows(kind):
    """81-cell windows: the forward copies and sorts (past the network's size), the backward is the same."""
    x = data(2, 11, kind, seed=5)
    for geom in (dict(kernel=9, stride=2, padding=4), dict(kernel=9, stride=1, ceil_mode=True)):
        got, g = _grad("median", x, **geom)
        torch.testing.assert_close(got, brute_grad(x, g, "median", **geom), rtol=1e-12, atol=1e-12)
        got, g = _grad("topk", x, k=4, **geom)
        torch.testing.assert_close(got, brute_grad(x, g, "topk", k=4, **geom), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_backward_equals_torch_median_and_stable_topk(dim, kind):
    """The plain formula of the benchmark: windows copied, ``median`` / a stable descending sort."""
    x = data(dim, 6, kind, seed=11, dtype=torch.float32)
    if dim > 1:
        x = x.contiguous(memory_format=torch.channels_last if dim == 2 else torch.channels_last_3d)
    flat = x.detach().clone().requires_grad_(True)
    w = flat
    for i in range(dim):
        w = w.unfold(2 + i, 2, 2)
    w = w.reshape(*w.shape[: 2 + dim], -1)
    refs = {"median": w.median(-1).values,
            "topk": w.sort(dim=-1, descending=True, stable=True).values[..., :2].mean(-1)}
    for stat, ref in refs.items():
        got, g = _grad(stat, x, kernel=2)
        flat.grad = None
        (ref * g).sum().backward(retain_graph=True)
        torch.testing.assert_close(_pool(stat, x, kernel=2), ref.detach(), rtol=0, atol=0)
        torch.testing.assert_close(got, flat.grad, rtol=0, atol=0)


def test_nan_windows_send_no_gradient(path):
    x = data(2, 7, "ties", seed=2)
    x[0, 1, 3, 3] = float("nan")
    for geom in (dict(kernel=3, stride=1, padding=1), dict(kernel=2, ceil_mode=True, stride=2), dict(output_size=3)):
        for stat, k in (("median", 2), ("topk", 1), ("topk", 3)):
            leaf = x.clone().requires_grad_(True)
            y = _pool(stat, leaf, k, **geom)
            nan_windows = y.isnan()
            assert nan_windows[0, 1].any() and not nan_windows[1].any()
            g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
            (y.nan_to_num() * g).sum().backward()
            torch.testing.assert_close(leaf.grad, brute_grad(x, g, stat, k=k, **geom), rtol=1e-12, atol=1e-12)
            assert leaf.grad[0, 1, 3, 3] == 0


def test_infinite_values_beside_padding_keep_their_gradient():
    """+inf medians and -inf top-k values equal the padding's fill: the gradient still reaches input cells."""
    x = torch.tensor([[[math.inf, math.inf, 1.0, -math.inf, -math.inf, 2.0, 3.0]]], dtype=torch.float64)
    for geom in (dict(kernel=3, stride=1, padding=1), dict(kernel=2, stride=2, padding=1, ceil_mode=True)):
        got, g = _grad("median", x, **geom)
        torch.testing.assert_close(got, brute_grad(x, g, "median", **geom), rtol=1e-12, atol=1e-12)
        for k in (2, 3):
            got, g = _grad("topk", x, k=k, **geom)
            torch.testing.assert_close(got, brute_grad(x, g, "topk", k=k, **geom), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_backward_in_low_precision(dtype):
    x = (data(2, 7, "ties", seed=4) + data(2, 7, "distinct", seed=4).mul(8).round() / 8).to(dtype)  # exact in dtype
    for geom in (GEOMS[1], GEOMS[2], GEOMS[10]):
        for stat in ("median", "topk"):
            got, g = _grad(stat, x, **geom)
            assert got.dtype == dtype
            ref = brute_grad(x.double(), g.double(), stat, **geom)
            torch.testing.assert_close(got.double(), ref, rtol=1e-2, atol=1e-2)


def test_noncontiguous_and_channels_last_give_the_same_gradient():
    x = data(2, 8, "ties", seed=6)
    for stat in ("median", "topk"):
        ref, _ = _grad(stat, x, kernel=3, stride=1, padding=1)
        wide = torch.empty((2, 6, 8, 8), dtype=x.dtype)[:, ::2]
        wide.copy_(x)
        assert not wide.is_contiguous()
        for variant in (x.contiguous(memory_format=torch.channels_last), wide):
            got, _ = _grad(stat, variant, kernel=3, stride=1, padding=1)
            torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_double_backward():
    x = data(2, 5, "distinct", seed=7)[:1, :2].requires_grad_(True)
    for stat in ("median", "topk"):
        fn = (lambda t, s=stat: _pool(s, t, kernel=3, stride=2, padding=1))
        assert torch.autograd.gradgradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_grad_and_no_grad_forward_agree():
    x = data(2, 7, "ties", seed=8)
    for stat in ("median", "topk"):
        for geom in GEOMS:
            with torch.no_grad():
                ref = _pool(stat, x, **geom)
            got = _pool(stat, x.clone().requires_grad_(True), **geom)
            torch.testing.assert_close(got.detach(), ref, rtol=0, atol=0)


# ---------------------------------------------------------------- min pooling's index backward

MIN_GEOMS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2),
    dict(kernel_size=3, stride=2, padding="same"),
    dict(kernel_size=3, stride=1, padding=1, padding_mode="reflect"),
    dict(output_size=3),
    dict(output_size=1),
]


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_min_backward_equals_negated_max_formula(dim, kind):
    x = data(dim, 7, kind, seed=dim)
    layouts = [x] + ([x.contiguous(memory_format=torch.channels_last if dim == 2 else torch.channels_last_3d)]
                     if dim > 1 else [])
    for geom in MIN_GEOMS:
        for xx in layouts:
            leaf = xx.clone().requires_grad_(True)
            y = PF.min_pool(leaf, **geom)
            g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
            (y * g).sum().backward()
            ref_leaf = xx.clone().requires_grad_(True)
            ref = -PF.max_pool(-ref_leaf, **geom)
            (ref * g).sum().backward()
            torch.testing.assert_close(y, ref, rtol=0, atol=0)
            torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=0, atol=0)


def test_min_indices_with_autograd_and_double_backward():
    x = data(2, 6, "distinct", seed=9)[:1, :2].requires_grad_(True)
    for geom in (dict(kernel_size=3, stride=2, padding=1), dict(output_size=2)):
        y, i = PF.min_pool(x, **geom, return_indices=True)
        with torch.no_grad():
            ry, ri = PF.min_pool(x, **geom, return_indices=True)
        assert torch.equal(y, ry) and torch.equal(i, ri) and not i.requires_grad
        assert torch.autograd.gradcheck(lambda t, kw=geom: PF.min_pool(t, **kw), (x,))
        assert torch.autograd.gradgradcheck(lambda t, kw=geom: PF.min_pool(t, **kw), (x,))
    with pytest.raises(ValueError, match="return_indices"):
        PF.min_pool(x, 2, 1, "same", return_indices=True)


def test_output_may_change_in_place_before_backward():
    """An in-place op on the pooled output (an in-place ReLU after the pool) leaves the gradient intact."""
    x = data(2, 6, "distinct", seed=10) - 0.5
    for stat, k in (("median", 2), ("topk", 1), ("topk", 3)):
        ref, g = _grad(stat, x, k=k, kernel=2)
        leaf = x.clone().requires_grad_(True)
        y = _pool(stat, leaf, k, kernel=2)
        y.mul_(1.0)
        (y * g).sum().backward()
        torch.testing.assert_close(leaf.grad, ref, rtol=0, atol=0)


def test_min_input_may_change_in_place_after_pooling():
    x = data(2, 6, "distinct", seed=12)
    ref, g = None, None
    for inplace in (False, True):
        leaf = x.clone().requires_grad_(True)
        h = leaf * 1.0
        y = PF.min_pool(h, 2)
        if inplace:
            h.mul_(2.0)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        (y * g).sum().backward()
        if ref is None:
            ref = leaf.grad
        else:
            torch.testing.assert_close(leaf.grad, ref, rtol=0, atol=0)

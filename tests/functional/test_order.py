"""Order statistics: max/min/avg against torch, median/top-k/range against brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolkit.functional as PF
import poolkit.functional._fast.order as order_kernels
from poolkit import nn as pnn

DIMS = (1, 2, 3)


def rand(dim: int, size: int = 7, dtype=torch.float64, seed: int = 0, lo: float = -1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, 3) + (size,) * dim, generator=g, dtype=dtype) * (1 - lo) + lo


def tf(name: str, dim: int):
    return getattr(F, f"{name}{dim}d")


# ---------------------------------------------------------------- max / min / avg equal torch

GEOMS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items()))
def test_max_min_equal_torch(dim, geom):
    x = rand(dim)
    ref = tf("max_pool", dim)(x, **geom)
    torch.testing.assert_close(PF.max_pool(x, **geom), ref, rtol=0, atol=0)
    torch.testing.assert_close(PF.min_pool(x, **geom), -tf("max_pool", dim)(-x, **geom), rtol=0, atol=0)
    y, i = PF.max_pool(x, **geom, return_indices=True)
    ry, ri = tf("max_pool", dim)(x, **geom, return_indices=True)
    assert torch.equal(y, ry) and torch.equal(i, ri)
    _, mi = PF.min_pool(x, **geom, return_indices=True)
    assert torch.equal(mi, tf("max_pool", dim)(-x, **geom, return_indices=True)[1])


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("out", [1, 3, 4])
def test_adaptive_max_min_equal_torch(dim, out):
    x = rand(dim)
    y, i = PF.max_pool(x, output_size=out, return_indices=True)
    ry, ri = tf("adaptive_max_pool", dim)(x, out, return_indices=True)
    assert torch.equal(y, ry) and torch.equal(i, ri)
    assert torch.equal(PF.min_pool(x, output_size=out), -tf("adaptive_max_pool", dim)(-x, out))


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("geom", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)])
def test_avg_equals_torch(dim, geom):
    x = rand(dim)
    torch.testing.assert_close(PF.avg_pool(x, **geom), tf("avg_pool", dim)(x, **geom))


def _same_pads(n: int, k: int, s: int, dl: int = 1) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + dl * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("k,s,dl", [(3, 1, 1), (2, 2, 1), (4, 3, 1), (2, 1, 2)])
def test_same_padding_equals_explicit_pad(dim, k, s, dl):
    x = rand(dim)
    a, b = _same_pads(7, k, s, dl)
    xp = F.pad(x, [a, b] * dim, value=-math.inf)
    ref = tf("max_pool", dim)(xp, k, s, dilation=dl)
    assert tuple(ref.shape[2:]) == (math.ceil(7 / s),) * dim
    assert torch.equal(PF.max_pool(x, k, s, "same", dilation=dl), ref)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
def test_padding_modes_equal_explicit_pad(dim, mode):
    x = rand(dim)
    xp = F.pad(x, [1, 1] * dim, mode=mode)
    for name in ("max_pool", "avg_pool"):
        ref = tf(name, dim)(xp, 3, 2)
        torch.testing.assert_close(getattr(PF, name)(x, 3, 2, 1, padding_mode=mode), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(PF.min_pool(x, 3, 2, 1, padding_mode=mode), -tf("max_pool", dim)(-xp, 3, 2))


def test_return_indices_refused_with_asymmetric_padding():
    with pytest.raises(ValueError, match="return_indices"):
        PF.max_pool(rand(1), 2, 1, "same", return_indices=True)


# ---------------------------------------------------------------- brute-force reference


def _np_pad(a: np.ndarray, pads, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Padded array and a validity mask (False where a cell is left out of the window)."""
    width = [(0, 0), (0, 0), *pads]
    if mode == "zeros":
        valid = np.pad(np.ones(a.shape, bool), width, constant_values=False)
        return np.pad(a, width), valid
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return np.pad(a, width, mode=np_mode), np.ones(np.pad(a, width).shape, bool)


def brute(x: torch.Tensor, stat, kernel=None, stride=None, padding=0, dilation=1, ceil_mode=False, mode="zeros",
          output_size=None) -> torch.Tensor:
    """Apply ``stat`` (on a 1-D numpy array of a window's cells) to every window by explicit loops."""
    a = x.detach().double().numpy()
    d = x.ndim - 2
    size = a.shape[2:]
    if output_size is not None:
        out = (output_size,) * d
        ranges = [[list(range((i * n) // o, -((-(i + 1) * n) // o))) for i in range(o)] for n, o in zip(size, out)]
        valid = np.ones(a.shape, bool)
    else:
        k, s, dl = (kernel,) * d, (stride or kernel,) * d, (dilation,) * d
        pads = [_same_pads(n, ki, si, di) for n, ki, si, di in zip(size, k, s, dl)] if padding == "same" \
            else [(padding, padding)] * d
        a, valid = _np_pad(a, pads, mode)
        ref = tf("max_pool", d)(torch.zeros((1, 1, *size)), k, s, 0 if padding == "same" else padding, dl,
                                ceil_mode=ceil_mode).shape[2:]
        out = tuple(math.ceil(n / si) for n, si in zip(size, s)) if padding == "same" else tuple(ref)
        ranges = [[[i * si + j * di for j in range(ki) if i * si + j * di < n + p0 + p1] for i in range(o)]
                  for o, ki, si, di, n, (p0, p1) in zip(out, k, s, dl, size, pads)]
    y = np.empty(a.shape[:2] + tuple(out))
    for b, c in itertools.product(range(a.shape[0]), range(a.shape[1])):
        for idx in itertools.product(*(range(o) for o in out)):
            cells = [(b, c, *pos) for pos in itertools.product(*(ranges[i][j] for i, j in enumerate(idx)))]
            vals = np.array([a[p] for p in cells if valid[p]])
            y[(b, c, *idx)] = stat(vals)
    return torch.from_numpy(y)


def lower_median(v: np.ndarray) -> float:
    return float(np.sort(v)[(len(v) - 1) // 2])


def topk_mean(k: int):
    return lambda v: float(np.sort(v)[::-1][:k].mean())


CASES = [
    dict(kernel=2),
    dict(kernel=3, stride=2, padding=1),
    dict(kernel=3, stride=2, ceil_mode=True),
    dict(kernel=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel=2, stride=1, dilation=2),
    dict(kernel=3, stride=2, padding="same"),
    dict(kernel=3, stride=1, padding=1, mode="reflect"),
    dict(kernel=3, stride=2, padding=1, mode="circular"),
    dict(kernel=2, stride=1, padding=1, mode="replicate", ceil_mode=True),
    dict(output_size=1),
    dict(output_size=3),
]


def _call(fn, x, case, **kw):
    c = dict(case)
    if "output_size" in c:
        return fn(x, output_size=c["output_size"], **kw)
    return fn(x, c["kernel"], c.get("stride"), c.get("padding", 0), c.get("dilation", 1), c.get("ceil_mode", False),
              padding_mode=c.get("mode", "zeros"), **kw)


@pytest.fixture(params=["network", "sort"])
def median_path(request, monkeypatch):
    """Run median_pool (no autograd) on its sorting-network path (small windows) or force its sort path."""
    if request.param == "sort":
        monkeypatch.setattr(order_kernels, "_NETWORK_MAX_CELLS", 0)
    return request.param


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_median_and_topk_match_brute_force(dim, case, median_path):
    x = rand(dim, size=6, seed=dim)
    torch.testing.assert_close(_call(PF.median_pool, x, case), brute(x, lower_median, **case))
    for k in (2, 3):
        torch.testing.assert_close(_call(PF.topk_pool, x, case, k=k), brute(x, topk_mean(k), **case))


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[7], CASES[10]], ids=str)
def test_median_and_topk_match_brute_force_3d(case):
    x = rand(3, size=5, seed=3)[:1, :2]
    torch.testing.assert_close(_call(PF.median_pool, x, case), brute(x, lower_median, **case))
    torch.testing.assert_close(_call(PF.topk_pool, x, case, k=3), brute(x, topk_mean(3), **case))


def test_even_window_gives_lower_median():
    x = torch.tensor([[[4.0, 1.0, 3.0, 2.0]]])
    assert PF.median_pool(x, 4).item() == 2.0
    assert PF.median_pool(x, output_size=1).item() == 2.0


def test_median_keeps_input_nan_even_with_padding():
    x = torch.tensor([[[1.0, float("nan"), 3.0, 4.0, 5.0, 6.0]]])
    for kw in (dict(padding=0), dict(padding=1), dict(padding=1, ceil_mode=True)):
        y = PF.median_pool(x, 3, 1, **kw)
        ref = brute(x, lambda v: float("nan") if np.isnan(v).any() else lower_median(v), 3, 1, **kw)
        torch.testing.assert_close(y.double(), ref, equal_nan=True)
    assert PF.median_pool(x, 3, 1, 1)[0, 0].isnan().tolist() == [True, True, True, False, False, False]


@pytest.mark.parametrize("kw", [dict(kernel_size=5, stride=1), dict(kernel_size=5, stride=2, padding=2),
                                dict(kernel_size=3, stride=1, padding=1), dict(output_size=2)], ids=str)
def test_median_nan_propagates_on_network_and_sort_paths(kw, median_path):
    x = rand(2, size=8)
    x[0, 0, 3, 4] = float("nan")
    y = PF.median_pool(x, **kw)
    ref = PF.max_pool(x.isnan().double(), **kw) > 0  # windows that hold the NaN
    assert ref.any() and torch.equal(y.isnan(), ref)


def test_median_gradcheck():
    x = rand(2, size=5)[:1, :2].requires_grad_(True)  # distinct values
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, ceil_mode=True), dict(output_size=2)):
        assert torch.autograd.gradcheck(lambda t: PF.median_pool(t, **kw), (x,), eps=1e-6, atol=1e-5)


def test_median_gradient_reaches_one_cell_per_window():
    x = rand(2, size=6).requires_grad_(True)
    PF.median_pool(x, 3, 3, 1).sum().backward()
    assert x.grad is not None
    # 4 windows per map (6 + 2 padding, kernel 3, stride 3 -> 2 x 2), each picks one cell
    assert x.grad.count_nonzero().item() == 2 * 3 * 4
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("geom", GEOMS[:5], ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items()))
def test_topk_k1_equals_max(dim, geom):
    x = rand(dim)
    torch.testing.assert_close(PF.topk_pool(x, **geom, k=1), tf("max_pool", dim)(x, **geom), rtol=0, atol=0)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_topk_large_k_equals_mean_over_real_cells(dim, mode):
    x = rand(dim)
    for geom in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)):
        ref = PF.avg_pool(x, **geom, count_include_pad=False, padding_mode=mode)
        torch.testing.assert_close(PF.topk_pool(x, **geom, k=27, padding_mode=mode), ref)
        torch.testing.assert_close(PF.topk_pool(x, **geom, k=1000, padding_mode=mode), ref)
    torch.testing.assert_close(PF.topk_pool(x, output_size=3, k=1000), tf("adaptive_avg_pool", dim)(x, 3))


@pytest.mark.parametrize("k,err", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_topk_refuses_bad_k(k, err):
    with pytest.raises(err, match="k must be"):
        PF.topk_pool(rand(1), 2, k=k)
    with pytest.raises(err, match="k must be"):
        pnn.TopKPool1d(2, k=k)


@pytest.mark.parametrize("dim", DIMS)
def test_range_equals_max_minus_min(dim):
    x = rand(dim)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
               dict(kernel_size=3, stride=1, padding="same", padding_mode="circular"),
               dict(kernel_size=2, stride=1, dilation=2), dict(output_size=3)):
        y = PF.range_pool(x, **kw)
        torch.testing.assert_close(y, PF.max_pool(x, **kw) - PF.min_pool(x, **kw), rtol=0, atol=0)
        assert (y >= 0).all()
    ref = brute(x[:1, :1], lambda v: float(v.max() - v.min()), 3, 2, 1, ceil_mode=True)
    torch.testing.assert_close(PF.range_pool(x[:1, :1], 3, 2, 1, ceil_mode=True), ref)


@pytest.mark.parametrize("name", ["median_pool", "topk_pool", "range_pool"])
def test_bad_arguments_name_themselves(name):
    fn = getattr(PF, name)
    with pytest.raises(TypeError, match="kernel_size"):
        fn(rand(1))
    with pytest.raises(ValueError, match="padding_mode"):
        fn(rand(1), 2, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding"):
        fn(rand(1), 2, padding=2)
    with pytest.raises(ValueError, match="output_size"):
        fn(rand(2), output_size=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["median_pool", "topk_pool", "range_pool"])
def test_low_precision_with_padding(name, dtype):
    x = rand(2)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y = getattr(PF, name)(x.to(dtype), **kw)
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), getattr(PF, name)(x.to(dtype).double(), **kw), rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- fast kernels on against off; torch's strides

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import random  # noqa: E402

import poolkit  # noqa: E402
from poolkit.functional import _fast  # noqa: E402

FAST_GEOMS = [
    dict(kernel_size=3, stride=1, padding=1),  # overlapping, padded
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2),
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding_mode="reflect"),
    dict(output_size=3),  # uneven adaptive windows at size 7
]
ORDER_FNS = {
    "max": PF.max_pool, "min": PF.min_pool, "median": PF.median_pool,
    "topk": lambda x, **kw: PF.topk_pool(x, k=3, **kw), "range": PF.range_pool,
}
_CL = {2: torch.channels_last, 3: torch.channels_last_3d}


def layout_input(dim: int, layout: str, dtype=torch.float32, seed: int = 0, size: int = 7) -> torch.Tensor:
    """Signed input with ties, contiguous, channels-last or a non-contiguous view (a strided slice)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randint(-3, 4, (2, 4) + (2 * size,) * dim, generator=g) / 2).to(dtype)
    x = x[(slice(None), slice(None)) + (slice(0, size),) * dim]
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        if dim == 1:  # (N, L, C) memory, as a 1-d channels-last net holds it
            return x.movedim(1, -1).contiguous().movedim(-1, 1)
        return x.contiguous(memory_format=_CL[dim])
    return x  # a view: every spatial stride doubled


def _run(fn, x: torch.Tensor, geom: dict, mode: str, g_seed: int = 1):
    x = x.clone(memory_format=torch.preserve_format) if x.is_contiguous() else x
    ctx = {"grad": contextlib.nullcontext(), "no_grad": torch.no_grad(),
           "inference_mode": torch.inference_mode()}[mode]
    leaf = x.detach().requires_grad_(mode == "grad")
    with ctx:
        y = fn(leaf, **geom)
    if mode != "grad":
        return y, None
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(g_seed), dtype=y.dtype)
    y.backward(g)  # the gradient a user sees: ``.grad`` (autograd gives it the input's strides)
    return y.detach(), leaf.grad


def assert_same(a: torch.Tensor, b: torch.Tensor, ulp: int = 0) -> None:
    """Same values (to ``ulp`` units of the dtype's precision; NaN where NaN), dtype, device and strides,
    size-1 dims included."""
    assert a.dtype == b.dtype and a.device == b.device and a.shape == b.shape
    assert a.stride() == b.stride(), f"strides {a.stride()} vs {b.stride()}"
    tol = ulp * torch.finfo(a.dtype).eps if a.is_floating_point() else 0
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("name", list(ORDER_FNS))
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "view"])
@pytest.mark.parametrize("geom", FAST_GEOMS, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items()))
def test_fast_kernels_on_equal_off(name, dim, layout, geom):
    """Fast kernels (channels-last max, sorting network, analytic backwards) give the formula's values,
    gradients and strides, with and without autograd, on input full of ties."""
    fn = ORDER_FNS[name]
    x = layout_input(dim, layout)
    for mode in ("grad", "no_grad", "inference_mode"):
        on = _run(fn, x, geom, mode)
        with poolkit.fast_paths(False):
            off = _run(fn, x, geom, mode)
        assert_same(on[0], off[0], ulp=4)  # top-k means sum in another order
        if mode == "grad":
            assert_same(on[1], off[1], ulp=8)  # overlapping windows add their gradients in another order


@pytest.fixture
def served(monkeypatch):
    """Names of the fast kernels that ran (their ``run`` wrapped in place)."""
    ran: list[str] = []
    for stat, ks in list(_fast._KERNELS.items()):
        wrapped = []
        for k in ks:
            def run(*a, _k=k, **kw):
                ran.append(f"{_k.stat}/{_k.name}")
                return _k.run(*a, **kw)
            wrapped.append(dataclasses.replace(k, run=run))
        monkeypatch.setitem(_fast._KERNELS, stat, wrapped)
    return ran


def test_the_order_kernels_serve_their_cases(served):
    """The equivalence test above compares two different paths: each kernel runs where it states it applies,
    and none under ``fast_paths(False)``."""
    x2 = layout_input(2, "contiguous")
    cl = layout_input(2, "channels_last").requires_grad_(True)
    with torch.no_grad():
        PF.max_pool(x2, 3, 1, 1)
        PF.median_pool(x2, 3)
    PF.min_pool(cl, 2)
    PF.topk_pool(cl, 3, k=2)
    assert served == ["max_pool/channels_last", "median/network", "min_pool/scatter_backward", "topk/network"]
    served.clear()
    with poolkit.fast_paths(False), torch.no_grad():
        PF.max_pool(x2, 3, 1, 1)
        PF.median_pool(x2, 3)
    assert served == []


def _random_geometry(rng: random.Random, dim: int) -> dict:
    k = [rng.randint(1, 4) for _ in range(dim)]
    dl = [rng.choice((1, 1, 2)) for _ in range(dim)]
    geom = dict(kernel_size=tuple(k), stride=tuple(rng.randint(1, 3) for _ in range(dim)),
                padding=tuple(rng.randint(0, ki // 2) for ki in k), dilation=tuple(dl),
                ceil_mode=rng.random() < 0.5)
    return geom


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "view"])
def test_max_pool_strides_equal_torch_on_random_geometries(dim, layout):
    """PF.max_pool (return_indices too) and min_pool against F.max_poolNd on the same input: values, indices and
    strides, with a gradient (training) and in no_grad / inference_mode (eval); the gradient too."""
    rng = random.Random(dim * 10 + len(layout))
    f = tf("max_pool", dim)
    for case in range(12):
        geom = _random_geometry(rng, dim)
        x = layout_input(dim, layout, seed=case, size=rng.randint(6, 9)).float()
        for mode in ("grad", "no_grad", "inference_mode"):
            ours = _run(PF.max_pool, x, geom, mode)
            ref = _run(f, x, geom, mode)
            assert_same(ours[0], ref[0])
            if mode == "grad":
                assert_same(ours[1], ref[1])
            mins = _run(PF.min_pool, x, geom, mode)
            assert_same(mins[0], -_run(lambda t, **kw: f(-t, **kw), x, geom, mode)[0])
        with torch.inference_mode():
            y, i = PF.max_pool(x, **geom, return_indices=True)
            ry, rind = f(x, **geom, return_indices=True)
        assert_same(y, ry)
        assert_same(i, rind)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("out", [1, 3])
def test_adaptive_and_global_max_strides_equal_torch(dim, layout, out):
    x = layout_input(dim, layout).float()
    for mode in ("grad", "no_grad", "inference_mode"):
        ours = _run(lambda t, **kw: PF.max_pool(t, output_size=out), x, {}, mode)
        ref = _run(lambda t, **kw: tf("adaptive_max_pool", dim)(t, out), x, {}, mode)
        assert_same(ours[0], ref[0])
        if mode == "grad":
            assert_same(ours[1], ref[1])


@pytest.mark.parametrize("module", [lambda: pnn.MaxPool2d(2), lambda: pnn.MinPool2d(3, 2, 1)])
def test_flatten_by_view_works_in_eval_as_in_training(module):
    """A classic forward ``y.view(y.size(0), -1)``: the pooled output is contiguous in eval as in training."""
    m = module()
    x = torch.rand(2, 8, 10, 10)
    m.train()
    a = m(x.requires_grad_(True)).view(2, -1)
    m.eval()
    with torch.no_grad():
        b = m(x.detach()).view(2, -1)
    with torch.inference_mode():
        c = m(x.detach()).view(2, -1)
    assert torch.equal(a.detach(), b) and torch.equal(b, c)


@pytest.mark.parametrize("name", ["median", "topk"])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "view"])
def test_input_gradient_layout_is_the_reference_formulas(name, d, layout):
    # autograd.grad hands back the backward's own tensor (.grad would be re-laid by AccumulateGrad)
    import poolkit

    shape = (2, 3) + (8,) * d
    x = torch.randn(*shape)
    if layout == "channels_last":
        x = torch.randn(2, *shape[2:], 3).movedim(-1, 1)
    elif layout == "view":
        x = torch.randn(*shape[:-1], 16)[..., ::2]
    grads = []
    for on in (True, False):
        xx = x.detach().requires_grad_()
        with poolkit.fast_paths(on):
            y = PF.median_pool(xx, 3, padding=1) if name == "median" else PF.topk_pool(xx, 3, k=2, padding=1)
            (g,) = torch.autograd.grad(y, xx, torch.ones_like(y))
        grads.append(g)
    assert grads[0].stride() == grads[1].stride()
    torch.testing.assert_close(grads[0], grads[1])

"""Random pools: stochastic pooling against brute force and its sampling law; fractional max against torch."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import poolkit
import poolkit.functional as PF
import poolkit.functional._fast.random as random_kernels
from poolkit import nn as pnn


def rand(dim: int, size: int = 6, dtype=torch.float64, seed: int = 0, lo: float = -0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, 3) + (size,) * dim, generator=g, dtype=dtype) * (1 - lo) + lo


# ---------------------------------------------------------------- stochastic pooling


def window_cells(x: torch.Tensor, k: int, s: int, p: int, ceil_mode: bool, mode: str, output_size=None):
    """Every window's cells (padding and ceil overhang as torch's avg_pool sees them) by explicit loops."""
    d = x.ndim - 2
    size = x.shape[2:]
    if output_size is not None:
        ranges = [[range((i * n) // output_size, -((-(i + 1) * n) // output_size)) for i in range(output_size)]
                  for n in size]
        xp = x
    else:
        xp = F.pad(x, [p, p] * d, mode="constant" if mode == "zeros" else mode)
        out = F.max_pool1d(torch.zeros(1, 1, size[0]), k, s, p, ceil_mode=ceil_mode).shape[-1]
        ranges = [[range(i * s, min(i * s + k, n + 2 * p)) for i in range(out)] for n in size]
    cells = {}
    for idx in itertools.product(*(range(len(r)) for r in ranges)):
        sl = tuple(slice(r[i].start, r[i].stop) for r, i in zip(ranges, idx))
        cells[idx] = xp[(slice(None), slice(None), *sl)].flatten(2)
    return cells


CASES = [
    dict(k=2, s=2, p=0, ceil_mode=False, mode="zeros"),
    dict(k=3, s=2, p=1, ceil_mode=True, mode="zeros"),
    dict(k=3, s=1, p=1, ceil_mode=False, mode="reflect"),
    dict(k=3, s=2, p=1, ceil_mode=False, mode="circular"),
    dict(k=3, s=2, p=0, ceil_mode=True, mode="replicate"),
]


def _stochastic(x, case, **kw):
    return PF.stochastic_pool(x, case["k"], case["s"], case["p"], case["ceil_mode"], padding_mode=case["mode"], **kw)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_stochastic_eval_is_probability_weighted_mean(dim, case):
    x = rand(dim, size=5 if dim == 3 else 6, seed=dim)
    y = _stochastic(x, case, training=False)
    for idx, v in window_cells(x, **case).items():
        a = v.clamp(min=0)
        p = a / a.sum(-1, keepdim=True)
        ref = torch.nan_to_num((p * a).sum(-1))  # all-nonpositive window -> 0
        torch.testing.assert_close(y[(slice(None), slice(None), *idx)], ref)


@pytest.mark.parametrize("dim", [1, 2])
def test_stochastic_eval_adaptive_and_global(dim):
    x = rand(dim, size=7)
    for out in (1, 3):
        y = PF.stochastic_pool(x, output_size=out, training=False)
        assert tuple(y.shape[2:]) == (out,) * dim
        for idx, v in window_cells(x, 0, 0, 0, False, "zeros", output_size=out).items():
            a = v.clamp(min=0)
            torch.testing.assert_close(y[(slice(None), slice(None), *idx)], (a * a).sum(-1) / a.sum(-1))


def test_stochastic_all_zero_window_gives_zero_with_finite_grads():
    x = torch.tensor([[[-1.0, -2.0, 0.0, 0.0, 1.0, 3.0]]], dtype=torch.float64, requires_grad=True)
    for training in (False, True):
        x.grad = None
        y = PF.stochastic_pool(x, 2, training=training, generator=torch.Generator().manual_seed(1))
        assert y[0, 0, :2].tolist() == [0.0, 0.0]
        y.sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad[0, 0, :4].abs().sum() == 0


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4], ids=str)
def test_stochastic_training_draws_a_positive_window_element(dim, case, draw_path):
    x = rand(dim, size=5, seed=dim + 10)
    y = _stochastic(x, case, training=True, generator=torch.Generator().manual_seed(0))
    for idx, v in window_cells(x, **case).items():
        yo = y[(slice(None), slice(None), *idx)]
        pos = v.clamp(min=0)
        member = (pos == yo.unsqueeze(-1)) & (pos > 0)
        has_pos = (pos > 0).any(-1)
        assert torch.where(has_pos, member.any(-1), yo == 0).all(), idx


@pytest.fixture(params=["scan", "search"])
def draw_path(request, monkeypatch):
    """Draw with the running sum over strided views (small windows) or force the cumsum + search path."""
    if request.param == "search":
        monkeypatch.setattr(random_kernels, "_SCAN_MAX_CELLS", 0)
    return request.param


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_stochastic_draw_paths_agree(dim, monkeypatch):
    x = rand(dim, size=5, seed=dim)
    x[0, 0] = 0.0  # all-zero windows too
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(output_size=2)):
        a = PF.stochastic_pool(x, **kw, generator=torch.Generator().manual_seed(9))
        with monkeypatch.context() as m:
            m.setattr(random_kernels, "_SCAN_MAX_CELLS", 0)
            b = PF.stochastic_pool(x, **kw, generator=torch.Generator().manual_seed(9))
        assert torch.equal(a, b), kw


def test_stochastic_empirical_frequencies_match_probabilities(draw_path):
    vals = torch.tensor([0.5, 1.0, 0.0, 2.5, -1.0, 4.0])  # zero and negative cells: probability 0
    n = 40000
    x = vals.repeat(n).view(1, n, 6)
    y = PF.stochastic_pool(x, 6, training=True, generator=torch.Generator().manual_seed(1234)).flatten()
    p = vals.clamp(min=0) / vals.clamp(min=0).sum()
    counts = torch.stack([(y == v).sum() for v in vals]).double()
    assert counts[2] == 0 and counts[4] == 0
    assert counts.sum() == n
    keep = p > 0
    expected = n * p[keep].double()
    chi2 = ((counts[keep] - expected) ** 2 / expected).sum().item()
    # 4 categories -> 3 degrees of freedom; 99.9th percentile 16.27
    assert chi2 < 16.27, (counts.tolist(), expected.tolist(), chi2)


def test_stochastic_training_gradient_reaches_the_chosen_cell():
    x = rand(2, size=6, lo=0.1).requires_grad_(True)
    y = PF.stochastic_pool(x, 2, generator=torch.Generator().manual_seed(3))
    y.sum().backward()
    assert x.grad is not None
    assert x.grad.count_nonzero().item() == y.numel()  # one cell per window, values distinct
    chosen = x.detach()[x.grad == 1]
    torch.testing.assert_close(chosen.sort().values, y.detach().flatten().sort().values)


def test_stochastic_generator_reproducible_and_fresh_draws_differ():
    x = rand(2, size=8, lo=0.1)
    a = PF.stochastic_pool(x, 2, generator=torch.Generator().manual_seed(7))
    b = PF.stochastic_pool(x, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(PF.stochastic_pool(x, 2, generator=g), PF.stochastic_pool(x, 2, generator=g))
    pool = pnn.StochasticPool2d(2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(pool(x), a)
    assert torch.equal(pool.eval()(x), PF.stochastic_pool(x, 2, training=False))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_low_precision_training(dtype):
    x = rand(2, size=6, lo=0.1).to(dtype)
    y = PF.stochastic_pool(x, 3, 2, 1, generator=torch.Generator().manual_seed(0))
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_stochastic_refuses_bad_arguments():
    with pytest.raises(TypeError, match="kernel_size"):
        PF.stochastic_pool(rand(1))
    with pytest.raises(ValueError, match="accepted"):
        poolkit.create_pool("stochastic:dilation=2", 1, kernel_size=2)  # the eval mean is a native avg pool
    with pytest.raises(TypeError, match="generator"):
        pnn.StochasticPool1d(2, generator=0)


# ---------------------------------------------------------------- fractional max pooling


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kw", [dict(kernel_size=2, output_size=5), dict(kernel_size=3, output_ratio=0.5),
                                dict(kernel_size=2, output_ratio=0.7),
                                dict(kernel_size=(2, 3, 2), output_size=(4, 3, 5))], ids=str)
def test_fractional_equals_torch(dim, kw, dtype):
    kw = {k: (v[:dim] if isinstance(v, tuple) else v) for k, v in kw.items()}
    # torch's functional needs output_ratio as a tuple (a float fails inside it)
    tkw = {k: ((v,) * dim if k == "output_ratio" else v) for k, v in kw.items()}
    x = rand(dim, size=11, dtype=dtype)
    u = torch.rand(2, 3, dim, generator=torch.Generator().manual_seed(5), dtype=dtype)
    y, i = PF.fractional_max_pool(x, **kw, return_indices=True, random_samples=u)
    ry, ri = getattr(F, f"fractional_max_pool{dim}d")(x, **tkw, return_indices=True, _random_samples=u)
    assert torch.equal(y, ry) and torch.equal(i, ri)
    fmt = torch.channels_last if dim == 2 else torch.channels_last_3d
    assert torch.equal(PF.fractional_max_pool(x.contiguous(memory_format=fmt), **kw, random_samples=u), ry)
    # eval samples are 0.5
    assert torch.equal(PF.fractional_max_pool(x, **kw, training=False),
                       getattr(F, f"fractional_max_pool{dim}d")(x, **tkw, _random_samples=torch.full_like(u, 0.5)))


def torch_starts(u: float, n: int, o: int, k: int) -> list[int]:
    """torch's interval rule, in float64."""
    if o == 1:
        return [n - k]
    alpha = (n - k) / (o - 1)
    return [int((i + u) * alpha) - int(u * alpha) for i in range(o - 1)] + [n - k]


@pytest.mark.parametrize("n,k,kw,o", [(10, 2, dict(), 5), (11, 2, dict(output_ratio=0.7), 7),
                                      (9, 3, dict(output_size=4), 4), (16, 2, dict(output_ratio=0.6), 9)])
def test_fractional_1d_windows(n, k, kw, o):
    x = torch.randn(2, 3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    u = torch.rand(2, 3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    y, i = PF.fractional_max_pool(x, k, **kw, return_indices=True, random_samples=u)
    assert y.shape == (2, 3, o) and i.shape == (2, 3, o)
    for b, c in itertools.product(range(2), range(3)):
        starts = torch_starts(u[b, c, 0].item(), n, o, k)
        assert starts[0] == 0 and starts[-1] == n - k and starts == sorted(starts)
        for j, s0 in enumerate(starts):
            assert y[b, c, j] == x[b, c, s0:s0 + k].max()  # every output is the max of a k-wide window
            assert s0 <= i[b, c, j] < s0 + k and x[b, c, i[b, c, j]] == y[b, c, j]


def test_fractional_1d_training_draws_fresh_samples():
    x = torch.randn(4, 8, 40, dtype=torch.float64)
    pool = pnn.FractionalMaxPool1d(2, output_ratio=0.6)
    assert not torch.equal(pool(x), pool(x))  # 32 planes: two draws agreeing everywhere is vanishingly unlikely
    g = torch.Generator().manual_seed(0)
    a = PF.fractional_max_pool(x, 2, output_ratio=0.6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, PF.fractional_max_pool(x, 2, output_ratio=0.6, generator=g))
    pool.eval()
    assert torch.equal(pool(x), pool(x))
    torch.testing.assert_close(pool(x), PF.fractional_max_pool(x, 2, output_ratio=0.6,
                                                               random_samples=torch.full((4, 8, 1), 0.5)))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fractional_default_halves_and_global_is_max(dim):
    x = rand(dim, size=7)
    assert tuple(poolkit.create_pool("fractional_max", dim, kernel_size=2).eval()(x).shape[2:]) == (3,) * dim
    g = PF.fractional_max_pool(x, output_size=1)
    torch.testing.assert_close(g, x.amax(tuple(range(2, 2 + dim)), keepdim=True), rtol=0, atol=0)
    y = PF.fractional_max_pool(x, output_size=3, training=False)  # kernel ceil(7 / 3) = 3
    assert tuple(y.shape[2:]) == (3,) * dim


def test_fractional_refuses_bad_arguments():
    x = rand(1, size=8)
    with pytest.raises(ValueError, match="not both"):
        PF.fractional_max_pool(x, 2, output_size=3, output_ratio=0.5)
    with pytest.raises(ValueError, match="output_ratio"):
        PF.fractional_max_pool(x, 2, output_ratio=1.5)
    with pytest.raises(ValueError, match="output_ratio"):
        pnn.FractionalMaxPool2d(2, output_ratio=0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        PF.fractional_max_pool(x, 4, output_size=6)
    with pytest.raises(ValueError, match="output_size"):
        PF.fractional_max_pool(x, 1, output_size=9)
    with pytest.raises(ValueError, match="stride"):
        pnn.FractionalMaxPool1d(2, stride=2, output_ratio=0.5)
    with pytest.raises(ValueError, match="stride"):
        pnn.FractionalMaxPool1d(2, stride=0)
    with pytest.raises(TypeError, match="kernel_size"):
        PF.fractional_max_pool(x)
    with pytest.raises(ValueError, match="random_samples"):
        PF.fractional_max_pool(x, 2, random_samples=torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match="random_samples"):
        PF.fractional_max_pool(x, 2, random_samples=torch.full((2, 3, 1), 1.0))


def test_fractional_3d_separable_path_equals_torch():
    # torch's 3-D kernel refuses output + kernel - 1 == input; the two-pass path serves that case
    from poolkit.functional.random import _fractional_3d_separable

    x = torch.randn(2, 3, 9, 8, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for k, o in (((2, 2, 2), (5, 4, 6)), ((3, 2, 4), (4, 5, 3))):
        y, i = _fractional_3d_separable(x, k, o, u, True)
        ry, ri = F.fractional_max_pool3d(x, k, output_size=o, return_indices=True, _random_samples=u)
        assert torch.equal(y, ry) and torch.equal(i, ri)


def test_fractional_3d_at_torch_limit_follows_the_interval_rule():
    x = torch.randn(1, 2, 9, 8, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    u = torch.rand(1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    k, o = (2, 3, 4), (8, 3, 7)  # T and W at the limit, H not
    y, i = PF.fractional_max_pool(x, k, o, return_indices=True, random_samples=u)
    assert y.shape == (1, 2, *o)
    assert torch.equal(x.flatten(2).gather(2, i.flatten(2)).view_as(y), y)
    for c in range(2):
        st = [torch_starts(u[0, c, j].item(), n, oj, kj) for j, (n, oj, kj) in enumerate(zip(x.shape[2:], o, k))]
        for a, b, e in itertools.product(*(range(oj) for oj in o)):
            t0, h0, w0 = st[0][a], st[1][b], st[2][e]
            assert y[0, c, a, b, e] == x[0, c, t0:t0 + k[0], h0:h0 + k[1], w0:w0 + k[2]].max()


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fractional_stride_gives_max_pool_size(dim):
    """With a mean stride the module stands in for MaxPoolNd(kernel_size, stride): same output size."""
    x = rand(dim, size=9)
    pool = [pnn.FractionalMaxPool1d, pnn.FractionalMaxPool2d, pnn.FractionalMaxPool3d][dim - 1](2, stride=3)
    ref = PF.max_pool(x, 2, 3)
    for mode in (pool.train(), pool.eval()):
        y = mode(x)
        assert y.shape == ref.shape
    with pytest.raises(ValueError, match="larger"):
        pool(rand(dim, size=1))

"""Power-mean family: avg, lp, gem, lse, softpool, mixed, gated.

References are torch's own pooling ops where torch has them, and otherwise the
plain formula evaluated on explicitly gathered windows (``Tensor.unfold``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
import poolkit.functional as PF
import poolkit.nn as pnn
from poolkit.functional import power as P
from poolkit.functional._fast import power as K
from poolkit.functional._window import Window, adaptive_windows, resolve_output_size

DT = torch.float64


def rand(dim: int, size: int = 7, c: int = 3, seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, c) + (size,) * dim, generator=g, dtype=DT) * (high - low) + low


def gather(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Windows ``(N, C, *out, k**d)`` of an unpadded input (the test reference)."""
    d = x.ndim - 2
    for i in range(d):
        x = x.unfold(2 + i, k, s)
    return x.flatten(-d)


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------- avg equals torch


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
        dict(kernel_size=3, stride=2, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=2, stride=1, divisor_override=3),
    ],
)
def test_avg_equals_torch(dim, kw):
    x = rand(dim)
    y = PF.avg_pool(x, **kw)
    args = (kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("ceil_mode", False),
            kw.get("count_include_pad", True))
    if dim == 1:
        if "divisor_override" in kw:  # torch's avg_pool1d has none: the 2-d op on a height-1 input
            ref = F.avg_pool2d(x.unsqueeze(2), (1, args[0]), (1, args[1]), (0, args[2]), args[3], args[4],
                               kw["divisor_override"]).squeeze(2)
        else:
            ref = F.avg_pool1d(x, *args)
    else:
        ref = getattr(F, f"avg_pool{dim}d")(x, *args, kw.get("divisor_override"))
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k,s", [(3, 1), (2, 2), (3, 2), (4, 3)])
def test_avg_same_padding_equals_explicit_pad(dim, k, s):
    x = rand(dim, size=7)
    a, b = same_pads(7, k, s)
    xp = F.pad(x, [a, b] * dim)
    ref = getattr(F, f"avg_pool{dim}d")(xp, k, s)
    torch.testing.assert_close(PF.avg_pool(x, k, s, "same"), ref)
    assert PF.avg_pool(x, k, s, "same").shape[2:] == (math.ceil(7 / s),) * dim


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_avg_padding_modes_equal_explicit_pad(mode):
    x = rand(2)
    ref = F.avg_pool2d(F.pad(x, [1, 1, 1, 1], mode=mode), 3, 2)
    torch.testing.assert_close(PF.avg_pool(x, 3, 2, 1, padding_mode=mode), ref)


# ---------------------------------------------------------------- lp


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 40.0])
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2),
                                dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, stride=1)])
def test_lp_equals_torch_on_nonnegative_input(dim, p, kw):
    x = rand(dim, low=0.5, high=1.5)
    ref = getattr(F, f"lp_pool{dim}d")(x, p, kw["kernel_size"], kw.get("stride"), kw.get("ceil_mode", False))
    torch.testing.assert_close(PF.lp_pool(x, p=p, **kw), ref)


def test_lp_inf_is_max_of_abs_and_absolute_uses_abs():
    x = rand(2, low=-1.0, high=1.0)
    torch.testing.assert_close(PF.lp_pool(x, 2, p=math.inf), F.max_pool2d(x.abs(), 2))
    torch.testing.assert_close(PF.lp_pool(x, 3, 2, 1, p=3.0, absolute=True), PF.lp_pool(x.abs(), 3, 2, 1, p=3.0))
    assert torch.isfinite(PF.lp_pool(x, 2, p=3.0, absolute=True)).all()


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 1.5])
@pytest.mark.parametrize("fast", [True, False])
def test_lp_follows_torch_on_signed_input(dim, p, fast):
    """torch's formula on signed input: values (NaN where a window's sum of x^p is negative and 1/p fractional)
    and gradients, with the fast kernels on and off."""
    x = rand(dim, low=-1.0, high=1.0)
    ref_op = getattr(F, f"lp_pool{dim}d")
    for k, s, ceil in ((2, None, False), (3, 2, True)):
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        with poolkit.fast_paths(fast):
            y = PF.lp_pool(xa, k, s, ceil_mode=ceil, p=p)
        r = ref_op(xb, p, k, s, ceil)
        torch.testing.assert_close(y, r, equal_nan=True)
        g = torch.rand_like(y)
        (ga,) = torch.autograd.grad(y, xa, g)
        (gb,) = torch.autograd.grad(r, xb, g)
        torch.testing.assert_close(ga, gb, equal_nan=True)
        if p in (1.0, 2.0):
            assert not y.isnan().any()
        with torch.no_grad(), poolkit.fast_paths(fast):
            torch.testing.assert_close(PF.lp_pool(x, k, s, ceil_mode=ceil, p=p), r.detach(), equal_nan=True)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_lp_p1_is_sum_pooling(dim):
    x = rand(dim)
    torch.testing.assert_close(PF.lp_pool(x, 3, 2, 1, p=1.0), PF.avg_pool(x, 3, 2, 1, divisor_override=1))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5])
def test_lp_zero_window_has_finite_gradient(p):
    x = torch.zeros(1, 1, 4, 4, dtype=DT)
    x[..., 2:, 2:] = torch.rand(2, 2, dtype=DT)
    x.requires_grad_(True)
    y = PF.lp_pool(x, 2, p=p)
    y.sum().backward()
    assert y[0, 0, 0, 0] == 0 and torch.isfinite(x.grad).all()


def test_lp_adaptive_sums_each_window():
    x = rand(1, size=7)
    y = PF.lp_pool(x, p=2.0, output_size=3)
    w = adaptive_windows(x, resolve_output_size(x, 3), fill=0.0)
    torch.testing.assert_close(y, w.pow(2).sum(-1).sqrt())


# ---------------------------------------------------------------- gem


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gem_p1_is_avg(dim):
    x = rand(dim, low=0.1)
    torch.testing.assert_close(PF.gem_pool(x, 3, 2, 1, p=1.0), PF.avg_pool(x, 3, 2, 1))
    torch.testing.assert_close(PF.gem_pool(x, p=1.0, output_size=1), x.mean(tuple(range(2, x.ndim)), keepdim=True))


def test_gem_matches_formula_and_large_p_approaches_max():
    x = rand(2, low=0.1)
    w = gather(x, 2, 2)
    torch.testing.assert_close(PF.gem_pool(x, 2, p=3.0), w.pow(3).mean(-1).pow(1 / 3))
    torch.testing.assert_close(PF.gem_pool(x, 2, p=400.0), F.max_pool2d(x, 2), rtol=0, atol=1e-2)


def test_gem_per_channel_p():
    x = rand(2, c=3, low=0.1)
    p = torch.tensor([1.0, 2.0, 5.0], dtype=DT)
    y = PF.gem_pool(x, 2, p=p)
    for c in range(3):
        torch.testing.assert_close(y[:, c], PF.gem_pool(x[:, c : c + 1], 2, p=float(p[c]))[:, 0])
    pool = pnn.GeMPool2d(2, per_channel=True, channels=3, dtype=DT)
    assert pool.p.shape == (3,) and isinstance(pool.p, torch.nn.Parameter)
    pool(x).sum().backward()
    assert pool.p.grad is not None and pool.p.grad.shape == (3,) and torch.isfinite(pool.p.grad).all()
    with pytest.raises(ValueError, match="channels"):
        pnn.GeMPool2d(2, per_channel=True)
    with pytest.raises(ValueError, match="channels"):
        pool(rand(2, c=4, low=0.1))
    with pytest.raises(ValueError, match="p must"):
        PF.gem_pool(x, 2, p=torch.ones(5, dtype=DT))


def test_gem_fixed_p_is_a_buffer():
    pool = pnn.GeMPool1d(2, learnable=False)
    assert not list(pool.parameters()) and "p" in pool.state_dict()


# ---------------------------------------------------------------- lse


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_lse_limits_are_avg_and_max(dim, kw):
    x = rand(dim, low=-1.0)
    torch.testing.assert_close(PF.lse_pool(x, beta=1e-7, **kw), PF.avg_pool(x, **kw), rtol=0, atol=1e-6)
    geo = {k: v for k, v in kw.items() if k != "count_include_pad"}
    if kw.get("count_include_pad", True) and kw.get("padding"):  # counted zero padding takes part in the max
        geo["padding"] = 0
        x_max = F.pad(x, [kw["padding"]] * 2 * dim)
    else:
        x_max = x
    mx = PF.max_pool(x_max, **geo)
    torch.testing.assert_close(PF.lse_pool(x, beta=1e7, **kw), mx, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1), (3, 2), (2, 3)])
def test_lse_matches_logsumexp_and_is_stable(k, s):
    x = rand(2, size=8, low=-1.0) * 1e4  # exp(beta x) overflows any float
    beta = 0.5
    ref = (torch.logsumexp(beta * gather(x, k, s), -1) - math.log(k * k)) / beta
    y = PF.lse_pool(x, k, s, beta=beta)
    torch.testing.assert_close(y, ref)
    xf = x.float().requires_grad_(True)
    yf = PF.lse_pool(xf, k, s, beta=100.0)
    yf.sum().backward()
    assert torch.isfinite(yf).all() and torch.isfinite(xf.grad).all()


def test_lse_adaptive_uneven_windows_exact_even_far_below_the_channel_max():
    x = rand(1, size=7, low=-1.0)
    out = resolve_output_size(x, 3)
    w = adaptive_windows(x, out, fill=-torch.inf)  # 1-d: one kernel dim
    cnt = torch.isfinite(w).sum(-1)
    ref = (torch.logsumexp(2.0 * w, -1) - cnt.log()) / 2.0
    torch.testing.assert_close(PF.lse_pool(x, beta=2.0, output_size=3), ref)
    far = x.clone()
    far[..., :3] -= 1e4  # first window far below the channel maximum: a shared shift would underflow
    wf = adaptive_windows(far, out, fill=-torch.inf)
    ref = (torch.logsumexp(wf, -1) - cnt.log())
    torch.testing.assert_close(PF.lse_pool(far.float(), beta=1.0, output_size=3).double(), ref, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_lse_per_channel_beta(scale):
    x = rand(2, c=3, low=-1.0) * scale  # 1e3: the stable path
    beta = torch.tensor([0.5, 1.0, 4.0], dtype=DT)
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(output_size=3)):
        y = PF.lse_pool(x, beta=beta, **kw)
        for c in range(3):
            torch.testing.assert_close(y[:, c], PF.lse_pool(x[:, c : c + 1], beta=float(beta[c]), **kw)[:, 0])


def test_lse_learnable_beta_is_positive_and_gets_gradient():
    pool = pnn.LSEPool2d(2, beta=3.0, learnable=True, dtype=DT)
    torch.testing.assert_close(pool.beta, torch.tensor(3.0, dtype=DT))
    x = rand(2)
    torch.testing.assert_close(pool(x), PF.lse_pool(x, 2, beta=3.0))
    pool(x).sum().backward()
    assert pool.beta_raw.grad is not None and torch.isfinite(pool.beta_raw.grad)
    with pytest.raises(ValueError, match="beta"):
        pnn.LSEPool2d(2, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        PF.lse_pool(x, 2, beta=-1.0)


GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True),
    dict(kernel_size=4, stride=3, padding="same"),
    dict(kernel_size=3, stride=2, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, stride=1, padding=1, padding_mode="circular", count_include_pad=False),
    dict(output_size=3),
    dict(output_size=(2, 4)),
]


@pytest.mark.parametrize("kw", GEOMETRIES, ids=str)
def test_stable_paths_equal_plain_formula(kw):
    """The window-max shifted kernels (``phases``) agree with the reference formulas (fast kernels off)."""
    x = rand(2, size=8, low=-2.0, high=2.0)
    kw_soft = {k: v for k, v in kw.items() if k != "count_include_pad"}
    with poolkit.fast_paths(False):
        ref_lse = PF.lse_pool(x, beta=1.5, **kw)
        ref_soft = PF.softpool(x, **kw_soft)
    win = P._geometry(x, kw.get("kernel_size"), kw.get("stride"), kw.get("padding", 0), kw.get("ceil_mode", False),
                      kw.get("padding_mode", "zeros"), kw.get("output_size"))
    mode = kw.get("padding_mode", "zeros")
    if isinstance(win, Window):  # the kernels serve local windows (and adaptive ones that divide the input)
        torch.testing.assert_close(K._lse_phases(x, win, 1.5, mode, kw.get("count_include_pad", True)), ref_lse)
        torch.testing.assert_close(K._softpool_phases(x, win, mode), ref_soft)
    torch.testing.assert_close(PF.lse_pool(x, beta=1.5, **kw), ref_lse)
    torch.testing.assert_close(PF.softpool(x, **kw_soft), ref_soft)


@pytest.mark.parametrize("kw", GEOMETRIES, ids=str)
def test_large_inputs_take_the_stable_path_and_stay_exact(kw):
    x = rand(2, size=8, low=-2.0, high=2.0)
    big = (x * 1e3).float()  # exp overflows float32: the shifted path must answer
    y = PF.lse_pool(big, beta=1.0, **kw)
    ref = PF.lse_pool(big.double() / 100, beta=100.0, **kw) * 100  # same value, no overflow in float64
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-2)
    kw_soft = {k: v for k, v in kw.items() if k != "count_include_pad"}
    s = PF.softpool(big, **kw_soft)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s.double(), PF.softpool(big.double(), **kw_soft), rtol=1e-5, atol=1e-2)
    if "output_size" in kw_soft:
        w = adaptive_windows(big.double(), resolve_output_size(big, kw_soft["output_size"]), -torch.inf).flatten(-2)
    elif kw_soft.get("padding_mode", "zeros") != "zeros" or not kw_soft.get("padding"):
        if kw_soft.get("ceil_mode"):
            return
        p = kw_soft.get("padding", 0)
        xp = F.pad(big.double(), [p] * 4, mode=kw_soft.get("padding_mode", "constant").replace("zeros", "constant"))
        w = gather(xp, kw_soft["kernel_size"], kw_soft.get("stride") or kw_soft["kernel_size"])
    else:
        return
    ref = (torch.softmax(w, -1) * w.masked_fill(w == -torch.inf, 0.0)).sum(-1)
    torch.testing.assert_close(s.double(), ref, rtol=1e-5, atol=1e-2)


# ---------------------------------------------------------------- softpool


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1), (3, 2)])
def test_softpool_matches_softmax_weighted_mean(k, s):
    x = rand(2, size=8, low=-3.0, high=3.0)
    w = gather(x, k, s)
    ref = (torch.softmax(w, -1) * w).sum(-1)
    torch.testing.assert_close(PF.softpool(x, k, s), ref)


def test_softpool_overflow_safe():
    x = torch.tensor([[[0.0, 1e4, 3.0, -1e4, 5.0, 5.0]]], requires_grad=True)
    y = PF.softpool(x, 2)
    torch.testing.assert_close(y.detach(), torch.tensor([[[1e4, 3.0, 5.0]]]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    y3 = PF.softpool(x.detach().view(1, 1, 6), 3, 1)  # overlapping windows
    assert torch.isfinite(y3).all()
    torch.testing.assert_close(y3[0, 0, 0], torch.tensor(1e4))


def test_softpool_zero_padding_carries_no_weight():
    x = -torch.ones(1, 1, 4, dtype=DT)
    torch.testing.assert_close(PF.softpool(x, 3, 1, 1), -torch.ones(1, 1, 4, dtype=DT))


# ---------------------------------------------------------------- mixed and gated


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mixed_endpoints(dim):
    x = rand(dim, low=-1.0)
    kw = dict(kernel_size=3, stride=2, padding=1)
    torch.testing.assert_close(PF.mixed_pool(x, alpha=1.0, **kw), PF.max_pool(x, **kw))
    torch.testing.assert_close(PF.mixed_pool(x, alpha=0.0, **kw), PF.avg_pool(x, **kw))
    with pytest.raises(ValueError, match="alpha"):
        PF.mixed_pool(x, 2, alpha=1.5)


def test_mixed_learnable_alpha_gets_gradient():
    pool = poolkit.create_pool("mixed:alpha=0.3,learnable=true", dim=2).double()
    torch.testing.assert_close(float(pool.alpha.detach()), 0.3)
    pool(rand(2)).sum().backward()
    assert pool.alpha_raw.grad is not None and pool.alpha_raw.grad != 0


def test_gated_matches_gate_formula():
    x = rand(2, size=6, c=3, low=-1.0)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 1, 2, 2, generator=g, dtype=DT)
    win = gather(x, 2, 2)
    gate = torch.sigmoid((win * w.view(1, 3, 1, 1, 4)).sum(-1))
    ref = gate * win.amax(-1) + (1 - gate) * win.mean(-1)
    torch.testing.assert_close(PF.gated_pool(x, w, 2), ref)
    shared = w[:1]
    gate = torch.sigmoid((win * shared.view(1, 1, 1, 1, 4)).sum(-1))
    torch.testing.assert_close(PF.gated_pool(x, shared, 2), gate * win.amax(-1) + (1 - gate) * win.mean(-1))


def test_gated_module_needs_channels_and_learns():
    with pytest.raises(ValueError, match="channels"):
        pnn.GatedPool2d(2)
    pool = pnn.GatedPool2d(3, 2, 1, channels=3, per_channel=True, dtype=DT)
    x = rand(2, c=3)
    torch.testing.assert_close(pool(x), PF.mixed_pool(x, 3, 2, 1, alpha=0.5))  # zero gate kernel
    pool(x).sum().backward()
    assert pool.weight.grad is not None and pool.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="channels"):
        pool(rand(2, c=4))
    with pytest.raises(ValueError, match="weight"):
        PF.gated_pool(x, torch.zeros(3, 1, 3, 3, dtype=DT), 2)
    g = pnn.GatedPool1d(output_size=2, channels=3, dtype=DT)
    assert g.weight.shape == (1,) and g(rand(1, c=3)).shape == (2, 3, 2)


# ---------------------------------------------------------------- shared behaviour

SMOOTH = {
    "gem": lambda x, **kw: PF.gem_pool(x, p=2.5, **kw),
    "lp": lambda x, **kw: PF.lp_pool(x, p=3.0, **kw),
    "lse": lambda x, **kw: PF.lse_pool(x, beta=2.0, **kw),
    "softpool": PF.softpool,
    "mixed": lambda x, **kw: PF.mixed_pool(x, alpha=0.3, **kw),
    "gated": lambda x, **kw: PF.gated_pool(x, torch.full((1,), 0.7, dtype=x.dtype), **kw),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_global_equals_window_covering_input(name, dim):
    x = rand(dim, size=5, low=0.1)
    fn = SMOOTH[name]
    if name == "gated":  # the local form takes a gate kernel: a constant kernel w gives w * 5**dim * mean
        local = PF.gated_pool(x, torch.full((1, 1) + (5,) * dim, 0.7 / 5**dim, dtype=DT), 5)
    else:
        local = fn(x, kernel_size=5)
    torch.testing.assert_close(fn(x, output_size=1), local)


@pytest.mark.parametrize("name", ["lse", "softpool", "gem"])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_equal_explicit_pad(name, mode):
    x = rand(2, low=0.1)
    fn = SMOOTH[name]
    torch.testing.assert_close(fn(x, kernel_size=3, stride=2, padding=1, padding_mode=mode),
                               fn(F.pad(x, [1, 1, 1, 1], mode=mode), kernel_size=3, stride=2))


@pytest.mark.parametrize("name", ["lse", "softpool", "gem", "lp", "mixed"])
def test_same_padding_equals_explicit_zero_pad_where_zeros_count(name):
    x = rand(2, low=0.1)
    a, b = same_pads(7, 4, 3)
    fn = SMOOTH[name]
    y = fn(x, kernel_size=4, stride=3, padding="same")
    xp = F.pad(x, [a, b, a, b])
    if name in ("softpool", "mixed"):  # zero padding carries no weight in softpool / the max
        assert y.shape[2:] == (3, 3) and torch.isfinite(y).all()
        inner = fn(xp, kernel_size=4, stride=3)[..., 1:-1, 1:-1]
        torch.testing.assert_close(y[..., 1:-1, 1:-1], inner)
    else:
        torch.testing.assert_close(y, fn(xp, kernel_size=4, stride=3))


@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_with_padding(name, dtype):
    x = rand(2, low=0.1).float()
    fn = SMOOTH[name]
    kw = dict(kernel_size=3, stride=2, padding=1)
    if name == "gated":
        ref = PF.gated_pool(x, torch.full((1, 1, 3, 3), 0.1), **kw)
        y = PF.gated_pool(x.to(dtype), torch.full((1, 1, 3, 3), 0.1, dtype=dtype), **kw)
    else:
        ref, y = fn(x, **kw), fn(x.to(dtype), **kw)
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), ref, rtol=4e-2, atol=4e-2)


@pytest.mark.parametrize("spec", ["gem", "lse:learnable=true", "mixed:learnable=true", "gated"])
def test_learnable_parameters_get_gradients(spec):
    pool = poolkit.create_pool(spec, dim=2, kernel_size=2, channels=3).double()
    params = list(pool.parameters())
    assert params
    pool(rand(2, low=0.1)).sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_bad_arguments_name_what_is_accepted():
    x = rand(1)
    with pytest.raises(ValueError, match="p must"):
        PF.lp_pool(x, 2, p=0.5)
    with pytest.raises(ValueError, match="norm_type"):
        pnn.LPPool1d(0.5, 2)  # torch's order: norm_type, kernel_size
    with pytest.raises(ValueError, match="eps"):
        PF.gem_pool(x, 2, eps=0.0)
    with pytest.raises(TypeError, match="weight"):
        PF.gated_pool(x, 0.5, 2)
    with pytest.raises(ValueError, match="accepted"):
        poolkit.create_pool("gem:dilation=2", dim=1)
    with pytest.raises(ValueError, match="alpha"):
        pnn.MixedPool1d(2, alpha=1.0, learnable=True)
    with pytest.raises(TypeError, match="kernel_size"):
        PF.softpool(x)


# ---------------------------------------------------------------- property: within the window's range


def _bounds(x: torch.Tensor, k: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = gather(x, k, s)
    return w.amin(-1), w.amax(-1)


@settings(max_examples=40, deadline=None)
@given(
    dim=st.integers(1, 2),
    size=st.integers(3, 6),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
    seed=st.integers(0, 2**16),
)
def test_smooth_statistics_lie_within_window_range(dim, size, k, s, scale, seed):
    k = min(k, size)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((1, 2) + (size,) * dim, generator=g, dtype=DT) * 2 - 1) * scale
    lo, hi = _bounds(x, k, s)
    tol = 1e-9 * max(scale, 1.0)
    outs = {
        "lse": PF.lse_pool(x, k, s, beta=3.0),
        "softpool": PF.softpool(x, k, s),
        "mixed": PF.mixed_pool(x, k, s, alpha=0.7),
        "gated": PF.gated_pool(x, torch.randn((1, 1) + (k,) * dim, generator=g, dtype=DT), k, s),
    }
    xa = x.abs() + 1e-3  # gem and the lp mean are defined on positive values
    alo, ahi = _bounds(xa, k, s)
    outs_pos = {
        "gem": PF.gem_pool(xa, k, s, p=3.0),
        "lp-mean": PF.lp_pool(xa, k, s, p=2.5) / (k**dim) ** (1 / 2.5),
    }
    for name, y in outs.items():
        assert (y >= lo - tol).all() and (y <= hi + tol).all(), name
    for name, y in outs_pos.items():
        assert (y >= alo - tol).all() and (y <= ahi + tol).all(), name

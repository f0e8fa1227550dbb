"""The fast kernels of the smooth statistics against their plain formulas.

Without autograd the pointwise map and the native average run chunk by chunk
(:func:`poolkit.functional._fast.power._chunked_means`); under autograd lp, gem
and stochastic pooling's eval mode use custom backwards built on torch's native
average-pooling backward; lse and softpool shift each window by its maximum in
non-overlapping phases. All must give the plain formula's values and gradients
(references here: torch ops with autograd, float64).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import poolkit
import poolkit.functional as PF
from poolkit.functional._fast import power as K

DT = torch.float64
CL = {2: torch.channels_last, 3: torch.channels_last_3d}

# (kernel, stride, padding, ceil_mode): non-overlapping, overlapping with padding, overlapping, ceil overhang
GEOMS = [(2, 2, 0, False), (3, 1, 1, False), (3, 2, 0, False), (3, 2, 1, True)]


def rand(dim: int, size: int = 7, c: int = 3, low: float = -1.0, high: float = 2.0, seed: int = 0, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, c) + (size,) * dim, generator=g, dtype=dtype) * (high - low) + low


def avg(x: torch.Tensor, k: int, s: int, p: int, ceil: bool, cip: bool = True) -> torch.Tensor:
    """torch's average pooling (1-D through the 2-D op, which has a divisor and ceil rules like the others)."""
    if x.ndim == 3:
        return F.avg_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, p), ceil, cip).squeeze(2)
    return getattr(F, f"avg_pool{x.ndim - 2}d")(x, k, s, p, ceil, cip)


def padded(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.pad(x, [p, p] * (x.ndim - 2))


# plain formulas, written with torch ops (autograd gives the reference gradient)
def ref_lp(x, k, s, p, ceil, power):
    t = x.abs() ** power
    total = avg(t, k, s, p, ceil) * k ** (x.ndim - 2)
    return total ** (1.0 / power)


def ref_gem(x, k, s, p, ceil, power, eps=1e-6):
    return avg(x.clamp(min=eps) ** power, k, s, p, ceil) ** (1.0 / power)


def ref_lse(x, k, s, p, ceil, beta):
    return torch.log(avg(torch.exp(beta * padded(x, p)), k, s, 0, ceil)) / beta  # counted zero padding: e^0


def ref_softpool(x, k, s, p, ceil):
    e = torch.exp(x)
    return avg(x * e, k, s, p, ceil) / avg(e, k, s, p, ceil)


def ref_stochastic(x, k, s, p, ceil):
    a = torch.relu(x)
    num, den = avg(a * a, k, s, p, ceil), avg(a, k, s, p, ceil)
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, 1.0), 0.0)


def ref_mixed(x, k, s, p, ceil):
    mp = F.max_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, p), 1, ceil).squeeze(2) if x.ndim == 3 else (
        getattr(F, f"max_pool{x.ndim - 2}d")(x, k, s, p, 1, ceil))
    return 0.3 * mp + 0.7 * avg(x, k, s, p, ceil)


CASES = {
    "lp2": (lambda x, k, s, p, c: PF.lp_pool(x, k, s, p, c, p=2.0), lambda *a: ref_lp(*a, 2.0)),
    "lp3": (lambda x, k, s, p, c: PF.lp_pool(x, k, s, p, c, p=3.0, absolute=True), lambda *a: ref_lp(*a, 3.0)),
    "lp1.5": (lambda x, k, s, p, c: PF.lp_pool(x, k, s, p, c, p=1.5, absolute=True), lambda *a: ref_lp(*a, 1.5)),
    "gem3": (lambda x, k, s, p, c: PF.gem_pool(x, k, s, p, c, p=3.0), lambda *a: ref_gem(*a, 3.0)),
    "gem0.5": (lambda x, k, s, p, c: PF.gem_pool(x, k, s, p, c, p=0.5), lambda *a: ref_gem(*a, 0.5)),
    "lse": (lambda x, k, s, p, c: PF.lse_pool(x, k, s, p, c, beta=1.5), lambda *a: ref_lse(*a, 1.5)),
    "softpool": (lambda x, k, s, p, c: PF.softpool(x, k, s, p, c), ref_softpool),
    "stochastic": (lambda x, k, s, p, c: PF.stochastic_pool(x, k, s, p, c, training=False), ref_stochastic),
    "mixed": (lambda x, k, s, p, c: PF.mixed_pool(x, k, s, p, c, alpha=0.3), ref_mixed),
}


def _ceil_ok(name: str, geom) -> bool:
    # lse's reference pads explicitly, where torch's ceil rule for the last window differs; lp's reference
    # scales by the full kernel, which is poolkit's (torch's) rule only without padding
    _, _, p, ceil = geom
    return not (ceil and (name == "lse" or (name.startswith("lp") and p)))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_custom_backward_equals_autograd_of_plain_formula(name, geom, dim):
    if not _ceil_ok(name, geom):
        pytest.skip("reference formula does not model this ceil window")
    ours, ref = CASES[name]
    x = rand(dim)
    g = torch.randn(ours(x, *geom).shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    xa = x.clone().requires_grad_(True)
    y = ours(xa, *geom)
    assert y.grad_fn is not None
    (ga,) = torch.autograd.grad(y, xa, g)
    xb = x.clone().requires_grad_(True)
    yr = ref(xb, *geom)
    (gb,) = torch.autograd.grad(yr, xb, g)
    torch.testing.assert_close(y, yr)
    torch.testing.assert_close(ga, gb)


def test_custom_backwards_are_the_ones_used():
    """The statistics under autograd go through the analytic backwards (not autograd's op-by-op graph)."""
    x = rand(2).requires_grad_(True)
    names = {
        "lp": PF.lp_pool(x, 2, p=3.0, absolute=True), "gem": PF.gem_pool(x, 2), "lse": PF.lse_pool(x, 2),
        "softpool": PF.softpool(x, 2), "stochastic": PF.stochastic_pool(x, 2, training=False),
    }
    expected = {"lp": K._LpFn, "gem": K._GemFn, "stochastic": K._LehmerFn}
    for name, y in names.items():
        if name in expected:  # lse and softpool: autograd through the phases kernel (see the next test)
            assert type(y.grad_fn).__name__ == expected[name].__name__ + "Backward", (name, type(y.grad_fn).__name__)


def test_lse_and_softpool_under_autograd_take_the_phases_kernel(monkeypatch):
    seen = []
    real = K._phase_reduce
    monkeypatch.setattr(K, "_phase_reduce", lambda *a: seen.append(1) or real(*a))
    x = rand(2).requires_grad_(True)
    PF.lse_pool(x, 3, 1, 1).sum().backward()
    PF.softpool(x, 2).sum().backward()
    assert len(seen) == 2


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gradcheck_overlapping_padded_and_adaptive(dim):
    x = rand(dim, size=5 if dim < 3 else 4, c=1, low=-0.5, high=1.5).requires_grad_(True)
    for geom in ({"kernel_size": 3, "stride": 1, "padding": 1}, {"kernel_size": 3, "stride": 2, "ceil_mode": True},
                 {"output_size": 2}):
        for fn in (
            lambda t: PF.lp_pool(t, p=3.0, **geom),
            lambda t: PF.gem_pool(t, p=2.5, **geom),
            lambda t: PF.lse_pool(t, beta=2.0, **geom),
            lambda t: PF.softpool(t, **geom),
            lambda t: PF.stochastic_pool(t, training=False, **geom),
        ):
            assert torch.autograd.gradcheck(fn, (x,), fast_mode=dim == 3), geom


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gem_learnable_per_channel_p_gradcheck_and_matches_autograd(dim):
    x = rand(dim, size=5 if dim < 3 else 3, c=3, low=-0.2, high=1.5).requires_grad_(True)
    p = torch.tensor([1.5, 3.0, 0.7], dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, q: PF.gem_pool(t, 3, 1, 1, p=q), (x, p), fast_mode=True)
    y = PF.gem_pool(x, 3, 1, 1, p=p)
    g = torch.rand_like(y)
    gx, gp = torch.autograd.grad(y, (x, p), g)
    pv = p.view(1, -1, *(1,) * dim)
    ref = avg(x.clamp(min=1e-6) ** pv, 3, 1, 1, False) ** (1.0 / pv)
    rx, rp = torch.autograd.grad(ref, (x, p), g)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gp, rp)
    # a scalar tensor p gets a scalar gradient
    q = torch.tensor(2.0, dtype=DT, requires_grad=True)
    (gq,) = torch.autograd.grad(PF.gem_pool(x, 2, p=q).sum(), q)
    (rq,) = torch.autograd.grad((avg(x.clamp(min=1e-6) ** q, 2, 2, 0, False) ** (1.0 / q)).sum(), q)
    assert gq.shape == () and torch.allclose(gq, rq)


def test_lse_per_channel_beta_gradients_match_autograd():
    x = rand(2, size=6).requires_grad_(True)
    beta = torch.tensor([0.5, 1.0, 3.0], dtype=DT)
    y = PF.lse_pool(x, 3, 1, 1, beta=beta)  # fixed beta: the custom backward
    bv = beta.view(1, -1, 1, 1)
    ref = torch.log(avg(torch.exp(bv * padded(x, 1)), 3, 1, 0, False)) / bv
    g = torch.rand_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0])
    learn = beta.clone().requires_grad_(True)  # learnable beta: autograd through the plain formula
    assert torch.autograd.gradcheck(lambda t, b: PF.lse_pool(t, 2, beta=b), (x[:1, :, :4, :4], learn), fast_mode=True)


@pytest.mark.parametrize("dim", [2, 3])
def test_gradients_do_not_depend_on_memory_layout(dim):
    x = rand(dim, size=6)
    xc = x.contiguous(memory_format=CL[dim])
    for fn in (lambda t: PF.lp_pool(t, 2, p=2.0), lambda t: PF.gem_pool(t, 3, 1, 1), lambda t: PF.lse_pool(t, 2),
               lambda t: PF.softpool(t, 3, 2), lambda t: PF.stochastic_pool(t, 2, training=False)):
        a, b = x.clone().requires_grad_(True), xc.clone().requires_grad_(True)
        ya, yb = fn(a), fn(b)
        torch.testing.assert_close(ya, yb)
        g = torch.rand_like(ya)
        torch.testing.assert_close(torch.autograd.grad(ya, a, g)[0], torch.autograd.grad(yb, b, g)[0])


def test_overflow_under_autograd_takes_the_exact_stable_path():
    x = (rand(2, size=6) * 500).requires_grad_(True)  # exp overflows even float64
    for fn, ref in (
        (lambda t: PF.lse_pool(t, 2), lambda t: torch.logsumexp(_windows(t), -1) - math.log(4.0)),
        (lambda t: PF.softpool(t, 2), lambda t: (torch.softmax(_windows(t), -1) * _windows(t)).sum(-1)),
    ):
        y = fn(x)
        g = torch.rand_like(y)
        (gx,) = torch.autograd.grad(y, x, g)
        yr = ref(x)
        (gr,) = torch.autograd.grad(yr, x, g)
        assert torch.isfinite(y).all() and torch.isfinite(gx).all()
        torch.testing.assert_close(y, yr)
        torch.testing.assert_close(gx, gr)


def _windows(x: torch.Tensor) -> torch.Tensor:
    return x.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)


def test_zero_windows_have_zero_gradient():
    x = torch.zeros(1, 2, 4, 4, dtype=DT)
    x[0, 0, :2, :2] = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    x[0, 1] = -1.0  # no positive cell anywhere: stochastic gives 0 with zero gradient
    x.requires_grad_(True)
    for fn in (lambda t: PF.lp_pool(t, 2, p=2.0), lambda t: PF.lp_pool(t, 2, p=3.0, absolute=True),
               lambda t: PF.stochastic_pool(t, 2, training=False)):
        y = fn(x)
        (gx,) = torch.autograd.grad(y.sum(), x)
        assert torch.isfinite(gx).all()
    (gx,) = torch.autograd.grad(PF.stochastic_pool(x, 2, training=False).sum(), x)
    assert (gx[0, 1] == 0).all()
    (gx,) = torch.autograd.grad(PF.lp_pool(x, 2, p=2.0).sum(), x)
    assert (gx[0, 0, 2:, 2:] == 0).all()  # an all-zero window


# ---------------------------------------------------------------- chunked inference path


@pytest.fixture
def spy(monkeypatch):
    """Counts the chunked path's calls that answered (not ``None``)."""
    calls = []
    real = K._chunked_means

    def wrapped(*a, **kw):
        out = real(*a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(K, "_chunked_means", wrapped)
    return calls


NOGRAD = {
    "lp2": lambda x, **k: PF.lp_pool(x, p=2.0, **k),
    "lp3": lambda x, **k: PF.lp_pool(x, p=3.0, absolute=True, **k),
    "lp1": lambda x, **k: PF.lp_pool(x, p=1.0, **k),
    "gem": lambda x, **k: PF.gem_pool(x, p=3.0, **k),
    "gem_c": lambda x, **k: PF.gem_pool(x, p=torch.tensor([1.0, 2.5, 4.0]).to(x.dtype), **k),
    "stochastic": lambda x, **k: PF.stochastic_pool(x, training=False, **k),
}


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", list(NOGRAD))
def test_chunked_path_equals_plain_path(name, dim, layout, spy, monkeypatch):
    if dim == 1 and layout == "channels_last":
        pytest.skip("1-d has one layout")
    x = rand(dim, size=9, c=3, low=-2.0, high=2.0, dtype=torch.float32)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL[dim])
    fn = NOGRAD[name]
    geoms = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
             dict(kernel_size=3, stride=2, ceil_mode=True)]
    if name.startswith("gem"):
        geoms.append(dict(kernel_size=3, stride=2, padding=1, count_include_pad=False))
    for kw in geoms:
        with torch.no_grad():
            monkeypatch.setattr(K, "_CHUNK_BYTES", 0)
            plain = fn(x, **kw)
            monkeypatch.setattr(K, "_CHUNK_BYTES", 700)  # a few rows or one sample per chunk: many chunks
            spy.clear()
            chunked = fn(x, **kw)
        used = not (dim == 3 and name.startswith(("lp", "stochastic")))  # measured no gain there: not registered
        assert bool(spy and spy[-1]) == used, kw  # the chunked path answered where it applies
        assert chunked.shape == plain.shape
        torch.testing.assert_close(chunked, plain, rtol=2e-6, atol=1e-6)


def test_chunked_path_is_skipped_where_it_does_not_apply(spy):
    x = rand(2, dtype=torch.float32)
    with torch.no_grad():
        PF.lp_pool(x, 3, 1, 1, padding_mode="reflect")  # padding by copies: not one native average
        PF.gem_pool(x, output_size=3)  # adaptive, uneven
        PF.gem_pool(x[..., ::2], 2)  # neither contiguous nor channels_last
        assert not any(spy)
        PF.lp_pool(x.half(), 2)  # low precision computes in float32 (chunked)
        assert spy[-1]
    spy.clear()
    with poolkit.fast_paths(False), torch.no_grad():
        PF.gem_pool(x, 2)  # the switch
    PF.gem_pool(x.requires_grad_(True), 2)  # autograd: the custom backward, not the chunks
    assert not spy


def test_chunked_overflow_keeps_the_exact_fallback():
    x = rand(2, size=8, dtype=torch.float32) * 1e3
    with torch.no_grad():
        y = PF.softpool(x, 2)
        ref = (torch.softmax(_windows(x.double()), -1) * _windows(x.double())).sum(-1)
        torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-2)
        z = PF.lse_pool(x, 2)
        zr = torch.logsumexp(_windows(x.double()), -1) - torch.log(torch.tensor(4.0, dtype=DT))
        torch.testing.assert_close(z.double(), zr, rtol=1e-5, atol=1e-2)


_PHASES_FNS = [lambda t: PF.softpool(t, 3, 2, 1), lambda t: PF.lse_pool(t, 3, 2, 1, beta=2.0)]


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(
    "fn",
    [
        *_PHASES_FNS,
        lambda t: PF.gem_pool(t, 3, 2, 1, p=3.0),
        lambda t: PF.lp_pool(t, 2, p=3.0, absolute=True),
        lambda t: PF.stochastic_pool(t, 3, 2, 1, training=False),
    ],
    ids=["softpool", "lse", "gem", "lp", "stochastic"],
)
def test_custom_backwards_support_double_backward(fn, dim, spy_backward):
    """create_graph=True gives a differentiable gradient (gradgradcheck), through the fast kernels."""
    x = rand(dim, size=5, c=2, low=0.1, high=1.5).requires_grad_(True)
    assert torch.autograd.gradgradcheck(fn, (x,))
    if dim > 1 or fn not in _PHASES_FNS:  # the phases kernel (lse, softpool) serves 2-d and 3-d only
        assert spy_backward, "the fast kernel did not run"


def test_gem_double_backward_reaches_a_learnable_p():
    x = rand(2, size=5, c=2, low=0.1, high=1.5).requires_grad_(True)
    p = torch.tensor([2.0, 3.5], dtype=DT, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t, q: PF.gem_pool(t, 2, p=q), (x, p))


@pytest.fixture
def spy_backward(monkeypatch):
    """Records which custom functions' backwards ran."""
    seen: list[str] = []
    real = K._phase_reduce  # lse and softpool: autograd through the shifted phases
    monkeypatch.setattr(K, "_phase_reduce", lambda *a: seen.append("phases") or real(*a))
    for name in ("_GemFn", "_LpFn", "_LehmerFn"):
        cls = getattr(K, name)
        original = cls.backward

        def wrapped(ctx, *g, _orig=original, _name=name):
            seen.append(_name)
            return _orig(ctx, *g)

        monkeypatch.setattr(cls, "backward", staticmethod(wrapped))
    return seen


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.3, "per-channel"])
def test_chunked_mixed_equals_plain_mixed(alpha, dim, layout, monkeypatch):
    if dim == 1 and layout == "channels_last":
        pytest.skip("1-d has one layout")
    used = dim == 1 or (dim == 2 and layout == "contiguous")  # where the chunks change the layout
    calls = []
    real = K._chunks

    def spy_mixed(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(K, "_chunks", spy_mixed)
    x = rand(dim, size=9, c=3, low=-2.0, high=2.0, dtype=torch.float32)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL[dim])
    a = torch.tensor([0.1, 0.5, 0.9]) if alpha == "per-channel" else alpha
    geoms = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
             dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)]
    for kw in geoms:
        with torch.no_grad():
            monkeypatch.setattr(K, "_CHUNK_BYTES", 0)
            plain = PF.mixed_pool(x, alpha=a, **kw)
            monkeypatch.setattr(K, "_CHUNK_BYTES", 700)  # many chunks, an uneven last one
            calls.clear()
            chunked = PF.mixed_pool(x, alpha=a, **kw)
        assert bool(calls) == used, kw  # the chunked kernel answered where it applies
        ref = torch.lerp(PF.avg_pool(x, **kw), PF.max_pool(x, kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                                                        ceil_mode=kw.get("ceil_mode", False)),
                         a.view((1, -1) + (1,) * dim) if isinstance(a, torch.Tensor) else a)
        torch.testing.assert_close(chunked, plain, rtol=2e-6, atol=1e-6)
        torch.testing.assert_close(chunked, ref, rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------- fast kernels on vs off (the one switch)

_GEN = torch.Generator().manual_seed(5)
_PC = torch.tensor([0.7, 1.5, 3.0])  # one parameter per channel

ON_OFF = {
    "avg": lambda x, **k: PF.avg_pool(x, **k),
    "avg_nocount": lambda x, **k: PF.avg_pool(x, count_include_pad=False, **k),
    "lp2": lambda x, **k: PF.lp_pool(x, p=2.0, **_nocip(k)),
    "lp3": lambda x, **k: PF.lp_pool(x, p=3.0, **_nocip(k)),  # torch's formula: NaN where a signed sum is < 0
    "lp3_abs": lambda x, **k: PF.lp_pool(x, p=3.0, absolute=True, **_nocip(k)),
    "lp1": lambda x, **k: PF.lp_pool(x, p=1.0, **_nocip(k)),
    "gem": lambda x, **k: PF.gem_pool(x, p=3.0, **k),
    "gem_c": lambda x, **k: PF.gem_pool(x, p=_PC.to(x.dtype), **k),
    "lse": lambda x, **k: PF.lse_pool(x, beta=2.0, **k),
    "lse_nocount": lambda x, **k: PF.lse_pool(x, beta=2.0, count_include_pad=False, **k),
    "lse_c": lambda x, **k: PF.lse_pool(x, beta=_PC.to(x.dtype), **k),
    "softpool": lambda x, **k: PF.softpool(x, **_nocip(k)),
    "mixed": lambda x, **k: PF.mixed_pool(x, alpha=0.3, **k),
    "mixed_c": lambda x, **k: PF.mixed_pool(x, alpha=_PC.div(4).to(x.dtype), **k),
    "stochastic_eval": lambda x, **k: PF.stochastic_pool(x, training=False, **_nocip(k)),
    "stochastic_draw": lambda x, **k: PF.stochastic_pool(x, generator=torch.Generator().manual_seed(3), **_nocip(k)),
}

# overlapping, padded, ceil_mode, gaps between windows, same padding, padding by copies, global, uneven adaptive
ON_OFF_GEOMS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=3),
    dict(kernel_size=4, stride=2, padding="same"),
    dict(kernel_size=3, stride=2, padding=1, padding_mode="reflect"),
    dict(output_size=1),
    dict(output_size=3),
]


def _nocip(k: dict) -> dict:
    return {key: v for key, v in k.items() if key != "count_include_pad"}


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return x.contiguous(memory_format=CL[x.ndim - 2])
    if layout == "strided":  # a view that is neither contiguous nor channels_last
        return torch.cat([x, x], dim=-1)[..., ::2]
    return x


def _run(fn, x: torch.Tensor, kw: dict, mode: str, g: torch.Tensor | None):
    if mode == "grad":
        xa = x.detach().requires_grad_(True)
        y = fn(xa, **kw)
        (gx,) = torch.autograd.grad(y, xa, torch.ones_like(y) if g is None else g)
        return y, gx
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        return fn(x, **kw), None


def _same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.stride() == b.stride(), (what, a.stride(), b.stride())
    tol = dict(rtol=1e-5, atol=1e-5 if "gradient" in what else 1e-6) if a.dtype == torch.float32 else {}
    torch.testing.assert_close(a, b, **tol, equal_nan=True, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", list(ON_OFF))
def test_fast_kernels_on_equal_off(name, dim, layout):
    """Values, input gradients, dtype and strides with the fast kernels on equal those with them off."""
    if dim == 1 and layout == "channels_last":
        pytest.skip("1-d has one dense layout")
    fn = ON_OFF[name]
    x = _layout(rand(dim, size=7 if dim < 3 else 6, dtype=torch.float32), layout)
    for kw in ON_OFF_GEOMS:
        if "padding_mode" in kw and name.startswith("avg") and "nocount" in name:
            continue
        for mode in ("grad", "no_grad", "inference_mode"):
            with poolkit.fast_paths(False):
                ref, gref = _run(fn, x, kw, mode, None)
            g = torch.randn(ref.shape, generator=_GEN).to(ref.dtype) if mode == "grad" else None
            if g is not None:
                with poolkit.fast_paths(False):
                    ref, gref = _run(fn, x, kw, mode, g)
            out, gout = _run(fn, x, kw, mode, g)
            _same(out, ref, f"{name} {kw} {mode} output")
            if gref is not None:
                _same(gout, gref, f"{name} {kw} {mode} input gradient")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["lp2", "gem", "lse", "softpool", "mixed", "stochastic_eval", "avg"])
def test_fast_kernels_on_equal_off_other_dtypes(name, dtype):
    fn = ON_OFF[name]
    for dim in (1, 2):
        x = rand(dim, size=8, dtype=dtype)
        for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)):
            for mode in ("grad", "no_grad"):
                if mode == "grad" and dtype != torch.float64:
                    continue
                with poolkit.fast_paths(False):
                    ref, gref = _run(fn, x, kw, mode, None)
                out, gout = _run(fn, x, kw, mode, None)
                _same(out, ref, f"{name} {dtype} {kw} {mode}")
                if gref is not None:
                    _same(gout, gref, f"{name} {dtype} {kw} {mode} input gradient")


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_eval_output_flattens_with_view(dim):
    """A classic ``y.view(y.size(0), -1)`` works on outputs of contiguous input in eval as in training."""
    x = rand(dim, size=8, dtype=torch.float32)
    for fn in ON_OFF.values():
        for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)):
            with torch.no_grad():
                y = fn(x, **kw)
            assert y.view(y.size(0), -1).shape[1] == y[0].numel()


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(output_size=3)], ids=str)
def test_avg_and_lp_match_torch_strides_in_every_mode(dim, kw):
    """avg and lp are torch's ops on the same input: same values and strides, in grad, no_grad and inference."""
    if "output_size" in kw:
        ours, theirs = (lambda t: PF.avg_pool(t, **kw)), (lambda t: getattr(F, f"adaptive_avg_pool{dim}d")(t, 3))
    else:
        k, s, p, c = kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("ceil_mode", False)
        ours = lambda t: PF.avg_pool(t, **kw)
        theirs = lambda t: getattr(F, f"avg_pool{dim}d")(t, k, s, p, c)
    lp_kw = dict(kernel_size=2) if "output_size" in kw else {"kernel_size": 3, "stride": 2, "ceil_mode": True}
    for layout in ("contiguous", "channels_last") if dim > 1 else ("contiguous",):
        x = _layout(rand(dim, size=9, low=0.0, dtype=torch.float32), layout)
        for mode in ("grad", "no_grad", "inference_mode"):
            y, gy = _run(ours, x, {}, mode, None)
            r, gr = _run(theirs, x, {}, mode, None)
            _same(y, r, f"avg {layout} {mode}")
            if gr is not None:
                _same(gy, gr, f"avg {layout} {mode} input gradient")
            y, _ = _run(lambda t: PF.lp_pool(t, p=2.0, **lp_kw), x, {}, mode, None)
            ref_lp = getattr(F, f"lp_pool{dim}d")
            k_lp, s_lp, c_lp = lp_kw["kernel_size"], lp_kw.get("stride"), lp_kw.get("ceil_mode", False)
            r, _ = _run(lambda t: ref_lp(t, 2.0, k_lp, s_lp, c_lp), x, {}, mode, None)
            _same(y, r, f"lp {layout} {mode}")


# ---------------------------------------------------------------- no host sync


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", ["lse", "lse_c", "softpool"])
def test_lse_and_softpool_compile_without_graph_breaks(name, dim):
    """``fullgraph=True`` fails on a graph break, e.g. ``bool(tensor)`` (a host sync on CUDA)."""
    fn = ON_OFF[name]
    x = rand(dim, size=6, dtype=torch.float32)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(output_size=4)):
        torch._dynamo.reset()
        compiled = torch.compile(lambda t: fn(t, **kw), backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x * 100), fn(x * 100, **kw))


@pytest.mark.parametrize("name", ["lse", "softpool"])
def test_phases_kernels_compile_without_graph_breaks(name):
    """The kernels themselves (not only the reference formula that compiling selects) trace in one graph."""
    from poolkit.functional._window import resolve

    x = rand(2, size=7, dtype=torch.float32) * 100
    win = resolve(x, 3, 2, 1, 1, True)
    run = (lambda t: K._lse_phases(t, win, 2.0, "zeros", True)) if name == "lse" else (
        lambda t: K._softpool_phases(t, win, "zeros"))
    torch.testing.assert_close(torch.compile(run, backend="eager", fullgraph=True)(x), run(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (sync debug mode is CUDA-only)")
@pytest.mark.parametrize("name", list(ON_OFF))
def test_no_host_sync_on_cuda(name):
    fn = ON_OFF[name]
    x = rand(2, size=16, dtype=torch.float32).cuda()
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(output_size=1)):
        xa = x.clone().requires_grad_(True)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            y = fn(xa, **kw)
            y.backward(torch.ones_like(y))
            with torch.no_grad():
                fn(x, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")

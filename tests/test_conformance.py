"""One conformance suite for every registered pool, present and future, in 1-D, 2-D and 3-D.

A pool may opt out of a check only by naming it in its class's
``conformance_skip = {"check": "reason"}``; the reason is shown as the skip message.
``pytest --device cuda tests/test_conformance.py`` runs the suite on a GPU (see tests/conftest.py).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import poolkit
from poolkit.registry import get_pool_class

C = 4
DEV = torch.device("cpu")  # set from --device by the autouse fixture below
POSITIVE = {"gem", "mle", "adaptive_mle", "stochastic"}  # positive-domain statistics
NAMES = poolkit.list_pools()
DIMS = (1, 2, 3)
CASES = [(n, d) for n in NAMES for d in DIMS]


def _ids(case):
    return f"{case[0]}-{case[1]}d"


@pytest.fixture(autouse=True)
def _on_device(device):
    global DEV
    DEV = device


def positive(dim: int, size: int = 6, dtype=torch.float64, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """Strictly positive, distinct values: fair to every statistic (gem, lp, mle, ...)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((batch, C) + (size,) * dim, generator=g, dtype=dtype) + 0.1).to(DEV)


def signed(dim: int, size: int = 6, dtype=torch.float64, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """Signed normal values (distinct, none near 0 in practice)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, C) + (size,) * dim, generator=g, dtype=dtype).to(DEV)


def fair(name: str, dim: int, **kw) -> torch.Tensor:
    """Signed input, or positive input for the positive-domain statistics."""
    return (positive if name in POSITIVE else signed)(dim, **kw)


def make(name: str, dim: int, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return poolkit.create_pool(name, dim=dim, channels=C, **kw).to(DEV)


def first(y):
    return y[0] if isinstance(y, tuple) else y


def accepts(name: str, dim: int, *params: str) -> bool:
    sig = inspect.signature(get_pool_class(name, dim).__init__).parameters
    return all(p in sig for p in params)


def skip_if_opted_out(name: str, dim: int, check: str) -> None:
    reason = getattr(get_pool_class(name, dim), "conformance_skip", {}).get(check)
    if reason:
        pytest.skip(f"{name}: {reason}")


@pytest.fixture(params=CASES, ids=_ids)
def case(request):
    return request.param


def test_registry_is_not_empty():
    assert {"max", "min", "avg"} <= set(NAMES)


def test_class_naming_follows_torch(case):
    name, dim = case
    cls = get_pool_class(name, dim)
    assert cls.__name__.endswith(f"{dim}d"), cls.__name__
    assert cls.__name__ in poolkit.nn.__all__
    assert cls.__doc__ or cls.__mro__[1].__doc__, f"{cls.__name__} has no docstring"


def test_shape_and_finite(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim, size=7)
    y = first(pool(x))
    assert y.ndim == x.ndim and y.shape[:1] == x.shape[:1]
    assert torch.isfinite(y).all()
    if accepts(name, dim, "padding", "ceil_mode") and not getattr(pool, "conformance_skip", {}).get("shape"):
        for kw in ({"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 2, "ceil_mode": True},
                   {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}):
            p = make(name, dim, **kw).double().eval()
            y = first(p(x))
            ref = torch.nn.functional.max_pool1d(
                torch.zeros(1, 1, 7), kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                ceil_mode=kw.get("ceil_mode", False),
            ).shape[-1]
            assert tuple(y.shape[2:]) == (ref,) * dim, (kw, y.shape)
            assert torch.isfinite(y).all(), kw


def test_same_padding_keeps_ceil_size(case):
    name, dim = case
    if not accepts(name, dim, "padding"):
        pytest.skip(f"{name} takes no padding")
    skip_if_opted_out(name, dim, "shape")
    x = positive(dim, size=7)
    for k, s in ((3, 1), (2, 2), (3, 2)):
        y = first(make(name, dim, kernel_size=k, stride=s, padding="same").double().eval()(x))
        assert tuple(y.shape[2:]) == (math.ceil(7 / s),) * dim, (k, s, y.shape)


def test_padding_modes(case):
    name, dim = case
    if not accepts(name, dim, "padding", "padding_mode"):
        pytest.skip(f"{name} takes no padding_mode")
    x = positive(dim, size=6)
    outs = {}
    for mode in ("zeros", "reflect", "replicate", "circular"):
        y = first(make(name, dim, kernel_size=3, stride=1, padding=1, padding_mode=mode).double().eval()(x))
        assert tuple(y.shape[2:]) == (6,) * dim
        assert torch.isfinite(y).all(), mode
        outs[mode] = y
    # interior windows never see the padding: every mode agrees there
    inner = (slice(None), slice(None)) + (slice(1, -1),) * dim
    for mode, y in outs.items():
        torch.testing.assert_close(y[inner], outs["zeros"][inner], msg=mode)


def _overlapping(name: str, dim: int) -> dict:
    """Overlapping, padded windows (kernel 3, stride 2, padding 1) where the pool takes them; the pools whose
    kernel_size is a subsampling factor (no padding argument) get factor 2."""
    if name == "fractional_max":
        return {"kernel_size": 3, "output_size": 2}  # windows of 3 cells at 2 starts in 4-5 cells: overlapping
    if accepts(name, dim, "padding"):
        return {"kernel_size": 3, "stride": 2, "padding": 1}
    return {"kernel_size": 2}


def test_gradcheck_float64(case):
    """float64 gradcheck on overlapping, padded windows; signed input (positive for positive-domain stats)."""
    name, dim = case
    skip_if_opted_out(name, dim, "gradcheck")
    pool = make(name, dim, **_overlapping(name, dim)).double().eval()
    x = fair(name, dim, size=5 if dim < 3 else 4, batch=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: first(pool(t)), (x,), eps=1e-6, atol=1e-5)


def test_torch_func_grad_and_jvp_match_autograd(case):
    """torch.func transforms (what ``poolkit.measure.lie_derivative`` runs) give autograd's derivatives."""
    name, dim = case
    skip_if_opted_out(name, dim, "gradcheck")
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim, size=4, batch=1)
    v = torch.rand_like(x)
    leaf = x.clone().requires_grad_(True)
    y = first(pool(leaf))
    (g_ref,) = torch.autograd.grad(y.sum(), leaf)
    g = torch.func.grad(lambda t: first(pool(t)).sum())(x)
    torch.testing.assert_close(g, g_ref)
    y_jvp, jv = torch.func.jvp(lambda t: first(pool(t)), (x,), (v,))
    torch.testing.assert_close(y_jvp, y.detach())
    # J v against the vector-Jacobian products of every output cell (J's rows), summed with v
    jac = torch.autograd.functional.jacobian(lambda t: first(pool(t)), x)
    jv_ref = (jac.reshape(y.numel(), -1) @ v.reshape(-1)).reshape(y.shape)
    torch.testing.assert_close(jv, jv_ref)


def test_gradient_flows_in_training(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().train()
    x = positive(dim).requires_grad_(True)
    first(pool(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in pool.parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all()


# ---------------------------------------------------------------- module = reference formula
#
# Written here, independent of poolkit's code: torch's own op for the statistics torch has, else a plain
# formula over windows copied with Tensor.unfold. Default parameters, kernel 2 (stride 2), eval mode.


def _windows(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    """(N, C, *out, k**d): every window's cells, last dim."""
    d = x.ndim - 2
    for i in range(d):
        x = x.unfold(2 + i, k, k)
    return x.reshape(*x.shape[: 2 + d], -1)


def _nat(op: str, d: int):
    return getattr(F, f"{op}{d}d")


def _gamma_scale(w: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """Maximum-likelihood gamma scale of each window: Newton on log k - digamma(k) = log mean - mean log."""
    m = w.mean(-1)
    s = m.log() - w.log().mean(-1)
    k = (3 - s + ((s - 3) ** 2 + 24 * s).sqrt()) / (12 * s)  # Minka's start
    for _ in range(iters):
        k = (k - (k.log() - torch.digamma(k) - s) / (1 / k - torch.polygamma(1, k))).clamp_min(1e-8)
    return m / k


def _blur(x: torch.Tensor, filt: int = 4, stride: int = 2, mode: str = "reflect") -> torch.Tensor:
    """antialiased-cnns' BlurPool: pad (filt-1)//2 before, filt//2 after, depthwise binomial filter, stride."""
    d = x.ndim - 2
    a = torch.tensor([math.comb(filt - 1, i) for i in range(filt)], dtype=x.dtype, device=x.device)
    a = a / a.sum()
    w = a
    for _ in range(d - 1):
        w = w[..., None] * a
    xp = F.pad(x, ((filt - 1) // 2, filt // 2) * d, mode=mode)
    c = x.shape[1]
    return _nat("conv", d)(xp, w.expand(c, 1, *w.shape).contiguous(), stride=stride, groups=c)


def _aps(x: torch.Tensor, s: int = 2) -> torch.Tensor:
    """The polyphase component of largest energy, rotated to start at its largest channel-0 sample."""
    d = x.ndim - 2
    out = []
    for b in range(x.shape[0]):
        comps = [x[(b, slice(None), *(slice(o, None, s) for o in off))]
                 for off in itertools.product(range(s), repeat=d)]
        best = max(range(len(comps)), key=lambda i: (float(comps[i].pow(2).sum()), -i))
        c = comps[best]
        j, shifts = int(c[0].flatten().argmax()), []
        for n in reversed(c.shape[1:]):
            shifts.append(j % n)
            j //= n
        out.append(torch.roll(c, [-t for t in reversed(shifts)], list(range(1, d + 1))))
    return torch.stack(out)


def _fractional(x: torch.Tensor) -> torch.Tensor:
    """torch's fractional max pool with every sample 0.5 (poolkit's eval grid); 1-D as 2-D of unit height."""
    d = x.ndim - 2
    n, c = x.shape[:2]
    if d == 1:
        u = torch.full((n, c, 2), 0.5, dtype=x.dtype, device=x.device)
        return F.fractional_max_pool2d(x[:, :, None], (1, 2), output_size=(1, x.shape[-1] // 2),
                                       _random_samples=u)[:, :, 0]
    u = torch.full((n, c, d), 0.5, dtype=x.dtype, device=x.device)
    return _nat("fractional_max_pool", d)(x, 2, output_ratio=(0.5,) * d, _random_samples=u)


def _diffstride(x: torch.Tensor) -> torch.Tensor:
    # the initial stride 2 and ramp R = 4 on every axis, held at least at n / (n - R) (below it the ramp
    # would pass Nyquist): mask clip((t + R - f) / R, 0, 1) over the real spectrum, t = max(n / s, 2) / 2,
    # then a crop to the ramp's support, 2 * ceil(t + R) cells at most
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        s = max(2.0, n / (n - 4)) if n > 4 else 2.0
        t = max(n / s, min(n, 2)) / 2
        m = min(n, 2 * math.ceil(t + 4))
        f = torch.arange(n // 2 + 1, dtype=x.dtype, device=x.device)
        mask = ((t + 4 - f) / 4).clamp(0, 1).reshape([-1] + [1] * (x.ndim - 1 - axis))
        spec = torch.fft.rfft(x, dim=axis, norm="forward") * mask
        x = torch.fft.irfft(spec.narrow(axis, 0, m // 2 + 1), n=m, dim=axis, norm="forward")
    return x


def reference(name: str, x: torch.Tensor) -> torch.Tensor:
    d = x.ndim - 2
    w = _windows(x)
    mp, ap = _nat("max_pool", d), _nat("avg_pool", d)
    mx, mn, mean = w.amax(-1), w.amin(-1), w.mean(-1)
    formulas = {
        "max": lambda: mp(x, 2),
        "min": lambda: -mp(-x, 2),
        "avg": lambda: ap(x, 2),
        "lp": lambda: _nat("lp_pool", d)(x, 2.0, 2),
        "gem": lambda: w.clamp(min=1e-6).pow(3).mean(-1).pow(1 / 3),
        "lse": lambda: w.exp().mean(-1).log(),
        "softpool": lambda: (w * w.exp()).sum(-1) / w.exp().sum(-1),
        "mixed": lambda: 0.5 * mx + 0.5 * mean,
        "gated": lambda: 0.5 * mx + 0.5 * mean,  # the gate starts at zero weights: sigmoid(0) = 1/2
        "range": lambda: mx - mn,
        "median": lambda: w.sort(-1).values[..., (w.shape[-1] - 1) // 2],  # lower median
        "topk": lambda: w.topk(2, -1).values.mean(-1),
        "stochastic": lambda: w.relu().pow(2).sum(-1) / w.relu().sum(-1),  # eval: probability-weighted mean
        "multistat": lambda: torch.cat([mx, mx - mn], 1),  # default stats max + range, stacked on channels
        "mle": lambda: _gamma_scale(w),  # default dist gamma, param scale
        "blurpool": lambda: _blur(x),
        "maxblur": lambda: _blur(mp(x, 2, 1)),
        "aps": lambda: _aps(x),
        "fractional_max": lambda: _fractional(x),
        "diffstride": lambda: _diffstride(x),
    }
    return formulas[name]()


NO_REFERENCE = {
    "adaptive_mle": "before calibration its output is a likelihood-weighted mix of four fitted distributions; "
    "each fit is the mle formula's kind (tests/functional/test_stats.py checks the mix)",
    "lps": "its choice comes from a learned scoring network (randomly initialised), no closed formula",
}


def test_module_equals_reference_formula(case):
    name, dim = case
    if name in NO_REFERENCE:
        pytest.skip(f"{name}: {NO_REFERENCE[name]}")
    pool = make(name, dim, kernel_size=2).double().eval()
    tol = dict(rtol=1e-4, atol=1e-6) if name == "mle" else {}  # the pool's Newton steps stop earlier
    inputs = [positive(dim)] + ([] if name in POSITIVE else [signed(dim, seed=1)])
    for x in inputs:
        with torch.no_grad():
            torch.testing.assert_close(first(pool(x)), reference(name, x), **tol)


def test_eval_is_deterministic(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim)
    with torch.no_grad():
        assert torch.equal(first(pool(x)), first(pool(x)))


def test_noncontiguous_and_channels_last(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim)
    with torch.no_grad():
        ref = first(pool(x))
        wide = torch.cat([x, x], dim=1)[:, ::2]
        wide.copy_(x)
        assert not wide.is_contiguous()
        torch.testing.assert_close(first(pool(wide)), ref)
        if dim in (2, 3):
            fmt = torch.channels_last if dim == 2 else torch.channels_last_3d
            torch.testing.assert_close(first(pool(x.contiguous(memory_format=fmt))), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_close_to_float32(case, dtype):
    name, dim = case
    skip_if_opted_out(name, dim, "low_precision")
    pool = make(name, dim, kernel_size=2).eval()
    x = positive(dim, dtype=torch.float32)
    with torch.no_grad():
        ref = first(pool(x))
        y = first(copy.deepcopy(pool).to(dtype)(x.to(dtype)))
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), ref, rtol=4e-2, atol=4e-2)


def test_state_dict_round_trip(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim)
    clone = copy.deepcopy(pool)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(0.5)
    clone.load_state_dict(pool.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(first(clone(x)), first(pool(x)))


def test_global_equals_window_covering_input(case):
    name, dim = case
    if not accepts(name, dim, "output_size"):
        pytest.skip(f"{name} takes no output_size")
    skip_if_opted_out(name, dim, "global")
    x = positive(dim, size=5)
    g = first(make(name, dim, output_size=1).double().eval()(x))
    loc = first(make(name, dim, kernel_size=5).double().eval()(x))
    assert tuple(g.shape[2:]) == (1,) * dim
    torch.testing.assert_close(g, loc)


def test_adaptive_output_size(case):
    name, dim = case
    if not accepts(name, dim, "output_size"):
        pytest.skip(f"{name} takes no output_size")
    x = positive(dim, size=7)
    y = first(make(name, dim, output_size=3).double().eval()(x))
    assert tuple(y.shape[2:]) == (3,) * dim and torch.isfinite(y).all()


def test_repr_names_configuration(case):
    name, dim = case
    text = repr(make(name, dim, kernel_size=2))
    assert type(make(name, dim, kernel_size=2)).__name__ in text


# ---------------------------------------------------------------- bad input


def test_wrong_rank_is_refused(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double()
    for bad_dim in {1, 2, 3} - {dim}:
        if bad_dim + 2 == dim + 1 and getattr(type(pool), "_unbatched", False):
            continue  # that rank is torch's unbatched form, which the namesakes take
        with pytest.raises(ValueError, match="input"):
            pool(positive(bad_dim))
    unbatched = torch.rand((C,) + (6,) * dim, dtype=torch.float64, device=DEV)
    if getattr(type(pool), "_unbatched", False):  # torch namesakes take torch's unbatched form
        assert first(pool(unbatched)).shape[0] == C
    else:
        with pytest.raises(ValueError, match="input"):
            pool(unbatched)


def test_wrong_dtype_is_refused(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2)
    with pytest.raises(TypeError, match="dtype"):
        pool(torch.ones((2, C) + (6,) * dim, dtype=torch.int64, device=DEV))
    with pytest.raises(TypeError, match="input"):
        pool([[1.0, 2.0]])


@pytest.mark.parametrize("bad", [{"kernel_size": 0}, {"kernel_size": -2}, {"kernel_size": 2, "stride": 0},
                                 {"kernel_size": (2, 2, 2, 2)}])
def test_bad_sizes_are_refused(case, bad):
    name, dim = case
    with pytest.raises((ValueError, TypeError), match="kernel_size|stride"):
        make(name, dim, **bad)(positive(dim))


def test_kernel_larger_than_input_is_refused(case):
    name, dim = case
    skip_if_opted_out(name, dim, "kernel_larger")
    with pytest.raises(ValueError, match="kernel_size|larger"):
        make(name, dim, kernel_size=9).double()(positive(dim, size=4))


def test_unknown_padding_mode_is_refused(case):
    name, dim = case
    if not accepts(name, dim, "padding_mode"):
        pytest.skip(f"{name} takes no padding_mode")
    with pytest.raises(ValueError, match="padding_mode"):
        make(name, dim, kernel_size=2, padding_mode="mirror")


def test_unknown_spec_parameter_is_refused(case):
    name, dim = case
    with pytest.raises(ValueError, match="accepted"):
        poolkit.create_pool(f"{name}:no_such_param=1", dim=dim, kernel_size=2, channels=C)


# ---------------------------------------------------------------- compile and TorchScript


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", DIMS)
def test_compiled_equals_eager(name, dim):
    skip_if_opted_out(name, dim, "compile")
    torch._dynamo.reset()
    pool = make(name, dim, kernel_size=2).eval()
    x = positive(dim, dtype=torch.float32)
    compiled = torch.compile(pool, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(first(compiled(x)), first(pool(x)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", DIMS)
def test_trace_equals_eager(name, dim):
    """TorchScript by tracing (eval mode): every pool's traced graph gives the eager output."""
    skip_if_opted_out(name, dim, "trace")
    pool = make(name, dim, kernel_size=2).eval()
    x = positive(dim, dtype=torch.float32)
    with torch.no_grad():
        traced = torch.jit.trace(_First(pool), (x,), check_trace=False)
        torch.testing.assert_close(traced(x), first(pool(x)))


class _First(torch.nn.Module):
    """The pool's main output (tracing a module keeps its parameters as parameters)."""

    def __init__(self, pool: torch.nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return first(self.pool(x))

"""One conformance suite for every registered pool, present and future, in 1-D, 2-D and 3-D.

A pool may opt out of a check only by naming it in its class's
``conformance_skip = {"check": "reason"}``; the reason is shown as the skip message.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch

import poolkit
from poolkit.registry import get_pool_class

C = 4
NAMES = poolkit.list_pools()
DIMS = (1, 2, 3)
CASES = [(n, d) for n in NAMES for d in DIMS]


def _ids(case):
    return f"{case[0]}-{case[1]}d"


def positive(dim: int, size: int = 6, dtype=torch.float64, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """Strictly positive, distinct values: fair to every statistic (gem, lp, mle, ...)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, C) + (size,) * dim, generator=g, dtype=dtype) + 0.1


def make(name: str, dim: int, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return poolkit.create_pool(name, dim=dim, channels=C, **kw)


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


def test_gradcheck_float64(case):
    name, dim = case
    skip_if_opted_out(name, dim, "gradcheck")
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim, size=4, batch=1).requires_grad_(True)
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


def test_module_equals_function(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2).double().eval()
    x = positive(dim)
    fn = type(pool).fn
    torch.testing.assert_close(first(pool(x)), first(fn(x, **pool.fn_kwargs())))


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
        with pytest.raises(ValueError, match="input"):
            pool(positive(bad_dim))
    with pytest.raises(ValueError, match="input"):
        pool(torch.rand((C,) + (6,) * dim, dtype=torch.float64))  # unbatched


def test_wrong_dtype_is_refused(case):
    name, dim = case
    pool = make(name, dim, kernel_size=2)
    with pytest.raises(TypeError, match="dtype"):
        pool(torch.ones((2, C) + (6,) * dim, dtype=torch.int64))
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
def test_compiled_equals_eager(name):
    dim = 2
    skip_if_opted_out(name, dim, "compile")
    torch._dynamo.reset()
    pool = make(name, dim, kernel_size=2).eval()
    x = positive(dim, dtype=torch.float32)
    compiled = torch.compile(pool, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(first(compiled(x)), first(pool(x)))


@pytest.mark.parametrize("name", NAMES)
def test_trace_equals_eager(name):
    """TorchScript by tracing (eval mode): every pool's traced graph gives the eager output."""
    dim = 2
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

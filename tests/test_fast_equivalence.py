"""Fast kernels on against off, for every registered pool: the same values (float32/float64/bfloat16 to a
few ulp), the same strides, the same gradients (input and parameters).

The grid: geometries (non-overlapping, overlapping and padded windows, ceil_mode, dilation, uneven adaptive
windows, the global form) x dtypes (float32, float64, bfloat16) x layouts (contiguous, channels-last,
non-contiguous view) x modes (grad, no_grad, inference_mode), in 1-D, 2-D and 3-D. Each (pool, dim) test
runs a seeded sample of the grid (``POOLKIT_EQUIV_SAMPLES`` cases, default 14) plus the cases the fast
kernels are written for (kernel 2, float32, contiguous and channels-last, small and mid-sized maps), and a
few spec variants reach the kernels that serve other parameters; one test checks that the grid runs
every registered kernel. Random pools run in eval and,
reseeded before each call, in training. ``pytest --device cuda`` runs it on a GPU.
"""

from __future__ import annotations

import inspect
import itertools
import os
import random

import pytest
import torch

import poolkit
from poolkit.registry import get_pool_class

C = 4
SIZES = {1: (13,), 2: (9, 8), 3: (7, 6, 5)}
LARGE = {1: (41,), 2: (32, 30), 3: (28, 28, 29)}  # some kernels serve mid-sized maps only
POSITIVE = {"gem", "mle", "adaptive_mle", "stochastic"}  # positive-domain statistics
RANDOM = {"stochastic", "fractional_max"}
SAMPLES = int(os.environ.get("POOLKIT_EQUIV_SAMPLES", "14"))
GEOMETRIES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 1, "padding": 1},
    {"kernel_size": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 1, "dilation": 2},
    {"kernel_size": 3},
    {"output_size": 3},
    {"output_size": 1},
]
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
LAYOUTS = ("contiguous", "channels_last", "view")
MODES = ("grad", "no_grad", "inference_mode")
# spec variants whose parameters reach other kernels (odd zero-padded blurs, subsampling)
VARIANTS = ["blurpool:filt=3,padding_mode=zeros", "blurpool:filt=1", "maxblur:filt=3,blur_padding_mode=zeros",
            "aps:filt=3", "lse:beta=8", "mixed:alpha=0.3"]
CASES = [(n, d) for n in poolkit.list_pools() + VARIANTS for d in (1, 2, 3)]


def _accepts(spec: str, dim: int, kw: dict) -> bool:
    params = inspect.signature(get_pool_class(spec.partition(":")[0], dim)).parameters
    return all(k in params for k in kw)


def _grid(spec: str, dim: int) -> list[tuple[dict, torch.dtype, str, str, str, str]]:
    """(geometry, dtype, layout, mode, train/eval, small/large) cases for one pool spec and dim."""
    name = spec.partition(":")[0]
    geoms = [g for g in GEOMETRIES if _accepts(name, dim, g)]
    if name == "fractional_max":  # its windows: kernel and output size, no stride/padding
        geoms = [{"kernel_size": 2}, {"kernel_size": 2, "output_size": 3}, {"output_size": 1}]
    trainings = ("eval", "train") if name in RANDOM else ("eval",)
    full = list(itertools.product(range(len(geoms)), DTYPES, LAYOUTS, MODES, trainings, ("small", "large")))
    rng = random.Random(f"{spec}-{dim}")
    picked = rng.sample(full, min(SAMPLES, len(full)))
    must = [(0, torch.float32, lay, mode, "eval", size) for lay in ("contiguous", "channels_last")
            for mode in ("grad", "no_grad") for size in ("small", "large")]
    return [(geoms[g], dt, lay, mode, tr, size) for g, dt, lay, mode, tr, size in dict.fromkeys(must + picked)]


def _input(name: str, dim: int, layout: str, dtype: torch.dtype, device: torch.device,
           size: str = "small") -> torch.Tensor:
    name = name.partition(":")[0]
    g = torch.Generator().manual_seed(0)
    shape = (2, C, *(SIZES if size == "small" else LARGE)[dim])
    if layout == "channels_last":
        x = torch.randn((shape[0], *shape[2:], C), generator=g, dtype=torch.float64).movedim(-1, 1)
    elif layout == "view":
        x = torch.randn((shape[0], 2 * C, *shape[2:]), generator=g, dtype=torch.float64)[:, ::2]
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64)
    if name in POSITIVE:
        x.abs_().add_(0.1)
    # the dtype and device conversion keeps the layout (preserve_format)
    return x.to(device=device, dtype=dtype)


def _tensors(y) -> list[torch.Tensor]:
    return [t for t in (y if isinstance(y, tuple) else (y,)) if isinstance(t, torch.Tensor)]


def _run(pool: torch.nn.Module, x: torch.Tensor, mode: str, cot_seed: int = 3):
    """(outputs, input grad, parameter grads) of one call in ``mode``."""
    torch.manual_seed(1234)  # random pools draw the same windows/cells on both sides
    if mode == "no_grad":
        with torch.no_grad():
            return _tensors(pool(x)), None, []
    if mode == "inference_mode":
        with torch.inference_mode():
            return [t.clone() for t in _tensors(pool(x))], None, []
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    pool.zero_grad(set_to_none=True)
    outs = _tensors(pool(leaf))
    y = outs[0]
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(cot_seed), dtype=torch.float64)
    y.backward(w.to(device=y.device, dtype=y.dtype))
    pgrads = [p.grad for p in pool.parameters() if p.requires_grad]
    return [o.detach() for o in outs], leaf.grad, pgrads


def _same(a: torch.Tensor | None, b: torch.Tensor | None, what: str) -> None:
    if a is None or b is None:
        assert a is None and b is None, f"{what}: one side has no gradient"
        return
    assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
    assert a.stride() == b.stride(), f"{what}: strides fast {a.stride()} vs reference {b.stride()}"
    if not a.is_floating_point():
        assert torch.equal(a, b), f"{what}: indices differ"
        return
    eps = torch.finfo(a.dtype).eps
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    torch.testing.assert_close(a, b, rtol=8 * eps, atol=8 * eps * scale, equal_nan=True, msg=what)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}d")
def test_fast_on_equals_fast_off(case, device):
    name, dim = case
    for geom, dtype, layout, mode, training, size in _grid(name, dim):
        what = f"{name} {dim}-d {geom} {dtype} {layout} {mode} {training} {size}"
        torch.manual_seed(0)
        pool = poolkit.create_pool(name, dim=dim, channels=C, **geom).to(device=device, dtype=dtype)
        pool.train(training == "train")
        x = _input(name, dim, layout, dtype, device, size)
        with poolkit.fast_paths(False):
            try:
                ref = _run(pool, x, mode)
            except (TypeError, ValueError, NotImplementedError, RuntimeError) as err:
                with poolkit.fast_paths(True), pytest.raises(type(err)):
                    _run(pool, x, mode)
                continue
        with poolkit.fast_paths(True):
            got = _run(pool, x, mode)
        assert len(got[0]) == len(ref[0]), what
        for i, (a, b) in enumerate(zip(got[0], ref[0])):
            _same(a, b, f"{what}: output {i}")
        _same(got[1], ref[1], f"{what}: input gradient")
        for i, (a, b) in enumerate(zip(got[2], ref[2], strict=True)):
            _same(a, b, f"{what}: parameter gradient {i}")


def test_the_switch_reaches_the_kernels():
    """The switch is what the test above flips: kernels are registered and off means off."""
    from poolkit.functional import _fast

    assert _fast.kernels(), "no fast kernel registered: the equivalence test would compare a path with itself"
    with poolkit.fast_paths(False):
        assert not poolkit.fast_paths_enabled()
        x = torch.randn(2, 3, 8, 8)
        assert all(_fast.dispatch(k.stat, x) is None for k in _fast.kernels())
    assert poolkit.fast_paths_enabled()


def test_every_fast_kernel_runs_somewhere_in_the_grid(monkeypatch):
    """The grid reaches every registered kernel (a kernel the grid never runs is not compared).

    Only the choice is probed: the dispatch point records the kernel it picks and stops the call there
    (the kernel's output is compared by the test above); once every kernel is reached the rest of the
    grid is skipped.
    """
    import sys

    from poolkit.functional import _fast

    class Reached(Exception):
        pass

    hits: set[tuple[str, str]] = set()
    for stat, ks in list(_fast._KERNELS.items()):
        wrapped = []
        for k in ks:
            def run(*a, _k=k, **kw):
                hits.add((_k.stat, _k.name))
                raise Reached
            wrapped.append(_fast.Kernel(k.stat, k.name, k.when, k.applies, run))
        monkeypatch.setitem(_fast._KERNELS, stat, wrapped)
    real = _fast.dispatch

    def probe(*a, **kw):
        real(*a, **kw)
        raise Reached  # no kernel applied: the reference formula would run

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("poolkit") and getattr(mod, "dispatch", None) is real:
            monkeypatch.setattr(mod, "dispatch", probe)
    every = {(k.stat, k.name) for k in _fast.kernels()}
    cpu = torch.device("cpu")
    for name, dim in CASES:
        for geom, dtype, layout, mode, training, size in _grid(name, dim):
            if every <= hits:
                break
            torch.manual_seed(0)
            try:  # some pools run a statistic when built
                pool = poolkit.create_pool(name, dim=dim, channels=C, **geom).to(dtype=dtype)
                pool.train(training == "train")
                _run(pool, _input(name, dim, layout, dtype, cpu, size), mode)
            except (Reached, TypeError, ValueError, NotImplementedError, RuntimeError):
                pass
    missed = sorted(every - hits)
    assert not missed, f"kernels the equivalence grid never runs: {missed}"

"""Anti-aliased pooling: binomial filters, blur, blurpool, maxblur against the reference packages."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import poolkit
import poolkit.functional as PF

antialiased_cnns = pytest.importorskip("antialiased_cnns")
kornia = pytest.importorskip("kornia")

PAD_TYPES = {"reflect": "reflect", "replicate": "replicate", "zeros": "zero"}


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_binomial_filter_rows_of_pascals_triangle():
    for n in range(1, 9):
        f = PF.binomial_filter(n, dtype=torch.float64)
        expect = torch.tensor([math.comb(n - 1, k) for k in range(n)], dtype=torch.float64)
        torch.testing.assert_close(f, expect / expect.sum())
    f2 = PF.binomial_filter(3, 2)
    assert f2.shape == (3, 3) and f2[1, 1] == 0.25 and math.isclose(f2.sum().item(), 1.0)


@pytest.mark.parametrize("filt", range(1, 8))
@pytest.mark.parametrize("mode", list(PAD_TYPES))
@pytest.mark.parametrize("stride", [2, 3])
def test_blurpool_2d_equals_antialiased_cnns(filt, mode, stride):
    x = rand(2, 3, 13, 10, dtype=torch.float32)
    ref = antialiased_cnns.BlurPool(3, pad_type=PAD_TYPES[mode], filt_size=filt, stride=stride)(x)
    y = PF.blur_pool(x, stride, filt=filt, padding_mode=mode)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    mod = poolkit.create_pool(f"blurpool:filt={filt},padding_mode={mode}", dim=2, kernel_size=stride)
    torch.testing.assert_close(mod(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filt", range(1, 8))
@pytest.mark.parametrize("mode", list(PAD_TYPES))
def test_blurpool_1d_equals_antialiased_cnns(filt, mode):
    x = rand(2, 3, 17, dtype=torch.float32)
    ref = antialiased_cnns.blurpool.BlurPool1D(3, pad_type=PAD_TYPES[mode], filt_size=filt, stride=2)(x)
    torch.testing.assert_close(PF.blur_pool(x, 2, filt=filt, padding_mode=mode), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filt", [2, 3, 4, 5])
@pytest.mark.parametrize("max_size", [2, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_maxblur_equals_kornia(filt, max_size, stride):
    x = rand(2, 3, 12, 11, dtype=torch.float32)
    ref = kornia.filters.max_blur_pool2d(x, filt, stride=stride, max_pool_size=max_size)
    y = PF.max_blur_pool(x, max_size, stride, filt=filt, blur_padding_mode="zeros")
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_filter_size_1_is_strided_subsampling(dim, stride):
    x = rand(2, 3, *(7,) * dim)
    y = PF.blur_pool(x, stride, filt=1)
    assert torch.equal(y, x[(slice(None), slice(None)) + (slice(None, None, stride),) * dim])


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("mode", ["reflect", "zeros", "circular", "replicate"])
def test_filter_size_2_is_average_pooling(dim, mode):
    x = rand(2, 3, *(8,) * dim)
    torch.testing.assert_close(PF.blur_pool(x, 2, filt=2, padding_mode=mode), PF.avg_pool(x, 2))


@pytest.mark.parametrize("filt", [3, 4, 5])
def test_3d_blur_is_the_1d_blur_along_each_axis(filt):
    x = rand(1, 2, 6, 7, 8)
    y = x
    for ax in (2, 3, 4):  # 1-D blur along one axis at a time
        moved = y.movedim(ax, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        out = PF.blur(flat, filt, padding_mode="reflect").reshape(moved.shape)
        y = out.movedim(-1, ax)
    torch.testing.assert_close(PF.blur(x, filt, padding_mode="reflect"), y)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_circular_blur_commutes_with_circular_shifts(dim):
    x = rand(1, 2, *(6,) * dim)
    dims = tuple(range(2, 2 + dim))
    shift = (1, 2, 3)[:dim]
    y = PF.blur(x, 4, padding_mode="circular")
    torch.testing.assert_close(PF.blur(x.roll(shift, dims), 4, padding_mode="circular"), y.roll(shift, dims))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 3, 0), (3, 3, "same")])
def test_maxblur_keeps_max_pool_output_size(dim, k, s, p):
    x = rand(1, 2, *(9,) * dim)
    y = PF.max_blur_pool(x, k, s, p)
    ref = PF.max_pool(x, k, s, p)
    assert y.shape == ref.shape


def test_maxblur_is_max_then_blurpool():
    x = rand(2, 3, 10, 9)
    y = PF.max_blur_pool(x, 3, 2, 1, filt=5, blur_padding_mode="replicate")
    ref = PF.blur_pool(PF.max_pool(x, 3, 1, 1), 2, filt=5, padding_mode="replicate")
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-14)
    # the gradient goes where max pooling sends it
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
    PF.max_blur_pool(a, 3, 2, 1, filt=5).backward(g)
    PF.blur_pool(PF.max_pool(b, 3, 1, 1), 2, filt=5).backward(g)
    torch.testing.assert_close(a.grad, b.grad)


def test_blur_keeps_the_input_layout():
    x = rand(2, 4, 9, 9, dtype=torch.float32)
    assert PF.blur_pool(x, 2).is_contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    assert PF.blur_pool(cl, 2).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(PF.max_blur_pool(cl, 3, 2, 1), PF.max_blur_pool(x, 3, 2, 1))


def test_modules_repr_and_registry():
    m = poolkit.create_pool("maxblur:filt=5", dim=2, kernel_size=3, stride=2, padding=1)
    assert type(m).__name__ == "MaxBlurPool2d" and "filt=5" in repr(m)
    assert m(rand(1, 2, 8, 8, dtype=torch.float32)).shape == (1, 2, 4, 4)
    assert type(poolkit.create_pool("blurpool", dim=3)).__name__ == "BlurPool3d"


def test_bad_arguments_are_refused():
    x = rand(1, 2, 8)
    with pytest.raises(ValueError, match="filt"):
        PF.blur_pool(x, 2, filt=0)
    with pytest.raises(ValueError, match="filt"):
        poolkit.create_pool("blurpool:filt=-1", dim=1)
    with pytest.raises(ValueError, match="padding_mode"):
        PF.blur_pool(x, 2, padding_mode="mirror")
    with pytest.raises(ValueError, match="reflect"):
        PF.blur_pool(rand(1, 2, 3), 2, filt=7)
    with pytest.raises(ValueError, match="blur_padding_mode"):
        poolkit.create_pool("maxblur:blur_padding_mode=mirror", dim=2)
    with pytest.raises(ValueError, match="stride"):
        PF.blur_pool(x, 2, stride=(2, 2))


def test_gradcheck_maxblur_and_blur_3d():
    x = rand(1, 1, 5, 4, 5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: PF.blur_pool(t, 2, filt=3, padding_mode="replicate"), (x,))
    y = rand(1, 2, 7, 6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: PF.max_blur_pool(t, 2, 2, filt=4), (y,))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_circular_blur_wider_than_the_input_wraps_around(dim, size):
    """Circular padding of any width is a circular convolution: compare with the DFT-free sum over offsets."""
    filt = 6
    x = torch.rand((2, 3) + (size,) * dim, dtype=torch.float64)
    y = PF.blur(x, filt, padding_mode="circular")
    w = torch.tensor([math.comb(filt - 1, i) for i in range(filt)], dtype=torch.float64) / 2 ** (filt - 1)
    ref = x
    for axis in range(2, 2 + dim):
        ref = sum(w[j] * torch.roll(ref, (filt - 1) // 2 - j, dims=axis) for j in range(filt))
    torch.testing.assert_close(y, ref)
    shifted = PF.blur(torch.roll(x, 1, dims=2), filt, padding_mode="circular")
    torch.testing.assert_close(shifted, torch.roll(y, 1, dims=2))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1)])
def test_maxblur_with_ties_equals_max_then_blur(layout, k, s, p):
    """Integer input is full of tied maxima: output and gradient equal torch's max pooling followed by blurpool."""
    torch.manual_seed(0)
    x = torch.randint(0, 4, (3, 5, 12, 11)).float()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.rand(3, 5, *PF.max_blur_pool(x, k, s, p, filt=4).shape[2:])
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ya = PF.max_blur_pool(a, k, s, p, filt=4)
    yb = PF.blur_pool(F.max_pool2d(b, k, 1, p), s, filt=4)
    torch.testing.assert_close(ya, yb)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(a.grad, b.grad)


# ---------------------------------------------------------------- fast kernels on against off; filters as buffers

import contextlib  # noqa: E402

from poolkit import nn as pnn  # noqa: E402

_CL = {2: torch.channels_last, 3: torch.channels_last_3d}
AA_CASES = [
    ("blur", lambda t: PF.blur(t, 3, 2, "zeros")),
    ("blur", lambda t: PF.blur(t, 4, 2, "reflect")),
    ("blur", lambda t: PF.blur(t, 5, 1, "circular")),
    ("blur", lambda t: PF.blur(t, 1, 2)),
    ("blurpool", lambda t: PF.blur_pool(t, 2, filt=2, padding_mode="replicate")),
    ("maxblur", lambda t: PF.max_blur_pool(t, 2, 2, filt=3, blur_padding_mode="zeros")),
    ("maxblur", lambda t: PF.max_blur_pool(t, 3, 2, 1, filt=4)),
    ("maxblur", lambda t: PF.max_blur_pool(t, 2, 1, 0, 2, filt=3, blur_padding_mode="circular")),
    ("maxblur", lambda t: PF.max_blur_pool(t, 3, 2, "same", filt=4, blur_padding_mode="replicate")),
]


def _aa_input(dim: int, layout: str, size: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(dim + size)
    x = (torch.randint(-3, 4, (2, 3) + (2 * size,) * dim, generator=g) / 2).to(dtype)  # ties for the max
    x = x[(slice(None), slice(None)) + (slice(0, size),) * dim]
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        return x.movedim(1, -1).contiguous().movedim(-1, 1) if dim == 1 else x.contiguous(memory_format=_CL[dim])
    return x


def _aa_run(fn, x: torch.Tensor, mode: str):
    leaf = x.detach().requires_grad_(mode == "grad")
    ctx = {"grad": contextlib.nullcontext(), "no_grad": torch.no_grad(), "inference_mode": torch.inference_mode()}
    with ctx[mode]:
        y = fn(leaf)
    if mode != "grad":
        return y, None
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype))
    return y.detach(), leaf.grad


@pytest.mark.parametrize("case", range(len(AA_CASES)), ids=lambda i: f"{AA_CASES[i][0]}-{i}")
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "view"])
@pytest.mark.parametrize("size", [7, 30])
def test_antialias_fast_kernels_on_equal_off(case, dim, layout, size):
    """Band-matrix blur, conv padding, fused and running-max maxblur: the formula's values (float32 to a few
    ulp), gradients and strides, with and without autograd."""
    if dim == 3 and size == 30:
        size = 12
    fn = AA_CASES[case][1]
    x = _aa_input(dim, layout, size)
    for mode in ("grad", "no_grad", "inference_mode"):
        on = _aa_run(fn, x, mode)
        with poolkit.fast_paths(False):
            off = _aa_run(fn, x, mode)
        for a, b in zip(on, off):
            if b is None:
                continue
            assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), (a.stride(), b.stride())
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_blur_is_the_float32_blur_rounded_once(dtype):
    x = torch.rand(2, 3, 40, 40).to(dtype)
    for fast in (True, False):
        with poolkit.fast_paths(fast):
            y = PF.blur_pool(x, 2, filt=4)
        assert y.dtype == dtype
        assert torch.equal(y, PF.blur_pool(x.float(), 2, filt=4).to(dtype))


@pytest.mark.parametrize("make", [lambda: pnn.BlurPool2d(2, filt=4), lambda: pnn.MaxBlurPool2d(3, 2, 1, filt=5),
                                  lambda: pnn.ApsPool2d(2, filt=3)], ids=["blurpool", "maxblur", "aps"])
def test_filters_are_non_persistent_buffers_never_rebuilt(make, monkeypatch):
    import poolkit.functional.antialias as aa

    m = make()
    filt = m.filt
    assert torch.equal(m.blur_filter, PF.binomial_filter(filt, 2))
    assert "blur_filter" in dict(m.named_buffers()) and "blur_filter" not in m.state_dict()
    assert m.double().blur_filter.dtype == torch.float64
    assert m.half().blur_filter.dtype == torch.float16
    m.float()
    x = torch.rand(2, 3, 16, 16)
    expect = m(x)

    def refuse(*a, **k):
        raise AssertionError("forward rebuilt the filter")

    monkeypatch.setattr(aa, "binomial_filter", refuse)
    for fast in (True, False):
        with poolkit.fast_paths(fast):
            torch.testing.assert_close(m(x), expect)
    m.load_state_dict(make().state_dict())  # no filter key expected


def test_a_passed_filter_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="weight"):
        PF.blur(torch.rand(1, 2, 8, 8), 3, weight=PF.binomial_filter(3, 1))


def test_the_antialias_kernels_serve_their_cases(monkeypatch):
    import dataclasses

    from poolkit.functional import _fast

    ran: list[str] = []
    for stat in ("blur", "maxblur"):
        wrapped = []
        for k in _fast.kernels(stat):
            def run(*a, _k=k, **kw):
                ran.append(f"{_k.stat}/{_k.name}")
                return _k.run(*a, **kw)
            wrapped.append(dataclasses.replace(k, run=run))
        monkeypatch.setitem(_fast._KERNELS, stat, wrapped)
    x = torch.rand(2, 3, 40, 40)
    PF.blur(x, 4, 2)
    PF.blur(x, 3, 1, "zeros")
    PF.blur(x, 1, 2)
    PF.max_blur_pool(x, 2, 2, filt=3)
    PF.max_blur_pool(torch.rand(1, 2, 200, 200), 2, 2, filt=3)  # past the fused pass's size
    # the running max's blur of a 199 x 199 map (reflect) is the formula's
    assert ran == ["blur/band", "blur/conv_padding", "blur/subsample", "maxblur/fused", "maxblur/running_max"]
    ran.clear()
    with poolkit.fast_paths(False):
        PF.blur(x, 4, 2)
        PF.max_blur_pool(x, 2, 2, filt=3)
    assert ran == []

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

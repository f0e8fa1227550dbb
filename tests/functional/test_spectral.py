"""DiffStride: spectral pooling with a learnable stride (functional and modules)."""

from __future__ import annotations

import math

import pytest
import torch

import poolkit
import poolkit.functional as PF
import poolkit.nn as pnn
from poolkit.functional.spectral import spectral_mask, spectral_output_size, stride_bounds


def ideal_lowpass_subsample(x: torch.Tensor, s: int) -> torch.Tensor:
    """Reference: per axis, an ideal low-pass at the new Nyquist frequency (weight 1/2 at it), then every s-th cell.

    Written on the full complex spectrum of the input, independently of the real-FFT crop under test.
    """
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        m = n // s
        f = torch.fft.fftfreq(n, d=1.0 / n, dtype=x.dtype).abs()  # |frequency| in bins
        h = torch.where(f < m / 2, 1.0, torch.where(f == m / 2, 0.5, 0.0)).to(x.dtype)
        shape = [1] * x.ndim
        shape[axis] = n
        low = torch.fft.ifft(torch.fft.fft(x, dim=axis) * h.reshape(shape), dim=axis).real
        x = low.index_select(axis, torch.arange(0, n, s))
    return x


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("s", [2, 4])
def test_fixed_stride_is_ideal_lowpass_and_subsample(dim, dtype, s):
    n = 16 if dim < 3 else 8
    x = torch.randn((2, 3) + (n,) * dim, dtype=dtype, generator=torch.Generator().manual_seed(dim))
    y = PF.diffstride_pool(x, float(s), smoothness=0.0)
    ref = ideal_lowpass_subsample(x, s)
    assert y.shape == ref.shape == (2, 3) + (n // s,) * dim and y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, ref, atol=tol, rtol=tol)


def test_band_limited_signal_is_resampled_exactly():
    # a cosine well below the new Nyquist frequency survives the pooling unchanged (sampled every s cells)
    n, s = 40, 2
    t = torch.arange(n, dtype=torch.float64)
    x = (torch.cos(2 * math.pi * 3 * t / n) + 0.5)[None, None]
    y = PF.diffstride_pool(x, float(s), smoothness=4.0)  # the ramp starts past frequency 10
    m = y.shape[-1]
    assert m == 28
    tt = torch.arange(m, dtype=torch.float64) * n / m
    torch.testing.assert_close(y[0, 0], torch.cos(2 * math.pi * 3 * tt / n) + 0.5)


def test_constant_keeps_its_value():
    x = torch.full((1, 2, 12, 20), 3.0, dtype=torch.float64)
    y = PF.diffstride_pool(x, (2.5, 3.5), smoothness=2.0)
    torch.testing.assert_close(y, torch.full((1, 2, 10, 10), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("smoothness", [0.0, 1.0, 4.0])
def test_output_size_follows_the_stride(smoothness):
    n = 64
    sizes = []
    for s in (1.5, 2.0, 3.0, 4.0, 8.0, 16.0):
        y = PF.diffstride_pool(torch.rand(1, 1, n), s, smoothness=smoothness)
        want = min(n, 2 * math.ceil(max(n / s, 2) / 2 + smoothness - 1e-9))
        assert y.shape[-1] == want == spectral_output_size(n, s, smoothness)
        sizes.append(y.shape[-1])
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    # a learned (tensor) stride sets the size the same way, per axis
    y = PF.diffstride_pool(torch.rand(1, 1, 32, 48), torch.tensor([4.0, 2.0]), smoothness=smoothness)
    assert tuple(y.shape[2:]) == (spectral_output_size(32, 4.0, smoothness), spectral_output_size(48, 2.0, smoothness))


def test_no_cropping_keeps_size_and_is_a_lowpass():
    x = torch.randn(2, 3, 32, dtype=torch.float64)
    y = PF.diffstride_pool(x, 4.0, smoothness=2.0, cropping=False)
    assert y.shape == x.shape
    spec = torch.fft.rfft(y, dim=-1).abs()
    assert spec[..., 7:].abs().max() < 1e-10  # t = 4, ramp to 6: nothing kept past frequency 6
    torch.testing.assert_close(spec[..., :5], torch.fft.rfft(x, dim=-1).abs()[..., :5])


def test_mask_gradcheck_float64():
    for n, R in ((16, 4.0), (40, 2.5), (9, 1.0)):
        s = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda v, n=n, R=R: spectral_mask(n, v, R), (s,))
        assert spectral_mask(n, s, R).requires_grad


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gradients_reach_the_stride(dim):
    n = 16 if dim < 3 else 10
    x = torch.randn((2, 2) + (n,) * dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = torch.randn_like(PF.diffstride_pool(x, 2.3, smoothness=3.0))
    s = torch.full((dim,), 2.3, dtype=torch.float64, requires_grad=True)
    # the output size is constant near s = 2.3, so the layer is differentiable there: check it numerically
    assert torch.autograd.gradcheck(lambda v: (PF.diffstride_pool(x, v, smoothness=3.0) * w).sum(), (s,))
    (g,) = torch.autograd.grad((PF.diffstride_pool(x, s, smoothness=3.0) * w).sum(), s)
    assert (g.abs() > 0).all()
    # and through the input too
    xx = x[:1, :1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: PF.diffstride_pool(t, s.detach(), smoothness=3.0), (xx,))


def test_module_learns_the_stride():
    # a learnable low-pass (no cropping) fitted to the output of a stride-3 one finds stride 3
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32)
    target = PF.diffstride_pool(x, 3.0, smoothness=2.0, cropping=False)
    shared = pnn.DiffStridePool1d(stride=2.0, smoothness=2.0, cropping=False)
    opt = torch.optim.Adam(shared.parameters(), lr=0.05)
    for _ in range(150):
        loss = (shared(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(shared.strides()[0] - 3.0) < 0.15, shared.strides()


def test_bounds_hold_and_pass_gradient():
    with pytest.raises(ValueError, match="stride"):
        PF.diffstride_pool(torch.rand(1, 1, 16), 0.5)
    with pytest.raises(ValueError, match="stride"):
        PF.diffstride_pool(torch.rand(1, 1, 16), torch.tensor([math.nan]))
    # a learned stride an optimizer pushed below 1 is held at the bound, its gradient passes
    s = torch.tensor([0.5], requires_grad=True)
    y = PF.diffstride_pool(torch.rand(1, 1, 16), s)
    assert y.shape[-1] == spectral_output_size(16, 16 / 12)
    y.sum().backward()
    assert s.grad is not None
    s = torch.tensor([1.01], requires_grad=True)
    y = PF.diffstride_pool(torch.rand(1, 1, 16, dtype=torch.float32), s, smoothness=4.0)
    lo, _ = stride_bounds(16, 4.0)
    assert lo == pytest.approx(16 / 12)
    assert y.shape[-1] == spectral_output_size(16, lo, 4.0)
    y.square().sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    y = PF.diffstride_pool(torch.rand(1, 1, 64), 10.0, upper=4.0)
    assert y.shape[-1] == spectral_output_size(64, 4.0)


def test_module_options_and_registry():
    p = poolkit.create_pool("diffstride:smoothness=1,shared=true", dim=2, kernel_size=3, channels=4)
    assert isinstance(p, pnn.DiffStridePool2d) and p.stride.shape == (1,) and p.strides() == [3.0, 3.0]
    assert poolkit.create_pool("diffstride", dim=3, kernel_size=(2, 3, 4)).strides() == [2.0, 3.0, 4.0]
    fixed = pnn.DiffStridePool1d(2.0, learnable=False)
    assert not list(fixed.parameters()) and "stride" in dict(fixed.named_buffers())
    assert "DiffStridePool3d" in repr(pnn.DiffStridePool3d(stride=2.0))
    with pytest.raises(ValueError, match="shared"):
        pnn.DiffStridePool2d(stride=(2.0, 3.0), shared=True)
    with pytest.raises(ValueError, match="smoothness"):
        pnn.DiffStridePool1d(smoothness=-1)
    with pytest.raises(ValueError, match="lower|upper"):
        pnn.DiffStridePool1d(stride=5.0, upper=4.0)
    with pytest.raises(TypeError, match="stride"):
        pnn.DiffStridePool1d(stride="2")


def test_channels_last_and_low_precision():
    x = torch.rand(2, 3, 16, 16)
    ref = PF.diffstride_pool(x, 2.0)
    y = PF.diffstride_pool(x.contiguous(memory_format=torch.channels_last), 2.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref)
    yb = PF.diffstride_pool(x.bfloat16(), 2.0)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), ref, atol=3e-2, rtol=3e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    s = torch.tensor([2.2, 3.1], dtype=torch.float64, requires_grad=True)
    sc = s.detach().cuda().requires_grad_(True)
    y = PF.diffstride_pool(x, s)
    yc = PF.diffstride_pool(x.cuda(), sc)
    torch.testing.assert_close(yc.cpu(), y)
    y.sum().backward()
    yc.sum().backward()
    torch.testing.assert_close(sc.grad.cpu(), s.grad)

"""Shift operators: modes, shorthand, ordering, and the exactness of Fourier shifts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from poolkit.measure import fourier_shift, parse_shifts, shift, shift_per_sample

DIMS = (1, 2, 3)


def rand(d: int, n: int = 7, batch: int = 2, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 3) + (n,) * d, generator=g, dtype=dtype)


@pytest.mark.parametrize("d", DIMS)
def test_circular_integer_is_roll_and_shift_major(d):
    x = rand(d)
    shifts = [tuple(range(1, d + 1)), tuple(-k for k in range(d)), (9,) * d]
    y = shift(x, shifts)
    assert y.shape == (3 * x.shape[0], *x.shape[1:])
    axes = list(range(2, 2 + d))
    for i, s in enumerate(shifts):
        assert torch.equal(y[i * 2:(i + 1) * 2], torch.roll(x, s, axes))


def test_integer_shorthand_and_single_number():
    x = rand(2, n=6)
    assert parse_shifts([1, 2], 2) == [(1, 1), (2, 2)]
    assert parse_shifts(3, 1) == [(3,)]
    assert parse_shifts(torch.tensor([[1, 0], [0, 2]]), 2) == [(1, 0), (0, 2)]
    assert parse_shifts([2.0, 0.5], 1) == [(2,), (0.5,)]
    assert isinstance(parse_shifts([2.0], 1)[0][0], int)
    assert torch.equal(shift(x, [1, 2]), shift(x, [(1, 1), (2, 2)]))
    assert torch.equal(shift(x, 1), shift(x, [(1, 1)]))


def test_dims_selects_axes():
    x = rand(2, n=6)
    assert torch.equal(shift(x, [(2,)], dims=1), torch.roll(x, 2, 3))
    assert torch.equal(shift(x, [(2,)], dims=[-2]), torch.roll(x, 2, 2))
    assert torch.equal(shift(x, [(1, 3)], dims=(1, 0)), torch.roll(x, (3, 1), (2, 3)))


@pytest.mark.parametrize("d", DIMS)
def test_zeros_mode_fills_with_zeros(d):
    x = rand(d, n=5)
    y = shift(x, [(2,) + (0,) * (d - 1), (-1,) * d, (5,) * d], mode="zeros")
    ref0 = torch.zeros_like(x)
    ref0[:, :, 2:] = x[:, :, :3]
    assert torch.equal(y[:2], ref0)
    ref1 = torch.zeros_like(x)
    ref1[(slice(None), slice(None), *(slice(0, 4),) * d)] = x[(slice(None), slice(None), *(slice(1, 5),) * d)]
    assert torch.equal(y[2:4], ref1)
    assert torch.equal(y[4:], torch.zeros_like(x))


@pytest.mark.parametrize("s", [1, 3, -2, -4])
def test_reflect_mode_matches_reflect_padding(s):
    x = rand(1, n=6)
    y = shift(x, [s], mode="reflect")
    pad = (s, 0) if s > 0 else (0, -s)
    full = F.pad(x, pad, mode="reflect")
    ref = full[..., :6] if s > 0 else full[..., -6:]
    assert torch.equal(y, ref)
    with pytest.raises(ValueError, match="reflect"):
        shift(x, [6], mode="reflect")


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_subpixel_linear_interpolates_neighbouring_integer_shifts(mode):
    x = rand(2, n=8)
    y = shift(x, [(1.25, -0.5)], mode=mode)
    a = shift(x, [(1, -1), (1, 0), (2, -1), (2, 0)], mode=mode).split(2)
    ref = 0.75 * (0.5 * a[0] + 0.5 * a[1]) + 0.25 * (0.5 * a[2] + 0.5 * a[3])
    torch.testing.assert_close(y, ref)


def test_crop_mode_moves_a_window_inside_the_input():
    x = torch.arange(10.0, dtype=torch.float64).view(1, 1, 10)
    y = shift(x, [(0,), (2,), (-1,)], mode="crop")
    # window size 10 - (2 - -1) = 7, origin 2: shift s reads x[2 - s : 9 - s]
    assert y.shape == (3, 1, 7)
    assert y[0, 0].tolist() == list(range(2, 9))
    assert y[1, 0].tolist() == list(range(0, 7))
    assert y[2, 0].tolist() == list(range(3, 10))
    # a content shift of +2 seen through the window: y_s[i] == y_0[i - s]
    assert torch.equal(y[1, 0, 2:], y[0, 0, :5])
    z = shift(x, [(0,), (1,)], mode="crop", crop_size=4)  # centred in the slack
    assert z[0, 0].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert z[1, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    half = shift(x, [(0.5,)], mode="crop", crop_size=4)
    assert half[0, 0].tolist() == [2.5, 3.5, 4.5, 5.5]
    with pytest.raises(ValueError, match="crop"):
        shift(x, [(4,)], mode="crop", crop_size=8)


def test_crop_mode_in_3d_along_some_axes():
    x = rand(3, n=6)
    y = shift(x, [(1, -1), (0, 0)], mode="crop", dims=(0, 2))
    # axis 0 sees shifts {1, 0}: window 5 at origin 1; axis 2 sees {-1, 0}: window 5 at origin 0
    assert y.shape == (4, 3, 5, 6, 5)
    assert torch.equal(y[:2], x[:, :, 0:5, :, 1:6])
    assert torch.equal(y[2:], x[:, :, 1:6, :, 0:5])


@pytest.mark.parametrize("d", DIMS)
def test_fourier_shift_by_integer_equals_roll(d):
    x = rand(d, n=6)
    shifts = [(1,) * d, tuple(range(-1, d - 1)), (7,) * d, (-3,) * d]
    y = fourier_shift(x, shifts)
    axes = list(range(2, 2 + d))
    for i, s in enumerate(shifts):
        torch.testing.assert_close(y[i * 2:(i + 1) * 2], torch.roll(x, s, axes), atol=1e-12, rtol=0)


def test_fourier_shift_float32_integer_equals_roll():
    x = rand(2, n=8, dtype=torch.float32)
    torch.testing.assert_close(fourier_shift(x, [(3, -2)]), torch.roll(x, (3, -2), (2, 3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("a,b", [(0.3, 0.45), (-1.7, 0.2), (2.5, 2.5)])
def test_fourier_shift_composes_odd_sizes(d, a, b):
    x = rand(d, n=7)
    sa = (a,) + (b,) * (d - 1)
    sb = (b,) + (a,) * (d - 1)
    two = fourier_shift(fourier_shift(x, [sa]), [sb])
    one = fourier_shift(x, [tuple(p + q for p, q in zip(sa, sb))])
    torch.testing.assert_close(two, one, atol=1e-12, rtol=0)


def band_limited(n: int, d: int) -> torch.Tensor:
    """Random signal with no Nyquist content (even n)."""
    x = rand(d, n=n)
    spec = torch.fft.fftn(x, dim=list(range(2, 2 + d)))
    for ax in range(2, 2 + d):
        spec.select(ax, n // 2).zero_()
    return torch.fft.ifftn(spec, dim=list(range(2, 2 + d))).real


@pytest.mark.parametrize("d", [1, 2])
def test_fourier_shift_composes_even_sizes_without_nyquist(d):
    x = band_limited(8, d)
    two = fourier_shift(fourier_shift(x, [(0.5,) * d]), [(0.25,) * d])
    torch.testing.assert_close(two, fourier_shift(x, [(0.75,) * d]), atol=1e-12, rtol=0)


def test_fourier_shift_scales_the_nyquist_term_by_cos():
    n = 8
    x = torch.cos(math.pi * torch.arange(n, dtype=torch.float64)).view(1, 1, n)  # pure Nyquist
    for s in (0.25, 0.5, 1.0, 1.5):
        torch.testing.assert_close(fourier_shift(x, [s]), math.cos(math.pi * s) * x, atol=1e-12, rtol=0)


def test_fourier_subpixel_shift_of_a_sampled_wave():
    i = torch.arange(16, dtype=torch.float64)
    x = torch.sin(2 * math.pi * 3 * i / 16).view(1, 1, 16)
    ref = torch.sin(2 * math.pi * 3 * (i - 0.3) / 16).view(1, 1, 16)
    torch.testing.assert_close(shift(x, [0.3]), ref, atol=1e-12, rtol=0)


def test_circular_mixes_integer_and_fractional_in_order():
    x = rand(1, n=9)
    y = shift(x, [2, 0.5, -1]).split(2)
    assert torch.equal(y[0], torch.roll(x, 2, 2))
    torch.testing.assert_close(y[1], fourier_shift(x, [0.5]))
    assert torch.equal(y[2], torch.roll(x, -1, 2))


@pytest.mark.parametrize("mode", ["circular", "zeros", "reflect"])
def test_shift_per_sample_matches_shift(mode):
    x = rand(2, n=6, batch=3)
    offs = torch.tensor([[1, -2], [0, 3], [-5, 5]])
    y = shift_per_sample(x, offs, mode)
    for i in range(3):
        assert torch.equal(y[i:i + 1], shift(x[i:i + 1], [tuple(offs[i].tolist())], mode))


def test_shift_per_sample_crop_windows():
    x = rand(2, n=6, batch=2)
    y = shift_per_sample(x, torch.tensor([[0, 1], [2, 0]]), "crop", crop_size=(4, 5))
    assert torch.equal(y[0], x[0, :, 0:4, 1:6])
    assert torch.equal(y[1], x[1, :, 2:6, 0:5])
    with pytest.raises(ValueError, match="leave"):
        shift_per_sample(x, torch.tensor([[3, 0], [0, 0]]), "crop", crop_size=(4, 5))


def test_half_precision_keeps_dtype():
    x = rand(2, n=8, dtype=torch.float32).half()
    assert shift(x, [0.5]).dtype == torch.float16


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"mode": "wrap"}, ValueError, "mode must be one of"),
        ({"dims": 2}, ValueError, "dims entries"),
        ({"dims": (0, 0)}, ValueError, "repeat"),
        ({"shifts": [(1, 2, 3)]}, ValueError, "2 entries"),
        ({"shifts": [(True, 1)]}, TypeError, "numbers"),
        ({"shifts": []}, ValueError, "empty"),
        ({"shifts": [float("nan")]}, ValueError, "finite"),
        ({"shifts": "1"}, TypeError, "shifts"),
        ({"crop_size": 3}, ValueError, "crop_size is only used"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    x = rand(2, n=6)
    args = {"shifts": [(1, 0)], **kwargs}
    with pytest.raises(err, match=match):
        shift(x, **args)


def test_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        shift(torch.zeros(1, 1, 4, dtype=torch.long), [1])
    with pytest.raises(ValueError, match="spatial"):
        shift(torch.zeros(4, 4), [1])
    with pytest.raises(TypeError, match="Tensor"):
        shift([1.0, 2.0], [1])

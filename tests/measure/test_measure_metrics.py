"""Invariance, equivariance and consistency: exact where theory says exact, large where it says large."""

from __future__ import annotations

import math

import pytest
import torch
from _measure_nets import CONV, LocalAPS, Subsample, circ_conv, downsampling_net
from torch import nn

import poolkit
import poolkit.functional as PF
from poolkit.measure import Consistency, ShiftResult, consistency, equivariance, invariance

DIMS = (1, 2, 3)
SIZE = {1: 16, 2: 8, 3: 8}


def rand(d: int, batch: int = 3, c: int = 3, n: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, c) + (n or SIZE[d],) * d, generator=g, dtype=torch.float64)


def all_shifts(d: int, n: int) -> list[tuple[int, ...]]:
    """A spread of shifts: along each axis, diagonal, and large."""
    out = [tuple(s if i == a else 0 for i in range(d)) for a in range(d) for s in (1, 2, 3, -1)]
    return [*out, (1,) * d, (n - 1,) * d, tuple(range(1, d + 1))]


@pytest.mark.parametrize("d", DIMS)
def test_circular_conv_is_exactly_equivariant(d):
    torch.manual_seed(0)
    conv = circ_conv(d, 3, 4).double()
    x = rand(d)
    r = equivariance(conv, x, all_shifts(d, SIZE[d]))
    assert isinstance(r, ShiftResult) and r.kind == "equivariance"
    assert r.per_sample.shape == (len(r.shifts), 3) and r.per_shift.shape == (len(r.shifts),)
    assert r.stride == (1.0,) * d and all(r.commensurate)
    assert r.per_sample.max() < 1e-12
    assert float(r) == r.mean < 1e-12
    # the same conv is far from invariant, and a zero-padded one is not exactly equivariant
    assert invariance(conv, x, all_shifts(d, SIZE[d])).mean > 0.3
    zconv = CONV[d](3, 4, 3, padding=1).double()
    assert equivariance(zconv, x, all_shifts(d, SIZE[d])).mean > 0.05


@pytest.mark.parametrize("d", DIMS)
def test_global_max_pool_is_exactly_invariant(d):
    x = rand(d)
    r = invariance(lambda t: PF.max_pool(t, output_size=1), x, all_shifts(d, SIZE[d]))
    assert r.kind == "invariance" and r.per_sample.shape == (len(r.shifts), 3)
    assert r.per_sample.abs().max() == 0.0
    # a local max pool is not
    assert invariance(lambda t: PF.max_pool(t, 2), x, all_shifts(d, SIZE[d])).mean > 0.1


@pytest.mark.parametrize("d", DIMS)
def test_stride2_max_pool_equivariant_for_even_shifts_only(d):
    x = rand(d)
    shifts = [(2,) * d, (4,) + (0,) * (d - 1), (-2,) * d, (1,) * d, (3,) + (0,) * (d - 1), (1,) + (2,) * (d - 1)]
    r = equivariance(lambda t: PF.max_pool(t, 2), x, shifts)
    assert r.stride == (2.0,) * d
    assert r.commensurate == [True, True, True, False, False, False]
    assert r.per_shift[:3].max() < 1e-12
    assert r.per_shift[3:].min() > 0.05
    assert r.commensurate_mean < 1e-12 < r.mean
    explicit = equivariance(lambda t: PF.max_pool(t, 2), x, shifts, stride=2)
    torch.testing.assert_close(explicit.per_sample, r.per_sample)


@pytest.mark.parametrize("d", DIMS)
def test_aps_network_is_exactly_invariant(d):
    net = downsampling_net(d, LocalAPS).double()
    x = rand(d)
    shifts = all_shifts(d, SIZE[d])
    assert invariance(net, x, shifts).per_sample.max() < 1e-10
    # the same network with plain subsampling is not
    plain = downsampling_net(d, Subsample).double()
    assert invariance(plain, x, shifts).mean > 1e-3


@pytest.mark.parametrize("d", DIMS)
def test_registered_aps_network_is_exactly_invariant(d):
    if "aps" not in poolkit.list_pools():
        pytest.skip("aps is not registered yet")
    net = downsampling_net(d, lambda: poolkit.create_pool("aps", dim=d, kernel_size=2)).double()
    assert invariance(net, rand(d), all_shifts(d, SIZE[d])).per_sample.max() < 1e-10
    plain = downsampling_net(d, Subsample).double()
    assert invariance(plain, rand(d), all_shifts(d, SIZE[d])).mean > 1e-3


@pytest.mark.parametrize("d", DIMS)
def test_flatten_linear_is_far_from_invariant(d):
    torch.manual_seed(0)
    x = rand(d)
    net = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10)).double()
    r = invariance(net, x, all_shifts(d, SIZE[d]))
    assert r.mean > 0.5
    with pytest.raises(ValueError, match="use invariance"):
        equivariance(net, x, [1])


def test_identity_is_equivariant_in_every_mode():
    x = rand(2, n=10)
    shifts = [(1, 0), (-2, 3), (0.5, 0)]
    for mode in ("circular", "zeros", "reflect", "crop"):
        r = equivariance(lambda t: t, x, shifts, mode=mode)
        assert r.per_sample.max() < 1e-12, mode


def test_valid_conv_is_equivariant_on_crops():
    """A conv without padding commutes with moving the crop window (on the cells both see)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).double()
    x = rand(2, n=14)
    shifts = [(1, 0), (0, -2), (2, 2)]
    assert equivariance(conv, x, shifts, mode="crop").per_sample.max() < 1e-12
    assert equivariance(conv, x, shifts, mode="zeros").mean > 0.05


def test_subpixel_shifts_with_a_stride():
    x = rand(1, n=32)
    r = equivariance(lambda t: t[..., ::2], x, [2, 1, 0.5])
    assert r.commensurate == [True, False, False]
    assert r.per_shift[0] < 1e-12 and r.per_shift[1] > 0.05


def test_module_mode_is_restored_and_no_grad():
    net = nn.Sequential(nn.Conv1d(3, 3, 3, padding=1), nn.BatchNorm1d(3), nn.Dropout(0.5))
    net.train()
    net[1].eval()
    r = invariance(net, rand(1).float(), [1, 2])
    assert net.training and not net[1].training and net[2].training
    assert not r.per_sample.requires_grad
    # in eval mode dropout is off, so repeated measurements agree
    torch.testing.assert_close(invariance(net, rand(1).float(), [1, 2]).per_sample, r.per_sample)


def test_invariance_accepts_tuple_outputs_and_checks_the_batch():
    x = rand(2)
    r = invariance(lambda t: PF.max_pool(t, output_size=1, return_indices=True), x, [(1, 1)])
    assert r.mean == 0.0
    with pytest.raises(ValueError, match="batch"):
        invariance(lambda t: t[:1], x, [(1, 1)])
    with pytest.raises(TypeError, match="Tensor"):
        invariance(lambda t: "nope", x, [(1, 1)])
    with pytest.raises(ValueError, match="stride"):
        equivariance(lambda t: t, x, [(1, 1)], stride=(1, 0))


def test_zero_output_is_invariant_not_nan():
    r = invariance(lambda t: t * 0, rand(1), [1])
    assert r.mean == 0.0


# ---- consistency -------------------------------------------------------------------------


class Constant(nn.Module):
    def __init__(self, k: int = 4) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.arange(float(k)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


class OnePixel(nn.Module):
    """Reads only the first cell: class = which tenth of [0, 1) it falls in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(2)[:, 0, 0]
        return 20.0 * torch.nn.functional.one_hot((v * 10).long().clamp(0, 9), 10).float()


@pytest.mark.parametrize("mode", ["circular", "zeros", "reflect", "crop"])
def test_constant_model_is_fully_consistent(mode):
    data = torch.rand(50, 1, 12, 12)
    c = consistency(Constant(), data, max_shift=3, mode=mode)
    assert isinstance(c, Consistency)
    assert c.consistency == 1.0 and c.flip_rate == 0.0 and c.prob_change == 0.0
    assert c.n == 50 and c.mode == mode and c.max_shift == (3, 3)


@pytest.mark.parametrize("mode", ["circular", "zeros", "reflect", "crop"])
def test_one_pixel_model_is_inconsistent(mode):
    data = torch.rand(300, 1, 16)
    c = consistency(OnePixel(), data, max_shift=4, mode=mode, pairs=2, batch_size=128)
    assert c.consistency < 0.4
    # with zero fill, shifts toward the read cell fill it with 0 (one class), so fewer flips
    assert c.flip_rate > (0.4 if mode == "zeros" else 0.6)
    assert c.prob_change > (0.4 if mode == "zeros" else 0.5)
    assert c.n == 300 and c.pairs == 2


def test_invariant_network_is_fully_consistent_under_circular_shifts():
    net = downsampling_net(2, LocalAPS, c=1)
    c = consistency(net, torch.randn(64, 1, 8, 8), mode="circular")
    assert c.max_shift == (4, 4)
    assert c.consistency == 1.0 and c.flip_rate == 0.0 and c.prob_change < 1e-6


def test_consistency_is_deterministic_and_takes_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(32, 5))
    x = torch.randn(40, 1, 16)
    a = consistency(net, x, max_shift=3, seed=1, batch_size=40)
    assert a == consistency(net, x, max_shift=3, seed=1, batch_size=40)
    b = consistency(net, [(x[:20], torch.zeros(20)), (x[20:], torch.zeros(20))], max_shift=3, seed=1)
    assert b.n == 40 and 0.0 <= b.consistency <= 1.0
    assert consistency(net, x, max_shift=3, seed=2) != a


def test_crop_consistency_feeds_a_fixed_size_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12 * 12, 3))  # needs 12x12 input
    data = torch.randn(20, 1, 16, 16)  # padded by max_shift 4
    c = consistency(net, data, mode="crop", crop_size=12)
    assert c.crop_size == (12, 12) and c.max_shift == (4, 4)
    c2 = consistency(net, data, max_shift=4, mode="crop")
    assert c2.crop_size == (12, 12)
    with pytest.raises(ValueError, match="crop_size"):
        consistency(net, data, max_shift=6, mode="crop", crop_size=12)


def test_consistency_bad_arguments():
    x = torch.rand(4, 1, 8)
    with pytest.raises(ValueError, match="logits"):
        consistency(lambda t: t, x, max_shift=1)
    with pytest.raises(ValueError, match="max_shift"):
        consistency(Constant(), x, max_shift=0)
    with pytest.raises(ValueError, match="pairs"):
        consistency(Constant(), x, pairs=0)
    with pytest.raises(ValueError, match="crop_size is only used"):
        consistency(Constant(), x, crop_size=4)
    with pytest.raises(TypeError, match="data"):
        consistency(Constant(), 3)
    with pytest.raises(ValueError, match="empty"):
        consistency(Constant(), [])
    assert math.isfinite(consistency(Constant(), x).prob_change)


def test_subpixel_false_skips_incommensurate_shifts():
    x = rand(2)
    shifts = [(2, 0), (1, 0), (2, 2)]
    full = equivariance(lambda t: PF.max_pool(t, 2), x, shifts)
    fast = equivariance(lambda t: PF.max_pool(t, 2), x, shifts, subpixel=False)
    assert torch.isnan(fast.per_sample[1]).all() and not torch.isnan(full.per_sample[1]).any()
    torch.testing.assert_close(fast.per_sample[[0, 2]], full.per_sample[[0, 2]])
    assert fast.mean == full.commensurate_mean

"""Polyphase sampling: exact circular-shift invariance of aps/lps networks in 1-D/2-D/3-D, unpooling, references."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import poolkit
import poolkit.functional as PF
import poolkit.nn as pnn

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def network(dim: int, pool: str, stride: int, channels: int = 4) -> nn.Module:
    """conv (circular) -> ReLU -> pool -> conv -> ReLU -> pool -> global average."""
    torch.manual_seed(0)
    return nn.Sequential(
        CONV[dim](2, channels, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        poolkit.create_pool(pool, dim=dim, kernel_size=stride, channels=channels),
        CONV[dim](channels, channels, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        poolkit.create_pool(pool, dim=dim, kernel_size=stride, channels=channels),
        poolkit.create_pool("avg", dim=dim, output_size=1), nn.Flatten(),
    ).double().eval()


def all_shifts(x: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """Every circular shift of ``x`` (a subset of ``limit`` of them, spread evenly, when given) as one batch."""
    dim = x.ndim - 2
    shifts = list(itertools.product(*(range(n) for n in x.shape[2:])))
    if limit is not None and len(shifts) > limit:
        shifts = shifts[:: len(shifts) // limit][:limit]
    dims = tuple(range(2, 2 + dim))
    return torch.cat([x.roll(s, dims) for s in shifts])


@pytest.mark.parametrize("pool", ["aps", "lps"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("size", [7, 9])
def test_network_is_exactly_invariant_to_circular_shifts(pool, dim, stride, size):
    net = network(dim, pool, stride)
    x = rand(1, 2, *(size,) * dim)
    shifted = all_shifts(x, limit=40 if dim == 3 else None)
    with torch.no_grad():
        ref = net(x)
        out = net(shifted)
    assert shifted.shape[0] > 1
    torch.testing.assert_close(out, ref.expand_as(out), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
def test_the_invariance_check_fails_for_plain_strided_pooling(dim):
    # control: the same network with strided max pooling is not invariant, so the check above can fail
    net = network(dim, "max", 2)
    x = rand(1, 2, *(9,) * dim)
    with torch.no_grad():
        out = net(all_shifts(x))
    assert (out - out[:1]).abs().max() > 1e-3


@pytest.mark.parametrize("norm", poolkit.functional.APS_NORMS)
@pytest.mark.parametrize("size", [(8,), (9,), (6, 5), (4, 3, 5)])
def test_aps_output_is_identical_for_every_circular_shift(norm, size):
    x = rand(2, 3, *size)
    ref = PF.aps_pool(x, 2, norm=norm)
    for s in itertools.product(*(range(n) for n in size)):
        assert torch.equal(PF.aps_pool(x.roll(s, tuple(range(2, x.ndim))), 2, norm=norm), ref), s


def brute_force(x: torch.Tensor, stride: int, norm: str) -> torch.Tensor:
    """Try every cyclic start offset; keep the best norm (largest, or smallest for *_min), ties (same norm up to
    rounding) to the largest first sample in channel 0."""
    size = x.shape[2:]
    p = {"l1": 1, "l2": 2, "linf": float("inf")}[norm.removesuffix("_min")]
    out = []
    for b in range(x.shape[0]):
        cands = []
        for off in itertools.product(*(range(n) for n in size)):
            idx = [torch.tensor([(o + stride * j) % n for j in range(-(-n // stride))]) for o, n in zip(off, size)]
            cand = x[b][(slice(None), *torch.meshgrid(*idx, indexing="ij"))]
            val = torch.linalg.vector_norm(cand, p).item()
            cands.append((-val if norm.endswith("_min") else val, x[b][(0, *off)].item(), cand))
        top = max(v for v, _, _ in cands)
        tied = [c for c in cands if c[0] >= top - 1e-9 * abs(top)]
        out.append(max(tied, key=lambda c: c[1])[2])
    return torch.stack(out)


@pytest.mark.parametrize("norm", ["l2", "l1", "l2_min", "l1_min"])
@pytest.mark.parametrize("size", [(7,), (5, 6), (3, 4, 3)])
@pytest.mark.parametrize("stride", [2, 3])
def test_aps_matches_brute_force_search(norm, size, stride):
    x = rand(3, 2, *size, seed=1)
    torch.testing.assert_close(PF.aps_pool(x, stride, norm=norm), brute_force(x, stride, norm))


def test_aps_divisible_size_keeps_a_classic_polyphase_component():
    x = rand(2, 3, 8, 6)
    y, phase = PF.aps_pool(x, 2, return_phase=True)
    for b in range(2):
        p0, p1 = (int(v) % 2 for v in phase[b])
        comp = x[b, :, p0::2, p1::2]
        energies = [x[b, :, i::2, j::2].square().sum() for i in range(2) for j in range(2)]
        assert comp.square().sum() == max(energies)
        # the output is that component, rotated to start at the chosen offset
        assert torch.equal(y[b], comp.roll((-(int(phase[b, 0]) // 2), -(int(phase[b, 1]) // 2)), (1, 2)))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("size", [6, 7])
def test_unpool_puts_samples_back_and_is_equivariant(dim, size):
    x = rand(2, 3, *(size,) * dim)
    dims = tuple(range(2, 2 + dim))
    y, phase = PF.aps_pool(x, 2, return_phase=True)
    up = PF.aps_unpool(y, phase, 2, output_size=(size,) * dim)
    kept = up != 0
    assert torch.equal(up[kept], x[kept])
    assert int(kept.sum()) == y.numel()
    for shift in [(1,) * dim, (2, 3, 1)[:dim]]:
        y2, phase2 = PF.aps_pool(x.roll(shift, dims), 2, return_phase=True)
        assert torch.equal(PF.aps_unpool(y2, phase2, 2, output_size=(size,) * dim), up.roll(shift, dims))
    mod = pnn.ApsUnpool2d(2) if dim == 2 else None
    if mod is not None:
        assert torch.equal(mod(y, phase, (size, size)), up)


def test_blur_before_aps_keeps_invariance():
    x = rand(1, 3, 9, 7)
    ref = PF.aps_pool(x, 2, filt=3)
    torch.testing.assert_close(PF.aps_pool(x.roll((4, 5), (2, 3)), 2, filt=3), ref, rtol=0, atol=1e-12)
    assert not torch.allclose(ref, PF.aps_pool(x, 2))


def test_lps_training_mixture_is_a_convex_combination_of_candidates():
    pool = pnn.LpsPool1d(2, channels=3).double().train()
    x = rand(4, 3, 11)
    pool.tau.fill_(1e-6)  # annealed: the mixture is one candidate
    torch.manual_seed(3)
    pool.return_phase = True
    y, phase = pool(x)
    idx = (phase[:, :1] + 2 * torch.arange(6)) % 11
    expect = torch.stack([x[b][:, idx[b]] for b in range(4)])
    torch.testing.assert_close(y, expect)
    pool.tau.fill_(1.0)
    pool.return_phase = False
    y = pool(x)
    assert y.shape == (4, 3, 6)
    lo = x.amin(2, keepdim=True)
    hi = x.amax(2, keepdim=True)
    assert ((y >= lo - 1e-9) & (y <= hi + 1e-9)).all()
    y.sum().backward()
    assert pool.weight.grad is not None and pool.weight.grad.abs().sum() > 0
    assert "tau" in pool.state_dict()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_lps_module_traces_and_errors():
    pool = poolkit.create_pool("lps", dim=2, kernel_size=2, channels=4).eval()
    x = torch.rand(2, 4, 7, 7)
    with torch.no_grad():
        traced = torch.jit.trace(pool, (x,))
        assert torch.equal(traced(x), pool(x))
    with pytest.raises(ValueError, match="channels"):
        poolkit.create_pool("lps", dim=2, kernel_size=2)
    with pytest.raises(ValueError, match="tau"):
        pnn.LpsPool2d(2, channels=4, tau=0.0)
    with pytest.raises(ValueError, match="weight"):
        pool(torch.rand(2, 3, 7, 7))


def test_aps_bad_arguments_are_refused():
    x = rand(1, 2, 8)
    with pytest.raises(ValueError, match="norm"):
        PF.aps_pool(x, 2, norm="l3")
    with pytest.raises(ValueError, match="norm"):
        poolkit.create_pool("aps:norm=l3", dim=1)
    with pytest.raises(ValueError, match="output_size"):
        PF.aps_unpool(rand(1, 2, 4), torch.zeros(1, 1, dtype=torch.long), 2, output_size=(10,))
    with pytest.raises(ValueError, match="phase"):
        PF.aps_unpool(rand(1, 2, 4), torch.zeros(1, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="blur_padding_mode"):
        PF.aps_pool(x, 2, filt=3, blur_padding_mode="mirror")


def test_aps_stride_per_dim_and_registry():
    x = rand(2, 3, 9, 8)
    y = poolkit.create_pool("aps:norm=linf", dim=2, kernel_size=(3, 2))(x)
    assert y.shape == (2, 3, 3, 4)
    assert torch.equal(poolkit.create_pool("aps:norm=linf", dim=2, kernel_size=(3, 2))(x.roll((5, 3), (2, 3))), y)

"""Surgery on the architectures people use (tests/zoo.py): exact invariance after APS/LPS, antialias keeps shapes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from poolkit.convert import PhaseFollower, PhaseLeader, antialias, make_shift_invariant
from poolkit.functional import aps_pool
from zoo import ZOO, prepared, resnet18, resnet50, vgg11

N_SHIFTS = 10
_STRIDED_TORCH_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def random_shifts(spatial: tuple[int, ...], n: int = N_SHIFTS, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` distinct non-zero circular shifts, odd and even, per axis below the size."""
    gen = torch.Generator().manual_seed(seed)
    out: set[tuple[int, ...]] = set()
    while len(out) < n:
        s = tuple(int(torch.randint(0, size, (1,), generator=gen)) for size in spatial)
        if any(s):
            out.add(s)
    return sorted(out)


def shifted_batch(x: torch.Tensor, shifts: list[tuple[int, ...]]) -> torch.Tensor:
    dims = tuple(range(2, x.ndim))
    return torch.cat([x] + [x.roll(s, dims) for s in shifts])


def inputs(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("method", ["aps", "lps"])
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_exactly_invariant_after_make_shift_invariant(name, method):
    make, even, odd = ZOO[name]
    net = prepared(make)
    x = inputs(even)
    shifts = random_shifts(even[1:])
    with torch.no_grad():
        plain = net(shifted_batch(x, shifts))
    assert (plain - plain[:1]).abs().max() > 1e-3, "the model as given should not be invariant"
    torch.manual_seed(0)  # lps scorer weights
    report = make_shift_invariant(net, method=method)
    assert report and not report.untraced
    assert all(p.dtype == torch.float64 for p in net.parameters())  # new parameters (lps) take the model's dtype
    for shape in (even, odd):
        x = inputs(shape)
        with torch.no_grad():
            out = net(shifted_batch(x, random_shifts(shape[1:])))
        assert out.shape[0] == N_SHIFTS + 1
        worst = (out - out[:1]).abs().max().item()
        assert worst <= 1e-9, f"{name} {method} at {shape}: outputs differ by {worst:.3g} under circular shifts"


def test_tied_phases_follow_the_main_path_in_torchvision_blocks():
    net = prepared(resnet18)
    report = make_shift_invariant(net)
    assert report.tied == [(f"layer{i}.0.conv1", f"layer{i}.0.downsample.0") for i in (2, 3, 4)]
    assert isinstance(net.layer2[0].conv1[1], PhaseLeader) and isinstance(net.layer2[0].downsample[0][1], PhaseFollower)
    net50 = prepared(resnet50)
    report = make_shift_invariant(net50, method="lps")
    # Bottleneck: the stride sits on conv2, the shortcut samples the block's input; layer1 only widens
    assert report.tied == [(f"layer{i}.0.conv2", f"layer{i}.0.downsample.0") for i in (2, 3, 4)]
    untied = prepared(resnet18)
    assert make_shift_invariant(untied, tie_phases=False).tied == []
    assert not any(isinstance(m, (PhaseLeader, PhaseFollower)) for m in untied.modules())


def _phases(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The phases chosen for layer2.0's main path and shortcut in one forward pass."""
    got: dict[str, torch.Tensor] = {}
    main, short = net.layer2[0].conv1[1], net.layer2[0].downsample[0][1]
    if isinstance(main, PhaseLeader):
        hooks = [main.pool.register_forward_hook(lambda m, a, out: got.__setitem__("main", out[1])),
                 short.register_forward_pre_hook(lambda m, a: got.__setitem__("short", m.link.phase))]
    else:
        hooks = [mod.register_forward_hook(lambda m, a, out, key=key: got.__setitem__(
            key, aps_pool(a[0], 2, return_phase=True)[1])) for key, mod in (("main", main), ("short", short))]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return got["main"], got["short"]


def test_tied_shortcut_samples_where_the_main_path_does():
    x = torch.cat([inputs((3, 32, 32), seed=s) for s in range(8)])
    tied, untied = prepared(resnet18), prepared(resnet18)
    make_shift_invariant(tied)
    make_shift_invariant(untied, tie_phases=False)
    main, short = _phases(tied, x)
    assert torch.equal(main, short)
    main_u, short_u = _phases(untied, x)
    assert torch.equal(main_u, main)  # the same main path, the same choice
    assert not torch.equal(main_u, short_u)  # on their own the branches disagree for some inputs
    with torch.no_grad():  # both stay invariant
        for net in (tied, untied):
            out = net(shifted_batch(x[:1], random_shifts((32, 32))))
            assert (out - out[:1]).abs().max() <= 1e-9


def test_vgg_with_torchvision_pool_size_is_reported():
    net = prepared(lambda: vgg11(pool_size=7))
    report = make_shift_invariant(net)
    assert [s.name for s in report.skipped] == ["avgpool"] and "size above 1" in report.skipped[0].reason


def _change(net: nn.Module, x: torch.Tensor, shifts: list[tuple[int, ...]]) -> float:
    """Mean relative change of the output under the circular shifts (0 = invariant)."""
    with torch.no_grad():
        out = net(shifted_batch(x, shifts))
    return float((out[1:] - out[:1]).norm(dim=1).mean() / out[:1].norm())


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_antialias_keeps_shapes_and_does_not_worsen_consistency(name):
    make, even, odd = ZOO[name]
    net = prepared(make)
    fixed = copy.deepcopy(net)
    report = antialias(fixed, padding_mode="circular")  # the blur wraps like the circular shifts measured here
    assert report and not report.untraced
    fixed = fixed.double().eval()
    left = [n for n, m in fixed.named_modules()
            if isinstance(m, _STRIDED_TORCH_POOLS) and any(s > 1 for s in torch.nn.modules.utils._ntuple(3)(m.stride))]
    assert left == [], f"strided torch pooling left: {left}"
    for shape in (even, odd):
        x = inputs(shape, seed=3)
        with torch.no_grad():
            assert fixed(x).shape == net(x).shape
        shifts = random_shifts(shape[1:], seed=5)
        before, after = _change(net, x, shifts), _change(fixed, x, shifts)
        assert after <= before, f"{name} at {shape}: shift change {after:.4f} after antialias, {before:.4f} before"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "cnn3d"])
def test_zoo_exactly_invariant_on_cuda(name):
    make, even, odd = ZOO[name]
    net = prepared(make)
    report = make_shift_invariant(net)
    assert report.tied or name != "resnet50"
    net = net.cuda()
    for shape in (even, odd):
        x = inputs(shape).cuda()
        with torch.no_grad():
            out = net(shifted_batch(x, random_shifts(shape[1:])))
        assert out.device.type == "cuda" and (out - out[:1]).abs().max().item() <= 1e-9


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_zoo_antialias_default_reflect_runs_at_cifar_size(name):
    """antialias's default (reflect) on CIFAR-sized nets: small late maps replicate, the forward runs."""
    make, even, odd = ZOO[name]
    net = prepared(make)
    fixed = copy.deepcopy(net)
    report = antialias(fixed)
    for shape in (even, odd):
        x = inputs(shape, seed=3)
        with torch.no_grad():
            out = fixed(x)
            assert out.shape == net(x).shape and torch.isfinite(out).all()
    assert any("replicates it on maps" in c.note for c in report)

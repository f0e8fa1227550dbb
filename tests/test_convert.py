"""Model surgery on a ResNet-style 2-D model, a Conv1d time-series model and a small 3-D model."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import torch
from torch import nn

import poolkit.nn as pnn
from poolkit.convert import POOL_TYPES, Change, RatioPool, antialias, make_shift_invariant, swap_pools


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    """Stem conv stride 2 + max pool, two basic blocks (the second strided with a 1x1 downsample), global pool, fc."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet() -> nn.Module:
    torch.manual_seed(0)
    net = TinyResNet()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.double().eval()


def series_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 8, 5, stride=2, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AvgPool1d(2),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(16, 3),
    ).double().eval()


def volume_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool3d(2), nn.AvgPool3d(2, 1),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(),
    ).double().eval()


def params(model):
    return {id(p): p.detach().clone() for p in model.parameters()}


def weights_kept(model, before) -> bool:
    now = {id(p): p for p in model.parameters()}
    return all(k in now and torch.equal(now[k], v) for k, v in before.items())


# ---------------------------------------------------------------- swap_pools


def test_swap_pools_same_statistic_gives_the_same_model():
    for make, x in ((resnet, torch.rand(2, 3, 32, 32, dtype=torch.float64)),
                    (series_model, torch.rand(2, 2, 64, dtype=torch.float64)),
                    (volume_model, torch.rand(1, 1, 12, 12, 12, dtype=torch.float64))):
        net = make()
        with torch.no_grad():
            ref = net(x)
        changes = swap_pools(net, "max", types=[nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d])
        avg_types = [nn.AvgPool1d, nn.AvgPool3d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d]
        changes += swap_pools(net, "avg", types=avg_types)
        assert changes and all(isinstance(c, Change) for c in changes)
        assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool2d)) for m in net.modules())
        with torch.no_grad():
            torch.testing.assert_close(net(x), ref)


def test_swap_pools_records_every_torch_pool_and_keeps_geometry():
    net = resnet()
    before = params(net)
    changes = swap_pools(net, "lp:p=3")
    assert [c.name for c in changes] == ["maxpool", "avgpool"]
    assert changes[0].before.startswith("MaxPool2d") and changes[0].after.startswith("LPPool2d")
    assert "padding=1" in changes[0].after
    assert net(torch.rand(2, 3, 32, 32, dtype=torch.float64)).shape == (2, 5)
    assert weights_kept(net, before)
    series = series_model()
    assert [c.name for c in swap_pools(series, "maxblur:filt=3", types=[nn.MaxPool1d])] == ["3"]
    assert isinstance(series[3], pnn.MaxBlurPool1d) and series[3].filt == 3


def test_swap_pools_subsampling_pools_and_fractional():
    net = series_model()
    x = torch.rand(2, 2, 64, dtype=torch.float64)
    shape = net(x).shape
    changes = swap_pools(net, "aps", types=[nn.MaxPool1d, nn.AvgPool1d])
    assert [c.name for c in changes] == ["3", "6"]
    assert isinstance(net[3], pnn.ApsPool1d) and net[3].kernel_size == 2
    assert net(x).shape == shape
    frac = nn.Sequential(nn.FractionalMaxPool2d(3, output_ratio=0.5), nn.FractionalMaxPool2d(2, output_size=(3, 3)))
    swap_pools(frac, "max")
    assert isinstance(frac[0], RatioPool) and isinstance(frac[1], pnn.MaxPool2d)
    assert frac(torch.rand(1, 2, 13, 13)).shape == (1, 2, 3, 3)
    assert nn.FractionalMaxPool3d in POOL_TYPES and nn.LPPool3d in POOL_TYPES


def test_swap_pools_refuses_what_it_cannot_keep_and_leaves_the_model_untouched():
    net = resnet()
    text = repr(net)
    with pytest.raises(ValueError, match="output_size"):
        swap_pools(net, "maxblur")  # AdaptiveAvgPool2d has no maxblur form
    with pytest.raises(ValueError, match="unknown pool"):
        swap_pools(net, "nosuchpool")
    assert repr(net) == text
    with pytest.raises(TypeError, match="model"):
        swap_pools("net", "max")


# ---------------------------------------------------------------- antialias


def test_antialias_resnet():
    net = resnet()
    before = params(net)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    shape = net(x).shape
    changes = antialias(net, filt=4)
    names = [c.name for c in changes]
    # the blur goes after the activation that alone takes the conv's output (found by torch.fx)
    assert names == ["conv1", "relu", "maxpool", "layer2.conv1", "layer2.bn1", "layer2.downsample.0"]
    assert isinstance(net.maxpool, pnn.MaxBlurPool2d) and net.maxpool.stride == (2, 2)
    assert isinstance(net.conv1, nn.Conv2d) and net.conv1.stride == (1, 1)
    assert isinstance(net.relu[1], pnn.BlurPool2d) and net.relu[1].filt == 4
    assert changes[0].before.startswith("Conv2d") and "stride=(2, 2)" in changes[0].before
    # layer2's relu is called twice: a copy of it, with the blur, follows bn1
    assert isinstance(net.layer2.bn1[1], nn.ReLU) and isinstance(net.layer2.bn1[2], pnn.BlurPool2d)
    assert isinstance(net.layer2.downsample[0], nn.Sequential)  # the shortcut has no activation: blur after conv
    assert weights_kept(net, before)
    with torch.no_grad():
        assert net(x).shape == shape
        b, h = net.layer2, torch.rand(2, 8, 9, 9, dtype=torch.float64)
        blur = net.layer2.bn1[2]
        main = b.bn2(b.conv2(blur(torch.relu(b.bn1[0](b.conv1(h))))))  # conv, norm, ReLU, blur: Zhang's order
        torch.testing.assert_close(b(h), torch.relu(main + b.downsample(h)))


def test_antialias_series_model_blurs_after_the_activation():
    net = series_model()
    before = params(net)
    x = torch.rand(2, 2, 64, dtype=torch.float64)
    shape = net(x).shape
    changes = antialias(net, filt=3, pools=False)
    assert [c.name for c in changes] == ["0", "2"]  # the conv at stride 1, then ReLU -> blurpool (after the BN)
    assert net[0].stride == (1,) and isinstance(net[2], nn.Sequential) and isinstance(net[2][1], pnn.BlurPool1d)
    assert isinstance(net[3], nn.MaxPool1d)  # pools=False
    assert net(x).shape == shape and weights_kept(net, before)
    assert [c.name for c in antialias(net, convs=False)] == ["3", "6"]
    assert isinstance(net[6], pnn.BlurPool1d) and net(x).shape == shape


def test_antialias_3d_and_reduces_aliasing():
    net = volume_model()
    x = torch.rand(1, 1, 12, 12, 12, dtype=torch.float64)
    shape = net(x).shape
    changes = antialias(net)
    assert [c.name for c in changes] == ["0", "1", "2"]
    assert net(x).shape == shape


def test_antialias_makes_a_strided_layer_more_shift_stable():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 32, 32, dtype=torch.float64)
    plain = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4)).double()
    aa = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4)).double()
    antialias(aa)

    def change(net):
        return (net(x) - net(x.roll(1, 3))).abs().mean() / net(x).abs().mean()

    assert change(aa) < 0.5 * change(plain)


def test_antialias_bad_input():
    with pytest.raises(ValueError, match="filt"):
        antialias(resnet(), filt=0)
    net = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True))
    report = antialias(net)  # left as it was, and said so
    assert not report and [s.name for s in report.skipped] == ["0"] and "ceil_mode" in report.skipped[0].reason
    assert isinstance(net[0], nn.MaxPool2d)


# ---------------------------------------------------------------- make_shift_invariant


def shifts(x, every=1):
    dims = tuple(range(2, x.ndim))
    every_shift = itertools.product(*(range(n) for n in x.shape[2:]))
    return [x.roll(s, dims) for s in itertools.islice(every_shift, 0, None, every)]


@pytest.mark.parametrize("size", [16, 15])
def test_make_shift_invariant_resnet_is_exactly_invariant(size):
    net = resnet()
    before = params(net)
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        plain = net(torch.cat(shifts(x, every=7)))
    assert (plain - plain[:1]).abs().max() > 1e-4  # the original model is not invariant
    changes = make_shift_invariant(net)
    names = {c.name for c in changes}
    assert {"conv1", "maxpool", "layer2.conv1", "layer2.downsample.0", "layer1.conv1"} <= names
    assert net.conv1[0].padding_mode == "circular" and isinstance(net.conv1[1], pnn.ApsPool2d)
    assert weights_kept(net, before)
    with torch.no_grad():
        out = net(torch.cat(shifts(x)))
    torch.testing.assert_close(out, out[:1].expand_as(out), rtol=1e-9, atol=1e-10)


def test_make_shift_invariant_series_model_aps_and_lps():
    for method in ("aps", "lps"):
        net = series_model()
        x = torch.randn(1, 2, 50, dtype=torch.float64)
        changes = make_shift_invariant(net, method=method)
        assert [c.name for c in changes] == ["0", "3", "4", "6"]
        net = net.double().eval()
        with torch.no_grad():
            out = net(torch.cat(shifts(x)))
        torch.testing.assert_close(out, out[:1].expand_as(out), rtol=1e-9, atol=1e-10)
    assert isinstance(net[3][1], pnn.LpsPool1d) and net[3][1].channels == 8


def test_make_shift_invariant_blur_and_spec_parameters():
    net = volume_model()
    x = torch.rand(1, 1, 12, 12, 12, dtype=torch.float64)
    shape = net(x).shape
    make_shift_invariant(net, method="blur:filt=3")
    assert isinstance(net[0][1], pnn.BlurPool3d) and net[0][1].padding_mode == "circular"
    assert net(x).shape == shape
    net = volume_model()
    make_shift_invariant(net, method="aps:norm=l1")
    assert net[0][1].norm == "l1" and net(x).shape == shape
    with pytest.raises(ValueError, match="method"):
        make_shift_invariant(volume_model(), method="fft")


# ---------------------------------------------------------------- even kernels, tied phases, the report


def _invariant(net, shape, n=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *shape), generator=gen, dtype=torch.float64)
    dims = tuple(range(2, x.ndim))
    xs = [x] + [x.roll(tuple(int(torch.randint(1, s, (1,), generator=gen)) for s in shape[1:]), dims)
                for _ in range(n)]
    with torch.no_grad():
        out = net(torch.cat(xs))
    return (out - out[:1]).abs().max().item()


_POOL = {1: (nn.MaxPool1d, nn.AvgPool1d, nn.Conv1d), 2: (nn.MaxPool2d, nn.AvgPool2d, nn.Conv2d),
         3: (nn.MaxPool3d, nn.AvgPool3d, nn.Conv3d)}


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride,dilation,stat", [
    (2, 2, 1, "max"), (4, 2, 1, "max"), (3, 2, 2, "max"), (2, 2, 2, "max"), (2, 2, 1, "avg"), (4, 4, 1, "avg"),
    (2, 2, 1, "conv"), (4, 2, 1, "conv"), (3, 3, 2, "conv"),
])
def test_even_kernels_keep_the_size_under_circular_padding(dim, kernel, stride, dilation, stat):
    torch.manual_seed(0)
    maxp, avgp, conv = _POOL[dim]
    if stat == "max":
        layer = maxp(kernel, stride, dilation=dilation)
    elif stat == "avg":
        layer = avgp(kernel, stride)
    else:
        layer = conv(3, 3, kernel, stride, padding=kernel // 2 - 1 if kernel % 2 == 0 else 0, dilation=dilation)
    net = nn.Sequential(conv(2, 3, 3, padding=1), nn.ReLU(), layer, getattr(nn, f"AdaptiveAvgPool{dim}d")(1),
                        nn.Flatten()).double().eval()
    make_shift_invariant(net)
    dense = net[2][:-1]  # the stride-1 part (pad + conv, or the dense pool)
    for n in (12, 11):
        x = torch.randn((1, 3) + (n,) * dim, dtype=torch.float64)
        with torch.no_grad():
            assert dense(x).shape == x.shape, f"{net[2]} changes the size {n}"
        assert _invariant(net, (2,) + (n,) * dim, n=10) <= 1e-9


def test_same_padding_split_is_torchs():
    # kernel 4: three cells of padding, one before and two after, as torch's padding="same"
    pool = nn.Sequential(nn.MaxPool1d(4, 2))
    make_shift_invariant(pool)
    x = torch.arange(8.0).view(1, 1, 8)
    ref = nn.functional.max_pool1d(torch.cat([x[..., -1:], x, x[..., :2]], -1), 4, 1)
    torch.testing.assert_close(pool[0][0](x), ref)
    conv = nn.Sequential(nn.Conv1d(1, 1, 4, stride=2, bias=False))
    make_shift_invariant(conv)
    assert isinstance(conv[0][0], nn.CircularPad1d) and conv[0][0].padding == (1, 2)


def test_follower_without_its_leader_says_so():
    net = resnet()
    make_shift_invariant(net)
    follower = net.layer2.downsample
    with pytest.raises(RuntimeError, match="no phase from its leader 'layer2.conv1'"):
        follower(torch.rand(1, 8, 8, 8, dtype=torch.float64))
    net(torch.rand(2, 3, 16, 16, dtype=torch.float64))  # the leader runs first in forward: fine
    with pytest.raises(RuntimeError, match="no phase"):  # the phase is used once per forward, then dropped
        follower(torch.rand(2, 8, 4, 4, dtype=torch.float64))


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 1, stride=2)

    def forward(self, x):
        x = nn.functional.avg_pool2d(self.conv(x), 2)
        x = self.shared(self.shared(x))  # one module called twice
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class Branchy(nn.Module):
    """Data-dependent control flow at the top; a traceable block inside it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = BasicBlock(8, 16, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))

    def forward(self, x):
        x = self.stem(x)
        if x.mean() > 0:
            x = -x
        return self.head(self.block(x))


def test_report_names_functional_calls_shared_layers_and_unsupported_layers():
    for fn in (make_shift_invariant, antialias, lambda m: swap_pools(m, "lp:p=2")):
        report = fn(Functional())
        assert ("(model)", "avg_pool2d() in forward") in [(s.name, s.what) for s in report.skipped]
        assert not any("adaptive" in s.what for s in report.skipped)  # a global pool is fine
    report = make_shift_invariant(Functional())
    assert ("shared", "called more than once in forward") in [(s.name, s.what) for s in report.skipped]
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PixelUnshuffle(2), nn.AdaptiveMaxPool2d((3, 3)), nn.Unfold(2))
    report = make_shift_invariant(net)
    assert [s.name for s in report.skipped] == ["0", "1", "2", "3"] and not report
    assert "unpadded" in report.skipped[0].reason and "padding='same'" in report.skipped[0].reason
    for fn in (make_shift_invariant, antialias):
        seg = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, return_indices=True))
        seg_report = fn(seg)
        assert [s.name for s in seg_report.skipped] == ["1"] and "MaxUnpool" in seg_report.skipped[0].reason
        assert isinstance(seg[1], nn.MaxPool2d)
    text = report.text()
    assert "left as they were (4):" in text and "  1: PixelUnshuffle(downscale_factor=2): subsamples" in text


def test_untraceable_model_falls_back_per_module_and_says_so():
    torch.manual_seed(0)
    net = Branchy().double().eval()
    report = make_shift_invariant(net)
    assert [s.name for s in report.untraced] == ["(model)"] and "control flow" in report.untraced[0].reason
    assert report.tied == [("block.conv1", "block.downsample.0")]  # the block is traced on its own
    assert _invariant(net, (3, 12, 12)) <= 1e-9
    assert "not traced by torch.fx (1):" in report.text()


def test_report_is_a_list_of_changes():
    report = make_shift_invariant(resnet())
    assert isinstance(report, list) and report.changes == list(report) and report.untraced == []
    assert report.tied == [("layer2.conv1", "layer2.downsample.0")]
    with pytest.raises(TypeError, match="tie_phases"):
        make_shift_invariant(resnet(), tie_phases="yes")
    with pytest.raises(ValueError, match="padding_mode"):
        antialias(resnet(), padding_mode="wrap")


def test_lp_pool_becomes_dense_lp_then_aps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.LPPool2d(3, 2), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten()).double().eval()
    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        ref = nn.functional.lp_pool2d(x, 3, 2, 1)
    make_shift_invariant(net)
    with torch.no_grad():
        dense = net[2][0](x)
    assert dense.shape == x.shape  # the dense part: torch's LP pool at stride 1, wrapped after the end
    torch.testing.assert_close(dense[..., :9, :9], ref)
    assert _invariant(net, (2, 11, 11)) <= 1e-9


def test_new_layers_take_the_models_mode_dtype_and_device():
    for training in (False, True):
        for fn in (lambda m: make_shift_invariant(m, "lps"), antialias,
                   lambda m: swap_pools(m, "lps:channels=8", types=[nn.MaxPool2d])):
            net = resnet().train(training)
            fn(net)
            assert all(m.training == training for m in net.modules())
    for fn in (lambda m: make_shift_invariant(m, "lps"), lambda m: swap_pools(m, "lps:channels=8", [nn.MaxPool2d])):
        net = resnet()  # float64
        fn(net)
        scorers = [m for m in net.modules() if isinstance(m, pnn.LpsPool2d)]
        assert scorers and all(p.dtype == torch.float64 for m in scorers for p in m.parameters())
        assert all(p.device == net.fc.weight.device for m in scorers for p in m.parameters())


def test_ceil_mode_pools_are_converted_by_make_shift_invariant():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
                        nn.AvgPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double().eval()
    report = make_shift_invariant(net)
    assert [c.name for c in report] == ["0", "1", "2"] and not report.skipped
    assert _invariant(net, (2, 13, 13)) <= 1e-9


def test_surgery_on_the_meta_device():
    with torch.device("meta"):
        net = TinyResNet()
    for method in ("aps", "lps"):
        report = make_shift_invariant(copy.deepcopy(net), method)
        assert report.tied == [("layer2.conv1", "layer2.downsample.0")]
    assert antialias(copy.deepcopy(net))


# ---------------------------------------------------------------- output sizes and small maps


def _repro() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(900, 10))


def test_make_shift_invariant_says_when_an_output_size_changes():
    net = _repro()
    report = make_shift_invariant(net, method="aps")
    assert "ceil(n/2) instead of floor((n-3)/2)+1" in report[0].note
    assert "Linear after Flatten" in report[0].note and "note: output size" in report.text()
    pool = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d(1))
    change = {c.name: c for c in make_shift_invariant(pool)}["1"]
    assert "ceil(n/2) instead of floor((n-3)/2)+1" in change.note
    # "same"-padded strided layers keep their size: no note
    same = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 1, 2), nn.AvgPool2d(1, 2))
    assert [c.note for c in make_shift_invariant(same)] == ["", "", "", ""]


def test_make_shift_invariant_example_input_names_the_failure():
    net = _repro()
    x = torch.rand(2, 3, 32, 32)
    assert net(x).shape == (2, 10)
    with pytest.warns(UserWarning, match="mat1 and mat2"):
        report = make_shift_invariant(net, method="aps", example_input=x)
    assert [f.name for f in report.failures] == ["3"] and "mat1 and mat2" in report.failures[0].reason
    assert "on example_input: (15, 15) -> (16, 16)" in report[0].note
    assert "FAILS on the example input" in report.text()
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        net(x)  # what the report announced
    # a model without a size-bound layer: the output shape change is reported
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.MaxPool2d(3, 2))
    with pytest.warns(UserWarning, match="output shape"):
        report = make_shift_invariant(conv, example_input=x)
    assert report.failures[0].reason == "output shape (2, 4, 7, 7) before surgery, (2, 4, 8, 8) after"
    assert "on example_input: (7, 7) -> (8, 8)" in report[1].note


def test_example_input_is_checked_and_the_dry_run_leaves_no_trace():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    stats = net[1].running_mean.clone()
    with pytest.raises(TypeError, match="example_input"):
        make_shift_invariant(net, example_input=[1, 2])
    with pytest.raises(ValueError, match="example_input: the model fails on it before surgery"):
        make_shift_invariant(net, example_input=torch.rand(1, 5, 8, 8))
    assert net[0].stride == (2, 2)  # untouched
    with warnings_as_errors():
        report = make_shift_invariant(net, example_input=torch.rand(2, 3, 9, 9))
    assert report.failures == [] and net.training and net[1].training
    assert torch.equal(net[1].running_mean, stats)  # the dry runs ran in eval mode


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@pytest.mark.parametrize("kind", ["conv", "max", "avg"])
def test_size_notes_match_the_real_sizes(kind):
    """Every note's example holds for the torch layer and the converted one; no note where no size changes."""
    for k, s, p, dil, ceil in itertools.product((1, 2, 3, 4), (2, 3), (0, 1, 2), (1, 2), (False, True)):
        if 2 * p > k or (kind != "max" and dil > 1) or (kind == "conv" and ceil):
            continue
        if kind == "conv":
            layer: nn.Module = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=dil)
        elif kind == "max":
            layer = nn.MaxPool1d(k, s, p, dilation=dil, ceil_mode=ceil)
        else:
            layer = nn.AvgPool1d(k, s, p, ceil_mode=ceil)
        net = nn.Sequential(copy.deepcopy(layer))
        note = make_shift_invariant(net)[0].note
        differs = []
        for n in range(max(dil * (k - 1) + 1 - 2 * p, 1), 40):
            x = torch.rand(1, 1, n)
            old, new = layer(x).shape[-1], -(-n // s)
            if n >= dil * (k - 1):  # a circular pad wider than the map is refused by torch
                assert net(x).shape[-1] == new
            if old != new:
                differs.append((n, new, old))
        assert bool(note) == bool(differs), (layer, note, differs)
        if note:
            ex = note.split("(e.g. ")[1].split(")")[0]
            n, _, new, _, _, old = ex.split()
            x = torch.rand(1, 1, int(n))
            assert (layer(x).shape[-1], net(x).shape[-1]) == (int(old), int(new)), (layer, note)


def test_antialias_replicates_where_a_map_is_too_small_to_reflect():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2))
    ref = copy.deepcopy(net)
    report = antialias(net)
    assert all("replicates it on maps of 2 or fewer" in c.note for c in report if c.name != "0")
    for size in (8, 9, 16, 32, 33):  # 8 and 9: the avg pool's blur sees 2x2 (odd sizes before it: see the note)
        x = torch.rand(2, 3, size, size)
        assert net(x).shape == ref(x).shape
    wrapped, plain = net[2], pnn.MaxBlurPool2d(2, 2, filt=4)
    assert isinstance(wrapped, pnn.MaxBlurPool2d) and wrapped.blur_padding_mode == "reflect"
    assert "replicate on maps of 2 or fewer cells" in repr(wrapped)
    x = torch.rand(2, 4, 16, 16)
    assert torch.equal(wrapped(x), plain(x))  # large maps: exactly the reflect-padded pool
    small = torch.rand(2, 4, 3, 3)  # the dense max gives 2x2: too small for filt=4 to reflect
    with pytest.raises(ValueError, match="reflect"):
        plain(small)
    replicate = pnn.MaxBlurPool2d(2, 2, filt=4, blur_padding_mode="replicate")
    assert torch.equal(wrapped(small), replicate(small))
    assert not wrapped.falls_back((4, 4)) and wrapped.falls_back((3, 3))
    blur = net[3]  # AvgPool2d(2) -> blurpool: its blur sees the input itself
    assert isinstance(blur, pnn.BlurPool2d) and blur.falls_back((2, 5)) and not blur.falls_back((3, 3))
    restored = pickle.loads(pickle.dumps(net))  # the classes are importable: whole-model torch.save works
    assert torch.equal(restored(torch.rand(1, 3, 8, 8).mul(0).add(1)), net(torch.ones(1, 3, 8, 8)))


def test_antialias_example_input_says_which_blurs_replicate_and_avg_size_changes():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    x = torch.rand(1, 3, 9, 9)  # 9 -> 5 -> 2 (AvgPool2d(2)); blurpool gives 3
    assert net(x).shape == (1, 3)
    with pytest.warns(UserWarning, match="mat1 and mat2"):
        report = antialias(net, example_input=x)
    notes = {c.name: c.note for c in report}
    assert "1.1 blurs (9, 9): reflects" in notes["1"]  # the conv runs at stride 1, the blur after the ReLU
    assert "ceil(n/2) instead of floor((n-2)/2)+1" in notes["2"] and "(2, 2) -> (3, 3)" in notes["2"]
    assert [f.name for f in report.failures] == ["4"]
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    report = antialias(net, example_input=torch.rand(1, 3, 2, 2))
    assert "blurs (2, 2): replicates" in report[1].note and report.failures == []


def test_audit_fix_names_the_size_change_and_the_failing_layer():
    audit = pytest.importorskip("poolkit.lab.audit")
    with pytest.raises(ValueError, match="mat1 and mat2") as err:
        audit.audit(_repro(), (3, 32, 32), n_samples=4, n_profile=2, fix="aps")
    text = str(err.value)
    assert "note: output size per axis: ceil(n/2)" in text and "(15, 15) -> (16, 16)" in text
    result = audit.audit(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                         (3, 15, 15), n_samples=4, n_profile=2, fix="aps")
    assert "note: output size" in result.table() and result.changes.failures == []

"""Profile: per-layer numbers in one forward pass, consistent with the standalone metrics."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
from _measure_nets import LocalAPS, circ_conv
from torch import nn

from poolkit.measure import Profile, equivariance, invariance, profile

matplotlib.use("Agg")

SHIFTS = [(1, 0), (0, 2), (2, 2), (3, 1)]


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        circ_conv(2, 3, 4), nn.ReLU(), nn.MaxPool2d(2), circ_conv(2, 4, 6), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    ).double()


def x2() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_profile_frame_and_exact_layers():
    p = profile(cnn(), x2(), SHIFTS)
    assert isinstance(p, Profile) and len(p) == 9  # input + 8 leaves
    df = p.to_frame()
    for col in ("layer", "depth", "type", "shape", "stride", "invariance", "equivariance"):
        assert col in df.columns
    assert df["layer"].tolist() == ["input", "0", "1", "2", "3", "4", "5", "6", "7"]
    assert df["depth"].tolist() == list(range(9))
    assert df["type"].tolist()[1:4] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert df["shape"][3] == (4, 4, 4)
    assert df["stride"].tolist()[:7] == ["1x1", "1x1", "1x1", "2x2", "2x2", "2x2", "8x8"]
    eq = df.set_index("layer")["equivariance"]
    assert eq["input"] == 0 and eq["0"] < 1e-12 and eq["1"] < 1e-12
    # stride-2 max pool: exact only on the commensurate shifts (0, 2) and (2, 2)
    pool = p["2"].equivariance
    assert pool.commensurate == [False, True, True, False]
    assert max(pool.per_shift[1], pool.per_shift[2]) < 1e-12 < min(pool.per_shift[0], pool.per_shift[3])
    assert df.set_index("layer")["equivariance_commensurate"]["2"] < 1e-12
    inv = df.set_index("layer")["invariance"]
    assert inv["input"] > 0.5 and inv["0"] > 0.3
    assert math.isnan(eq["6"]) and p["6"].stride is None  # flatten: no spatial axes


def test_profile_matches_standalone_metrics():
    net = cnn()
    x = x2()
    p = profile(net, x, SHIFTS)
    prefix = net[:3]
    torch.testing.assert_close(p["2"].invariance.per_sample, invariance(prefix, x, SHIFTS).per_sample)
    torch.testing.assert_close(p["2"].equivariance.per_sample, equivariance(prefix, x, SHIFTS).per_sample)
    torch.testing.assert_close(p["7"].invariance.per_sample, invariance(net, x, SHIFTS).per_sample)


def test_aps_profile_gains_exact_invariance_at_the_global_pool():
    torch.manual_seed(0)
    net = nn.Sequential(circ_conv(2, 3, 4), LocalAPS(), circ_conv(2, 4, 4), LocalAPS(), nn.AdaptiveAvgPool2d(1))
    net = net.double()
    p = profile(net, x2(), SHIFTS)
    assert p["4"].invariance.mean < 1e-12
    assert p["1"].invariance.mean > 0.1


def test_one_forward_pass_and_hooks_removed():
    net = cnn()
    calls = []
    net.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    profile(net, x2(), SHIFTS)
    assert calls == [3 * (len(SHIFTS) + 1)]
    assert all(not m._forward_hooks for m in net)


@pytest.mark.parametrize(
    "layers,names",
    [
        ("2", ["input", "2", "output"]),
        ("7", ["input", "7"]),
        (["0", "5"], ["input", "0", "5", "output"]),
        ("[0-2]", ["input", "0", "1", "2", "output"]),
        (nn.MaxPool2d, ["input", "2", "output"]),
    ],
)
def test_layer_selection(layers, names):
    p = profile(cnn(), x2(), SHIFTS, layers=layers)
    # the model output gets its own row only when it is not the last measured layer's output
    assert [lp.name for lp in p] == names


def test_layer_selection_by_module_and_errors():
    net = cnn()
    p = profile(net, x2(), SHIFTS, layers=[net[3]], include_input=False)
    assert [lp.name for lp in p] == ["3", "output"] and p[0].depth == 1
    with pytest.raises(ValueError, match="matches no module"):
        profile(net, x2(), SHIFTS, layers="nope")
    with pytest.raises(TypeError, match="layers entries"):
        profile(net, x2(), SHIFTS, layers=[3])
    with pytest.raises(TypeError, match=r"nn\.Module"):
        profile(lambda t: t, x2(), SHIFTS)


def test_reused_module_gets_one_row_per_call():
    torch.manual_seed(0)
    conv = circ_conv(1, 2, 2).double()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(torch.relu(self.conv(x)))

    p = profile(Twice(), torch.randn(2, 2, 12, dtype=torch.float64), [1, 5])
    assert [lp.name for lp in p] == ["input", "conv", "conv[1]"]
    assert p["conv[1]"].equivariance.mean < 1e-12


def test_per_shift_frame_and_crop_mode():
    p = profile(cnn(), x2(), SHIFTS)
    long = p.to_frame(per_shift=True)
    assert len(long) == len(p) * len(SHIFTS)
    assert {"shift", "invariance", "equivariance", "commensurate"} <= set(long.columns)
    torch.manual_seed(0)
    valid = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv1d(3, 3, 3)).double()
    pc = profile(valid, torch.randn(2, 2, 20, dtype=torch.float64), [1, -2], mode="crop")
    assert pc["0"].shape == (3, 15) and pc["1"].equivariance.mean < 1e-12


def test_plot_is_a_readable_figure():
    p = profile(cnn(), x2(), SHIFTS)
    fig = p.plot()
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # invariance, equivariance, equivariance on commensurate shifts
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:3] == ["input", "0 Conv2d", "1 ReLU"] and len(labels) == len(p)
    assert "invariance" in ax.get_legend().get_texts()[0].get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)
    fig2, ax2 = plt.subplots()
    assert p.plot(ax=ax2) is fig2
    plt.close(fig2)


@pytest.mark.parametrize("d", [1, 3])
def test_profile_in_1d_and_3d(d):
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[d]
    pool = {1: nn.MaxPool1d, 3: nn.MaxPool3d}[d]
    torch.manual_seed(0)
    net = nn.Sequential(conv(1, 2, 3, padding=1, padding_mode="circular"), pool(2)).double()
    x = torch.randn((2, 1) + (8,) * d, dtype=torch.float64)
    p = profile(net, x, [2, 1])
    assert p["0"].equivariance.mean < 1e-12
    assert p["1"].stride == (2.0,) * d and p["1"].equivariance.commensurate == [True, False]


def test_profile_subpixel_false_keeps_commensurate_numbers():
    full = profile(cnn(), x2(), SHIFTS)
    fast = profile(cnn(), x2(), SHIFTS, subpixel=False)
    for a, b in zip(full, fast):
        torch.testing.assert_close(a.invariance.per_sample, b.invariance.per_sample)
        if a.equivariance is not None:
            keep = torch.tensor(a.equivariance.commensurate)
            torch.testing.assert_close(a.equivariance.per_sample[keep], b.equivariance.per_sample[keep])
            assert torch.isnan(b.equivariance.per_sample[~keep]).all()


@pytest.mark.parametrize("mode", ["circular", "crop"])
def test_chunked_profile_equals_one_pass(mode):
    torch.manual_seed(0)
    net = nn.Sequential(circ_conv(2, 3, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2), circ_conv(2, 4, 4),
                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    shifts = [*SHIFTS, (-1, -2)]
    calls = []
    net.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    one = profile(net, x, shifts, mode=mode)
    calls.clear()
    chunked = profile(net, x, shifts, mode=mode, chunk=2)
    assert calls == [3, 6, 6, 3]  # x, then 2 + 2 + 1 shifts
    assert [lp.name for lp in one] == [lp.name for lp in chunked]
    for a, b in zip(one, chunked):
        torch.testing.assert_close(a.invariance.per_sample, b.invariance.per_sample)
        assert (a.equivariance is None) == (b.equivariance is None)
        if a.equivariance is not None:
            torch.testing.assert_close(a.equivariance.per_sample, b.equivariance.per_sample, equal_nan=True)
            assert a.equivariance.commensurate == b.equivariance.commensurate
    with pytest.raises(ValueError, match="chunk"):
        profile(net, x, shifts, chunk=0)

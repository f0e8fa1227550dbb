import itertools
import math

import pytest
import torch

import poolkit
from poolkit.lab.lever import check_lever, head_positions, pool_schedule
from poolkit.lab.models import LeverNet


@pytest.mark.parametrize("spatial", [(40,), (24, 24), (32, 17)])
def test_head_size_shrinks_monotonically_with_lever(spatial):
    sizes = [math.prod(pool_schedule(spatial, lv, blocks=2).head_size) for lv in (0, 0.25, 0.5, 0.75, 1)]
    assert sizes[0] == math.prod(spatial)
    assert sizes[-1] == 1
    assert all(a >= b for a, b in itertools.pairwise(sizes))


def test_schedule_kernels_reach_head_size():
    s = pool_schedule((40,), 0.5, blocks=2)
    n = 40
    for (k,) in s.kernels:
        n //= k
    assert (n,) == s.head_size == (6,)
    assert not s.global_pool
    full = pool_schedule((40,), 1.0, blocks=3)
    assert full.global_pool and full.kernels == [(1,)] * 3


def test_head_positions_interpolates_geometrically():
    assert head_positions(100, 0) == 100
    assert head_positions(100, 0.5) == 10
    assert head_positions(100, 1) == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_lever_refused(bad):
    with pytest.raises(ValueError, match="lever"):
        check_lever(bad)
    with pytest.raises(TypeError, match="lever"):
        check_lever("0.5")


def test_conv_stack_identical_for_every_lever():
    shapes = None
    for lv in (0, 0.3, 0.7, 1):
        net = LeverNet(1, 10, (24, 24), lv, pool="max", channels=6)
        conv = [tuple(p.shape) for n, p in net.body.named_parameters()]
        shapes = shapes or conv
        assert conv == shapes


def test_head_parameters_fall_with_lever():
    counts = [LeverNet(1, 10, (40,), lv, pool="avg", channels=8).head_parameters() for lv in (0, 0.5, 1)]
    assert counts == [8 * 40 * 10 + 10, 8 * 6 * 10 + 10, 8 * 10 + 10]


@pytest.mark.parametrize("spatial,shift", [((40,), (7,)), ((24, 24), (5, -3))])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_global_pooling_with_circular_padding_is_exactly_invariant(spatial, shift, pool):
    torch.manual_seed(0)
    net = LeverNet(2, 5, spatial, 1.0, pool=pool, padding_mode="circular", channels=6).eval()
    x = torch.randn(3, 2, *spatial)
    dims = tuple(range(2, 2 + len(spatial)))
    with torch.no_grad():
        a, b = net.features(x), net.features(torch.roll(x, shift, dims))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_no_pooling_is_equivariant_with_circular_padding():
    torch.manual_seed(0)
    net = LeverNet(1, 5, (32,), 0.0, padding_mode="circular", channels=4).eval()
    x = torch.randn(2, 1, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.features(torch.roll(x, 3, 2)), torch.roll(net.features(x), 3, 2))


def test_zero_padding_global_pool_is_not_exactly_invariant():
    torch.manual_seed(0)
    net = LeverNet(1, 5, (40,), 1.0, pool="max", padding_mode="zeros", channels=6).eval()
    x = torch.randn(4, 1, 40)
    with torch.no_grad():
        d = (net.features(x) - net.features(torch.roll(x, 5, 2))).abs().max()
    assert d > 1e-4  # the borders leak position: what Kayhan & van Gemert exploit


def test_lever_zero_records_no_pool_and_bad_args_refused():
    assert LeverNet(1, 3, (16,), 0.0, pool="max").pool_spec == "none"
    with pytest.raises(ValueError, match="padding_mode"):
        LeverNet(1, 3, (16,), 0.5, padding_mode="reflect")
    with pytest.raises(ValueError, match="spatial"):
        LeverNet(1, 3, (8, 8, 8, 8), 0.5)  # 3-D is accepted, 4-D is not
    with pytest.raises(ValueError, match="unknown pool"):
        LeverNet(1, 3, (16,), 0.5, pool="nosuchpool")


@pytest.mark.parametrize("pool", poolkit.list_pools())
@pytest.mark.parametrize("dim", [1, 2])
def test_every_registered_pool_fits_the_lever(pool, dim):
    """Any statistic can sit on the lever: channel-changing (multistat) and size-rounding (aps) ones too."""
    from poolkit.lab.models import LeverNet

    spatial = (24,) * dim
    for lever in (0.5, 1.0):
        net = LeverNet(2, 3, spatial, lever=lever, pool=pool, channels=4).eval()
        with torch.no_grad():
            out = net(torch.rand(2, 2, *spatial))
        assert out.shape == (2, 3) and torch.isfinite(out).all(), (pool, lever)
        assert net.features(torch.rand(1, 2, *spatial)).shape[2:] == net.head_size


def test_levernet_takes_3d_data():
    net = LeverNet(2, 3, (8, 8, 8), 0.5, pool="max", channels=4)
    assert net.head_size == (4, 4, 4)  # target round(8 ** 0.5) = 3, reached by one 2x pool
    assert net(torch.rand(2, 2, 8, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("spatial,shift", [((40,), (7,)), ((24, 24), (5, -3)), ((6, 8, 8), (1, 2, -3))])
def test_batch_norm_blocks_keep_the_exact_invariance_in_eval(spatial, shift):
    torch.manual_seed(0)
    net = LeverNet(2, 5, spatial, 1.0, pool="max", padding_mode="circular", channels=6, norm="batch")
    norms = [m for m in net.body if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 2 and all(m.num_features == 6 and m.weight.dim() == 1 for m in norms)
    kinds = [type(m).__name__ for m in net.body]
    assert kinds[:3] == [f"Conv{len(spatial)}d", f"BatchNorm{len(spatial)}d", "ReLU"]  # conv, norm, ReLU
    x = torch.randn(4, 2, *spatial)
    net.train()
    net(x).sum().backward()  # training updates the running statistics, which eval then uses
    assert not torch.equal(norms[0].running_mean, torch.zeros(6))
    net.eval()
    dims = tuple(range(2, 2 + len(spatial)))
    with torch.no_grad():
        a, b = net.features(x), net.features(torch.roll(x, shift, dims))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert "norm='batch'" in repr(net) and "norm" not in repr(LeverNet(1, 3, (16,), 0.5))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in LeverNet(1, 3, (16,), 0.5).body)
    with pytest.raises(ValueError, match=r"norm must be one of \('none', 'batch'\), got 'layer'"):
        LeverNet(1, 3, (16,), 0.5, norm="layer")

"""The registry and the create_pool factory."""

from __future__ import annotations

import math

import pytest
import torch

import poolkit
from poolkit.registry import parse_spec


def test_list_pools_is_sorted_and_unique():
    names = poolkit.list_pools()
    assert names == sorted(set(names))
    assert {"max", "min", "avg"} <= set(names)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("max", ("max", {})),
        ("lp:p=4", ("lp", {"p": 4})),
        ("LSE:beta=10.5", ("lse", {"beta": 10.5})),
        ("mixed:alpha=0.3,learnable=true", ("mixed", {"alpha": 0.3, "learnable": True})),
        ("lp:p=inf", ("lp", {"p": math.inf})),
        ("multistat:stats=max+range", ("multistat", {"stats": "max+range"})),
        ("x:a=none, b=False", ("x", {"a": None, "b": False})),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("bad", ["", "   ", "max:p", "max:=3"])
def test_parse_spec_refuses_malformed(bad):
    with pytest.raises(ValueError, match="spec"):
        parse_spec(bad)


def test_unknown_name_lists_accepted_names():
    with pytest.raises(ValueError, match="accepted: .*max"):
        poolkit.create_pool("no-such-pool", dim=2)


def test_unknown_parameter_lists_accepted_parameters():
    with pytest.raises(ValueError, match="accepted: .*kernel_size"):
        poolkit.create_pool("max:frobnicate=1", dim=2)


@pytest.mark.parametrize("dim", [0, 4, "2"])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        poolkit.create_pool("max", dim=dim)


def test_factory_geometry_and_kwargs():
    pool = poolkit.create_pool("max:ceil_mode=true", dim=1, kernel_size=3, stride=2)
    assert isinstance(pool, poolkit.nn.MaxPool1d)
    assert pool(torch.rand(1, 2, 8)).shape == (1, 2, 4)


# window pools: a spec's kernel_size=3,stride=1 must give a 7x7 output on a 9x9 input
_WINDOW = ("adaptive_mle", "avg", "fractional_max", "gated", "gem", "lp", "lse", "max", "maxblur", "median", "min",
           "mixed", "mle", "multistat", "range", "softpool", "stochastic", "topk")


@pytest.mark.parametrize("name", poolkit.list_pools())
def test_spec_kernel_size_and_stride_are_honoured(name):
    if name == "diffstride":  # no window: kernel_size is another name of its initial stride
        with pytest.raises(ValueError, match="kernel_size.*stride"):
            poolkit.create_pool(f"{name}:kernel_size=3,stride=1", dim=2, channels=4)
        with pytest.raises(ValueError, match="kernel_size.*stride"):
            poolkit.create_pool(name, dim=2, kernel_size=3, stride=2)
        assert poolkit.create_pool(f"{name}:stride=3", dim=2).strides() == [3.0, 3.0]
        return
    m = poolkit.create_pool(f"{name}:kernel_size=3,stride=1", dim=2, channels=4).eval()
    assert m.kernel_size == 3
    assert (m.mean_stride if name == "fractional_max" else m.stride) == 1
    if name in _WINDOW:
        y = m(torch.rand(2, 4, 9, 9))
        y = y[0] if isinstance(y, tuple) else y
        assert tuple(y.shape[2:]) == (7, 7)


def test_spec_builds_what_it_says_against_torch():
    x = torch.randn(2, 3, 11, 10)
    F = torch.nn.functional
    torch.testing.assert_close(poolkit.create_pool("max:kernel_size=3", dim=2)(x), F.max_pool2d(x, 3), rtol=0, atol=0)
    torch.testing.assert_close(poolkit.create_pool("max:kernel_size=3,stride=1,padding=1", dim=2)(x),
                               F.max_pool2d(x, 3, 1, 1), rtol=0, atol=0)
    torch.testing.assert_close(poolkit.create_pool("avg:kernel_size=3,stride=2,padding=1,count_include_pad=false",
                                                   dim=2)(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    xp = x.abs() + 0.1
    for spec in ("lp:p=3,kernel_size=3", "lp:norm_type=3,kernel_size=3"):
        torch.testing.assert_close(poolkit.create_pool(spec, dim=2)(xp), torch.nn.LPPool2d(3, 3)(xp))


def test_spec_repeating_an_argument_is_fine():
    assert poolkit.create_pool("max:kernel_size=3", dim=2, kernel_size=3).kernel_size == 3
    assert poolkit.create_pool("max:kernel_size=3", dim=2, kernel_size=(3, 3)).kernel_size == (3, 3)
    assert poolkit.create_pool("lp:p=4", dim=1, norm_type=4.0).norm_type == 4.0


@pytest.mark.parametrize(
    ("spec", "kw", "names"),
    [
        ("max:kernel_size=3", dict(kernel_size=2), ("kernel_size=3", "kernel_size=2")),
        ("max:stride=1", dict(stride=2), ("stride=1", "stride=2")),
        ("avg:stride=1", dict(kernel_size=2, stride=(1, 2)), ("stride=1", "stride=(1, 2)")),
        ("max:ceil_mode=false", dict(ceil_mode=True), ("ceil_mode=False", "ceil_mode=True")),
        ("lse:beta=2", dict(beta=3.0), ("beta=2", "beta=3.0")),
        ("lp:p=3", dict(norm_type=2), ("norm_type=3", "norm_type=2")),
        ("lp:p=3,norm_type=2", {}, ("p=3", "norm_type=2")),
    ],
)
def test_spec_contradicting_an_argument_names_both(spec, kw, names):
    with pytest.raises(ValueError) as err:
        poolkit.create_pool(spec, dim=2, **kw)
    for n in names:
        assert n in str(err.value)


def test_spec_parameter_a_pool_does_not_take_is_refused():
    with pytest.raises(ValueError, match="dilation"):
        poolkit.create_pool("avg:dilation=2", dim=2)
    with pytest.raises(ValueError, match="unknown parameter.*padding"):
        poolkit.create_pool("blurpool", dim=2, padding=3)  # not a blurpool parameter: refused, not dropped


def test_factory_output_size_gives_adaptive_form():
    pool = poolkit.create_pool("avg", dim=2, output_size=1)
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(pool(x), x.mean(dim=(2, 3), keepdim=True))


def test_channels_is_accepted_by_every_pool():
    for name in poolkit.list_pools():
        assert isinstance(poolkit.create_pool(name, dim=1, kernel_size=2, channels=3), torch.nn.Module)


def test_meta_device_construction_and_forward():
    pool = poolkit.create_pool("max", dim=2, kernel_size=2)
    y = pool(torch.empty(2, 3, 8, 8, device="meta"))
    assert y.shape == (2, 3, 4, 4) and y.device.type == "meta"

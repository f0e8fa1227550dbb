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


def test_factory_geometry_and_kwargs_override_spec():
    pool = poolkit.create_pool("max:ceil_mode=false", dim=1, kernel_size=3, stride=2, ceil_mode=True)
    assert isinstance(pool, poolkit.nn.MaxPool1d)
    assert pool(torch.rand(1, 2, 8)).shape == (1, 2, 4)


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

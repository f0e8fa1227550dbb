"""Window geometry: argument resolution, validation, padding, windows and adaptive bounds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from poolkit.functional import _window as W


def _x(*spatial):
    return torch.rand((1, 1, *spatial))


@given(
    n=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 5), d=st.integers(1, 3),
    ceil=st.booleans(), p=st.integers(0, 3),
)
@settings(max_examples=200, deadline=None)
def test_output_size_matches_torch(n, k, s, d, ceil, p):
    e = d * (k - 1) + 1
    if p > k // 2 or n + 2 * p < e:
        return
    win = W.resolve(_x(n), k, s, p, d, ceil)
    ref = F.max_pool1d(torch.zeros(1, 1, n), k, s, p, d, ceil_mode=ceil).shape[-1]
    assert win.out == (ref,)


@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 5))
@settings(max_examples=200, deadline=None)
def test_same_padding_gives_ceil_size(n, k, s):
    if n + max((math.ceil(n / s) - 1) * s + k - n, 0) < k:
        return
    win = W.resolve(_x(n), k, s, "same")
    assert win.out == (math.ceil(n / s),)
    (a, b), = win.pad
    assert 0 <= b - a <= 1


def test_valid_padding_is_zero():
    assert W.resolve(_x(9, 9), 3, 2, "valid").pad == ((0, 0), (0, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": (2, 2, 2)}, "kernel_size"),
        ({"kernel_size": 2, "stride": -1}, "stride"),
        ({"kernel_size": 2, "dilation": 0}, "dilation"),
        ({"kernel_size": 2, "padding": 2}, "padding"),
        ({"kernel_size": 2, "padding": "full"}, "padding"),
        ({"kernel_size": 12}, "larger"),
        ({"kernel_size": True}, "kernel_size"),
    ],
)
def test_resolve_refuses_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        W.resolve(_x(8, 8), **kwargs)


def test_check_input():
    assert W.check_input(torch.rand(2, 3, 4)) == 1
    assert W.check_input(torch.rand(2, 3, 4, 4, 4)) == 3
    with pytest.raises(ValueError, match="input"):
        W.check_input(torch.rand(2, 3))
    with pytest.raises(ValueError, match="4 dims"):
        W.check_input(torch.rand(2, 3, 4), dims=2)
    with pytest.raises(ValueError, match="empty"):
        W.check_input(torch.rand(2, 3, 0))
    with pytest.raises(TypeError, match="dtype"):
        W.check_input(torch.ones(2, 3, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="Tensor"):
        W.check_input([1.0])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes_match_f_pad(mode):
    x = torch.rand(2, 3, 6, 7)
    win = W.resolve(x, 3, 1, 1)
    torch.testing.assert_close(W.pad(x, win, mode), F.pad(x, (1, 1, 1, 1), mode=mode))


def test_pad_zeros_uses_value_and_overhang():
    x = torch.rand(1, 1, 5)
    win = W.resolve(x, 2, 2, 0, 1, True)  # ceil_mode: the last window hangs one cell past the end
    assert win.overhang == (1,)
    y = W.pad(x, win, "zeros", value=-math.inf, extra=True)
    assert y.shape[-1] == 6 and y[0, 0, -1] == -math.inf


def test_reflect_padding_larger_than_input_is_refused():
    x = torch.rand(1, 1, 2)
    win = W.resolve(x, 5, 1, 2)
    with pytest.raises(ValueError, match="reflect"):
        W.pad(x, win, "reflect")


def test_windows_is_a_view_with_window_contents():
    x = torch.arange(2 * 3 * 7 * 6, dtype=torch.float32).view(2, 3, 7, 6)
    win = W.resolve(x, (3, 2), (2, 2), 0, (1, 2))
    w = W.windows(x, win)
    assert w.shape == (2, 3, *win.out, 3, 2)
    assert w.data_ptr() == x.data_ptr()  # a strided view, no copy
    torch.testing.assert_close(w.amax(dim=(-2, -1)), F.max_pool2d(x, (3, 2), 2, 0, (1, 2)))


@pytest.mark.parametrize(("n", "o"), [(7, 3), (10, 4), (5, 5), (3, 7), (8, 1)])
def test_adaptive_windows_match_torch(n, o):
    x = torch.rand(2, 3, n, n + 1)
    w = W.adaptive_windows(x, (o, o), fill=-math.inf)
    torch.testing.assert_close(w.amax(dim=(-2, -1)), F.adaptive_max_pool2d(x, o))


def test_resolve_output_size():
    x = torch.rand(1, 1, 6, 8)
    assert W.resolve_output_size(x, 2) == (2, 2)
    assert W.resolve_output_size(x, (None, 3)) == (6, 3)
    for bad in (0, (1, 2, 3), "big", (1, -1), True):
        with pytest.raises((ValueError, TypeError), match="output_size"):
            W.resolve_output_size(x, bad)


def test_check_args_validates_before_input():
    with pytest.raises(TypeError, match="kernel_size is required"):
        W.check_args(2, None)
    with pytest.raises(ValueError, match="padding_mode"):
        W.check_args(2, 2, padding_mode="edge")
    W.check_args(3, None, output_size=(1, None, 2))


def test_resolved_windows_are_reused_but_still_validated():
    x = torch.rand(1, 2, 9, 9)
    W._RESOLVED.clear()
    first = W.resolve(x, 3, 2, 1)
    assert W.resolve(x, 3, 2, 1) is first  # looked up, not recomputed
    assert W.resolve(x, [3, 3], 2, 1) == first
    assert W.resolve(torch.rand(4, 5, 9, 9), 3, 2, 1) is first  # batch and channels do not matter
    assert W.resolve(x[..., :8], 3, 2, 1) != first  # another spatial size
    W.resolve(x, 1)
    with pytest.raises(TypeError, match="kernel_size"):
        W.resolve(x, True)  # equal to 1 and hashed alike, yet refused
    with pytest.raises(ValueError, match="kernel_size"):
        W.resolve(x, (True, 1))
    with pytest.raises(ValueError, match="larger than the padded input"):
        W.resolve(x, 11)
    with pytest.raises(ValueError, match="larger than the padded input"):
        W.resolve(x, 11)  # errors are not cached away


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(("k", "s", "p", "ceil"),
                         [(3, 2, 1, False), (3, 2, 1, True), (2, 2, 0, True), (3, 1, 1, False)])
def test_window_source_counts_the_input_cells_of_each_window(dim, k, s, p, ceil):
    """``count`` (input cells per window) is the zero-padded sum of ones; ``valid`` marks them cell by cell."""
    x = torch.rand((2, 3) + (7,) * dim, dtype=torch.float64)
    src, views, valid, count = W.window_source(x, k, s, p, 1, ceil, "zeros", None, fill=float("inf"))
    ones = torch.ones((1, 1) + (7,) * dim, dtype=torch.float64)
    if dim == 1:  # avg_pool1d has no divisor_override: pool the 1-d map as a 2-d one of height 1
        expect = F.avg_pool2d(ones.unsqueeze(-2), (1, k), (1, s), (0, p), ceil, False, 1).squeeze(-2)
    else:
        expect = getattr(F, f"avg_pool{dim}d")(ones, k, s, p, ceil, False, 1)  # the sum over input cells
    w = views.view(src)
    assert w.shape[2:2 + dim] == W.resolve(x, k, s, p, 1, ceil).out
    if p or (ceil and any(W.resolve(x, k, s, p, 1, ceil).overhang)):
        assert valid is not None and count is not None
        assert torch.equal(valid.flatten(-dim).sum(-1).double(), count.double())
        assert torch.isinf(w[~valid.expand_as(w)]).all() and torch.isfinite(w[valid.expand_as(w)]).all()
        torch.testing.assert_close(count.double(), expect)
    else:
        assert valid is None and count is None

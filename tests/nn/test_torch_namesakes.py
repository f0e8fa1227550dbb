"""Every ``poolkit.nn`` class with a torch namesake is a drop-in: built from torch's positional arguments,
it returns torch's values, indices, dtype, device and memory layout (strides), and torch's input gradient,
in train and eval, with grad, under ``no_grad`` and under ``inference_mode``, for contiguous,
channels-last and non-contiguous input.

Runs on ``pytest --device cuda`` too (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import poolkit.nn as pnn

SHAPES = {1: (2, 3, 11), 2: (2, 3, 9, 10), 3: (2, 3, 7, 6, 5)}

# torch's positional arguments, per namesake family (the same tuple builds both modules)
ARGS = {
    "MaxPool": [(3,), (3, 2), (3, 2, 1), (2, 1, 0, 2), (3, 2, 1, 1, False, True), (2, None, 0, 1, True),
                (3, 2, 1, 2, True, True)],
    "AvgPool": [(3,), (3, 2), (3, 2, 1), (3, 2, 1, True), (3, 2, 1, False, False), (2, 1, 1, True, True),
                (3, 2, 1, True, False)],
    "AvgPool+divisor": [(3, 2, 1, False, True, 5), (2, None, 0, True, False, 3)],
    "LPPool": [(2, 3), (2.0, 3, 2), (3.0, 2, 1), (1, 3, 2, True), (4.5, 2, None, True)],
    "AdaptiveMaxPool": [(3,), (1,), (4, True)],
    "AdaptiveAvgPool": [(3,), (1,), (4,)],
    "FractionalMaxPool": [(2, None, 0.5), (2, 3), (3, None, 0.5, True)],
}
FAMILY_DIMS = {"MaxPool": (1, 2, 3), "AvgPool": (1, 2, 3), "AvgPool+divisor": (2, 3), "LPPool": (1, 2, 3),
               "AdaptiveMaxPool": (1, 2, 3), "AdaptiveAvgPool": (1, 2, 3), "FractionalMaxPool": (2, 3)}
CASES = [(fam, d, args) for fam, arglist in ARGS.items() for d in FAMILY_DIMS[fam] for args in arglist]
LAYOUTS = ("contiguous", "channels_last", "view")
MODES = ("train", "eval")


def _ids(case):
    fam, d, args = case
    return f"{fam}{d}d{args}".replace(" ", "")


def _classes(fam: str, d: int) -> tuple[type, type]:
    base = fam.split("+")[0]
    return getattr(pnn, f"{base}{d}d"), getattr(nn, f"{base}{d}d")


def _input(d: int, layout: str, device: torch.device, dtype=torch.float32, seed: int = 0,
           positive: bool = False) -> torch.Tensor:
    """Signed normal input in ``layout``; ``positive``: |x| + 0.1 in the same layout."""
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[d]
    if layout == "contiguous":
        x = torch.randn(shape, generator=g, dtype=dtype)
    elif layout == "channels_last":  # channels innermost: (N, *spatial, C) seen as (N, C, *spatial)
        x = torch.randn((shape[0], *shape[2:], shape[1]), generator=g, dtype=dtype).movedim(-1, 1)
    else:  # every other channel of a wider tensor, and the last axis reversed in memory
        wide = torch.randn((shape[0], 2 * shape[1], *shape[2:]), generator=g, dtype=dtype)
        x = wide[:, ::2]
    if positive:
        x.abs_().add_(0.1)  # in place: the layout stays
    x = x.to(device)
    if layout == "view":
        assert not x.is_contiguous()
    return x


def _samples(n: int, c: int, d: int, device: torch.device) -> torch.Tensor:
    return torch.rand(n, c, d, generator=torch.Generator().manual_seed(1)).to(device)


def _build(fam: str, d: int, args: tuple, x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    ours, theirs = _classes(fam, d)
    if fam == "FractionalMaxPool":
        s = _samples(x.shape[0], x.shape[1], d, x.device)
        full = list(args) + [None] * (4 - len(args))
        return ours(*full, s), theirs(*full, s)
    return ours(*args), theirs(*args)


def _same(a: torch.Tensor, b: torch.Tensor, what: str, exact: bool) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs torch {tuple(b.shape)}"
    assert a.dtype == b.dtype and a.device == b.device, f"{what}: {a.dtype}/{a.device} vs torch {b.dtype}/{b.device}"
    assert a.stride() == b.stride(), f"{what}: strides {a.stride()} vs torch {b.stride()}"
    # NaN where torch gives NaN (LPPool on a negative window sum with odd or fractional p)
    if exact:
        assert torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0, equal_nan=True), (
            f"{what}: values differ (max {(a - b).abs().max().item():.3g})")
    else:
        torch.testing.assert_close(a, b, equal_nan=True, msg=what)


def _outs(y):
    return list(y) if isinstance(y, tuple) else [y]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_namesake_matches_torch(case, device):
    fam, d, args = case
    exact = fam.startswith(("Max", "AdaptiveMax", "Fractional"))
    for layout in LAYOUTS:
        x = _input(d, layout, device)
        ours, theirs = _build(fam, d, args, x)
        for mode in MODES:
            ours.train(mode == "train")
            theirs.train(mode == "train")
            for ctx_name, ctx in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
                with ctx():
                    for i, (a, b) in enumerate(zip(_outs(ours(x)), _outs(theirs(x)), strict=True)):
                        _same(a, b, f"{layout} {mode} {ctx_name} output {i}", exact or i == 1)
            la = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
            lb = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
            ya, yb = _outs(ours(la)), _outs(theirs(lb))
            for i, (a, b) in enumerate(zip(ya, yb, strict=True)):
                _same(a.detach(), b.detach(), f"{layout} {mode} grad output {i}", exact or i == 1)
            w = torch.randn(yb[0].shape, generator=torch.Generator().manual_seed(2)).to(device)
            ya[0].backward(w)
            yb[0].backward(w)
            _same(la.grad, lb.grad, f"{layout} {mode} input gradient", exact=False)


@pytest.mark.parametrize("d", (1, 2, 3))
def test_namesake_low_precision_layout(d, device):
    """bfloat16 (and float64): torch's dtype and strides, values to the dtype's precision."""
    for dtype in (torch.bfloat16, torch.float64):
        x = _input(d, "channels_last" if d > 1 else "contiguous", device, dtype=dtype, positive=True)
        for fam, args in (("MaxPool", (3, 2, 1)), ("AvgPool", (3, 2, 1)), ("LPPool", (2, 3, 2)),
                          ("AdaptiveAvgPool", (3,)), ("AdaptiveMaxPool", (3,))):
            ours, theirs = _build(fam, d, args, x)
            with torch.no_grad():
                try:
                    b = _outs(theirs(x))[0]
                except (NotImplementedError, RuntimeError):  # torch's own kernel lacks this dtype here
                    continue
                a = _outs(ours(x))[0]
            assert a.dtype == b.dtype == dtype and a.stride() == b.stride(), (fam, dtype, a.stride(), b.stride())
            torch.testing.assert_close(a, b, msg=f"{fam} {dtype}")


@pytest.mark.parametrize("d", (1, 2, 3))
def test_lppool_absolute_is_the_norm_on_signed_input(d, device):
    """``absolute=True``: (sum over the window of |x|^p)^(1/p), written here with unfold."""
    x = _input(d, "contiguous", device)
    m = getattr(pnn, f"LPPool{d}d")(3.0, 2, absolute=True)
    w = x.abs()
    for i in range(d):
        w = w.unfold(2 + i, 2, 2)
    ref = w.pow(3).reshape(*w.shape[: 2 + d], -1).sum(-1).pow(1 / 3)
    torch.testing.assert_close(m(x), ref)
    assert torch.isfinite(m(x)).all()


@pytest.mark.parametrize("d", (1, 2, 3))
def test_unbatched_input_as_torch(d, device):
    """torch's modules take (C, *spatial) too: same values, indices and strides."""
    for layout in LAYOUTS:
        x = _input(d, layout, device)[0]
        for fam, args in (("MaxPool", (3, 2, 1, 1, True)), ("AvgPool", (3, 2, 1)), ("LPPool", (2, 3, 2)),
                          ("AdaptiveAvgPool", (3,)), ("AdaptiveMaxPool", (3, True))):
            ours, theirs = _build(fam, d, args, x[None])
            with torch.no_grad():
                batched = [t[0] for t in _outs(theirs(x[None]))]
                for i, (a, b) in enumerate(zip(_outs(ours(x)), _outs(theirs(x)), strict=True)):
                    what = f"{fam}{d}d{args} {layout} unbatched output {i}"
                    torch.testing.assert_close(a, b, rtol=0 if fam.endswith("MaxPool") else None,
                                               atol=0 if fam.endswith("MaxPool") else None, msg=what)
                    # torch's unbatched strides, except where torch disagrees with its own batched op
                    # (lp_pool2d of a channels-last (C, H, W), max_pool3d of a channels-last (C, D, H, W)):
                    # there poolkit follows the batched op
                    assert a.stride() == batched[i].stride(), (what, a.stride(), b.stride(), batched[i].stride())


def test_namesakes_take_torch_keywords():
    """torch's keyword names too, and the attributes torch's modules have."""
    m = pnn.LPPool2d(norm_type=3, kernel_size=2, stride=1, ceil_mode=True)
    t = nn.LPPool2d(norm_type=3, kernel_size=2, stride=1, ceil_mode=True)
    for attr in ("norm_type", "kernel_size", "stride", "ceil_mode"):
        assert getattr(m, attr) == getattr(t, attr), attr
    m = pnn.MaxPool2d(kernel_size=3, stride=None, padding=1, dilation=1, return_indices=True, ceil_mode=True)
    t = nn.MaxPool2d(kernel_size=3, stride=None, padding=1, dilation=1, return_indices=True, ceil_mode=True)
    for attr in ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"):
        assert getattr(m, attr) == getattr(t, attr), attr
    m = pnn.AvgPool3d(kernel_size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=False,
                      divisor_override=3)
    t = nn.AvgPool3d(kernel_size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=False,
                     divisor_override=3)
    for attr in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"):
        assert getattr(m, attr) == getattr(t, attr), attr
    assert pnn.AdaptiveMaxPool2d(output_size=3, return_indices=True).return_indices
    assert pnn.FractionalMaxPool2d(kernel_size=2, output_ratio=0.5, return_indices=False).output_ratio == 0.5


def test_old_lppool_order_now_means_torchs():
    """LPPool2d(2, 3) is norm 2, kernel 3 (torch's meaning), not kernel 2 with p = 3."""
    m = pnn.LPPool2d(2, 3)
    assert m.norm_type == 2.0 and m.kernel_size == 3
    with pytest.raises(TypeError):
        pnn.LPPool2d(2, 3, p=3)
    with pytest.raises(TypeError, match="kernel_size"):
        pnn.LPPool2d(2)
    with pytest.raises(ValueError, match="norm_type"):
        pnn.LPPool1d(0.5, 2)


def test_extras_are_keyword_only():
    with pytest.raises(TypeError):
        pnn.MaxPool2d(2, 2, 0, 1, False, False, "reflect")
    with pytest.raises(TypeError):
        pnn.AvgPool1d(2, 2, 0, False, True, 3)  # torch's AvgPool1d has no divisor_override
    assert pnn.AvgPool1d(2, divisor_override=3).divisor_override == 3
    assert pnn.MaxPool2d(3, 1, 1, padding_mode="circular").padding_mode == "circular"


def test_adaptive_needs_output_size():
    for cls in (pnn.AdaptiveAvgPool2d, pnn.AdaptiveMaxPool1d):
        with pytest.raises(ValueError, match="output_size"):
            cls(None)




def test_fractional_max_pool_unbatched_and_target_size_beside_the_window():
    torch.manual_seed(0)
    x, u = torch.randn(3, 11, 11), torch.rand(1, 3, 2)
    ours = pnn.FractionalMaxPool2d(2, output_size=5, _random_samples=u)(x)
    torch.testing.assert_close(ours, torch.nn.FractionalMaxPool2d(2, output_size=5, _random_samples=u)(x))
    assert ours.shape == (3, 5, 5)


def test_adaptive_form_refuses_a_window_too():
    with pytest.raises(ValueError, match="output_size.*kernel_size"):
        pnn.AvgPool2d(3, 1, 1, output_size=2)

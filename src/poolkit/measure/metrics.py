"""Shift metrics: invariance and equivariance.

Every metric builds all shifted copies as one batch (with the unshifted
reference in front), runs one forward pass, and compares. Classification
consistency under shifts is in :mod:`poolkit.measure.classification`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .shifts import (
    ShiftSpec,
    blocks,
    check_batch,
    check_mode,
    crop_geometry,
    from_spectrum,
    is_int,
    linear_one,
    parse_shifts,
    resolve_dims,
    shift,
    spectrum,
    write_int,
)

__all__ = ["ShiftResult", "equivariance", "infer_stride", "invariance"]

Stride = tuple[float, ...]


@dataclass
class ShiftResult:
    """Normalized distances for each shift and sample.

    Attributes:
        kind: ``"invariance"`` or ``"equivariance"``.
        per_sample: ``(S, N)`` distances, ``0`` = exact.
        shifts: the shifts, one tuple per shift (entries per axis of ``dims``).
        mode: the shift mode.
        dims: the shifted spatial axes.
        stride: the total stride per axis of ``dims`` (equivariance only).
        commensurate: per shift, whether it is a multiple of the stride (equivariance only);
            only those shifts can be exactly equivariant.
        per_shift: ``(S,)`` mean over samples.
        mean: mean over shifts and samples (``float(result)`` gives it).
    """

    kind: str
    per_sample: Tensor
    shifts: list[tuple[float, ...]]
    mode: str
    dims: tuple[int, ...]
    stride: Stride | None = None
    commensurate: list[bool] | None = None
    per_shift: Tensor = field(init=False)
    mean: float = field(init=False)

    def __post_init__(self) -> None:
        self.per_shift = self.per_sample.nanmean(dim=1)
        self.mean = float(self.per_sample.nanmean()) if self.per_sample.numel() else math.nan

    def __float__(self) -> float:
        return self.mean

    @property
    def commensurate_mean(self) -> float:
        """Mean over the shifts commensurate with the stride (``nan`` if none)."""
        if self.commensurate is None:
            return self.mean
        keep = torch.tensor(self.commensurate, dtype=torch.bool)
        return float(self.per_shift[keep].nanmean()) if keep.any() else math.nan

    def to_frame(self) -> Any:
        """One row per shift: ``shift``, ``value`` (mean over samples), ``commensurate``; needs pandas."""
        import pandas as pd

        return pd.DataFrame({
            "kind": self.kind,
            "shift": [tuple(s) for s in self.shifts],
            "value": self.per_shift.tolist(),
            "commensurate": self.commensurate if self.commensurate is not None else [None] * len(self.shifts),
        })

    def __repr__(self) -> str:
        extra = f", stride={self.stride}, commensurate={sum(self.commensurate or [])}/{len(self.shifts)}" if (
            self.stride is not None) else ""
        return f"ShiftResult({self.kind}, mean={self.mean:.4g}, shifts={len(self.shifts)}, mode={self.mode!r}{extra})"


@contextmanager
def evaluating(model: object, enabled: bool = True) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the block and restore every submodule's mode after."""
    if not enabled or not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in modes:
            m.training = t


def first_tensor(out: object, what: str = "f's output") -> Tensor:
    """The output tensor; tuples/lists give their first tensor (e.g. values of ``return_indices``)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                return o
    raise TypeError(f"{what} must be a Tensor (or a tuple whose first tensor is measured), got {type(out).__name__}")


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    out = num / den
    return torch.where(den == 0, torch.where(num == 0, 0.0, math.inf), out)


def _norm(t: Tensor) -> Tensor:
    t = t if t.dtype in (torch.float32, torch.float64) else t.float()
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


def shift_distances(
    y0: Tensor, ys: Tensor, sh: list[tuple], mode: str, axes: tuple[int, ...], stride: Stride | None,
    subpixel: bool = True,
    cache: dict[str, Any] | None = None,
) -> tuple[Tensor, Tensor | None, list[bool] | None]:
    """Invariance and (with ``stride``) equivariance distances of outputs ``ys`` ``(S, N, ...)`` from ``y0``.

    Returns ``(S, N)`` of ``||y_s - y_0|| / ||y_0||``, ``(S, N)`` of ``||y_s - T'y_0|| / ||y_0||``
    (``T'`` = the shift divided by ``stride``; ``nan`` for shifts not commensurate with it
    unless ``subpixel``), and per shift whether it is commensurate.
    Works one shift at a time in reused buffers so each pass stays in cache. ``cache`` (a dict, empty
    at first) keeps what depends on ``y0`` alone (its norm, spectra, sub-pixel references) between
    calls with the same ``y0`` and other shifts.
    """
    s_count = len(sh)
    y0, ys = y0.detach(), ys.detach()
    n = y0.shape[0]
    acc = torch.float64 if y0.dtype == torch.float64 else torch.float32
    cache = {} if cache is None else cache
    if "den" not in cache:
        cache["den"] = _norm(y0).to(acc)
    den = cache["den"]
    if stride is not None and mode == "circular":
        return _circular_distances(y0, ys, sh, axes, stride, subpixel, den, acc, cache)
    diff = torch.empty_like(y0)
    inv = torch.empty((s_count, n), dtype=acc, device=y0.device)  # filled on the device, converted once
    for i in range(s_count):
        torch.sub(ys[i], y0, out=diff)
        inv[i] = _norm(diff)
    inv = _ratio(inv, den).double().cpu()
    if stride is None:
        return inv, None, None
    scaled, comm = _commensurate(sh, stride)
    # axes of size 1 (global pooling) are left unchanged by any circular shift
    keep = [j for j, a in enumerate(axes) if y0.shape[2 + a] > 1 or mode != "circular"]
    t_axes = tuple(axes[j] for j in keep)
    out_mode = "zeros" if mode == "crop" else mode
    eq = torch.full((s_count, n), math.nan, dtype=acc, device=y0.device)
    buf = torch.empty_like(y0)
    spec = None
    for i, t_full in enumerate(scaled):
        if not (subpixel or comm[i]):
            continue
        t = tuple(t_full[j] for j in keep)
        if not t_axes:
            ty = y0
        elif is_int(t) and out_mode == "circular":  # diff = y_s - roll(y_0) block by block, in one pass
            for combo in itertools.product(*[blocks(y0.shape[2 + a], int(v), True) for v, a in zip(t, t_axes)]):
                src, dst, out = y0, ys[i], diff
                for (ss, ds, length), a in zip(combo, t_axes):
                    src, dst, out = src.narrow(2 + a, ss, length), dst.narrow(2 + a, ds, length), out.narrow(
                        2 + a, ds, length)
                torch.sub(dst, src, out=out)
            eq[i] = _norm(diff)
            continue
        elif is_int(t) and out_mode == "zeros":
            buf.zero_()
            write_int(buf, y0, t, out_mode, t_axes)
            ty = buf
        elif out_mode == "circular":
            spec = spectrum(y0, t_axes) if spec is None else spec  # one FFT per layer, one inverse per shift
            ty = from_spectrum(spec, [t], t_axes, y0.shape, y0.dtype)
        else:
            try:
                ty = linear_one(y0, t, out_mode, t_axes)
            except ValueError:  # reflect cannot mirror a shift this large: leave nan
                continue
        torch.sub(ty, ys[i], out=diff)
        if mode == "crop":  # compare only where the shifted reference has data
            ones = y0.new_ones((1, 1, *y0.shape[2:]))
            diff.mul_(linear_one(ones, t, "zeros", t_axes) > 1 - 1e-6)
        eq[i] = _norm(diff)
    eq = _ratio(eq, den).double().cpu()
    return inv, eq, comm


def _commensurate(sh: list[tuple], stride: Stride) -> tuple[list[tuple], list[bool]]:
    """Each shift divided by ``stride`` (rounded where integer) and whether it is a multiple of it."""
    scaled = [tuple(v / st for v, st in zip(s, stride)) for s in sh]
    comm = [all(abs(v - round(v)) < 1e-9 for v in t) for t in scaled]
    return [tuple(round(v) for v in t) if cm else t for t, cm in zip(scaled, comm)], comm


# up to this size a sub-pixel Fourier shift along an axis is cheaper as a product with its real circulant
# matrix (2 * size flops per value) than as a batch of small FFTs
_MATRIX_MAX = 64


def _matrix_shift(y: Tensor, part: tuple[float, ...], f_axes: tuple[int, ...]) -> Tensor:
    """:func:`~poolkit.measure.fourier_shift` of ``y`` by ``part`` along ``f_axes``, as one matrix per axis.

    The Fourier shift is separable and each axis's factor is a real circulant matrix: the shift of the
    identity, built in float64 through the same phase ramp (Nyquist rule included).
    """
    out = y if y.dtype in (torch.float32, torch.float64) else y.float()
    for v, a in zip(part, f_axes):
        m = y.shape[2 + a]
        eye = torch.eye(m, dtype=torch.float64, device=y.device).view(m, 1, m)
        rows = from_spectrum(spectrum(eye, (0,)), [(v,)], (0,), eye.shape, torch.float64)  # row j: shift of e_j
        out = torch.movedim(torch.movedim(out, 2 + a, -1) @ rows.view(m, m).to(out.dtype), -1, 2 + a)
    return out.to(y.dtype)


def _circular_distances(
    y0: Tensor, ys: Tensor, sh: list[tuple], axes: tuple[int, ...], stride: Stride, subpixel: bool, den: Tensor,
    acc: torch.dtype, cache: dict[str, Any],
) -> tuple[Tensor, Tensor, list[bool]]:
    """:func:`shift_distances` for circular shifts, both distances of a shift in one buffer and one norm.

    ``T'`` splits into a fractional part, a Fourier shift of ``y_0`` along only the axes that have one
    (computed once per distinct fractional part, one FFT per set of such axes), and an integer rest,
    which is never materialized: the subtraction reads the rolled reference block by block.
    """
    n = y0.shape[0]
    scaled, comm = _commensurate(sh, stride)
    # axes of size 1 (global pooling) are left unchanged by any circular shift
    keep = [j for j, a in enumerate(axes) if y0.shape[2 + a] > 1]
    t_axes = tuple(axes[j] for j in keep)
    sizes = [y0.shape[2 + a] for a in t_axes]
    spectra: dict[tuple[int, ...], Tensor] = cache.setdefault("spectra", {})
    bases: dict[tuple, Tensor] = cache.setdefault("bases", {})
    diff = torch.empty((2, *y0.shape), dtype=y0.dtype, device=y0.device)
    pair = diff.view(2 * n, *y0.shape[1:])
    nan = torch.full((n,), math.nan, dtype=acc, device=y0.device)
    inv: list[Tensor] = []
    eq: list[Tensor] = []
    if not sh:
        empty = torch.empty((0, n), dtype=torch.float64)
        return empty, empty.clone(), comm
    for i, t_full in enumerate(scaled):
        torch.sub(ys[i], y0, out=diff[0])
        t = tuple(t_full[j] for j in keep)
        if not (subpixel or comm[i]) or not any(round(v % m, 9) % m for v, m in zip(t, sizes)):
            # no T' to compare with (nan), or T' is the identity (equivariance = invariance)
            d = _norm(diff[0]).to(acc)
            inv.append(d)
            eq.append(d if subpixel or comm[i] else nan)
            continue
        whole = tuple(math.floor(v) for v in t)
        part = tuple(v - w for v, w in zip(t, whole))
        src = y0
        if any(part):
            if part not in bases:
                f_axes = tuple(a for a, p in zip(t_axes, part) if p)
                f_part = tuple(p for p in part if p)
                if all(y0.shape[2 + a] <= _MATRIX_MAX for a in f_axes):
                    bases[part] = _matrix_shift(y0, f_part, f_axes)
                else:
                    if f_axes not in spectra:
                        spectra[f_axes] = spectrum(y0, f_axes)
                    bases[part] = from_spectrum(spectra[f_axes], [f_part], f_axes, y0.shape, y0.dtype)
            src = bases[part]
        for combo in itertools.product(*[blocks(m, w, True) for w, m in zip(whole, sizes)]):
            a_src, a_dst, a_out = src, ys[i], diff[1]
            for (ss, ds, length), a in zip(combo, t_axes):
                a_src = a_src.narrow(2 + a, ss, length)
                a_dst = a_dst.narrow(2 + a, ds, length)
                a_out = a_out.narrow(2 + a, ds, length)
            torch.sub(a_dst, a_src, out=a_out)
        both = _norm(pair).to(acc)
        inv.append(both[:n])
        eq.append(both[n:])
    return _ratio(torch.stack(inv), den).double().cpu(), _ratio(torch.stack(eq), den).double().cpu(), comm


def infer_stride(in_sizes: Sequence[int], out_sizes: Sequence[int]) -> Stride:
    """Total stride per axis from the sizes: ``round(in / out)`` (``1 / round(out / in)`` when upsampling)."""
    out: list[float] = []
    for a, b in zip(in_sizes, out_sizes):
        out.append(float(max(1, round(a / b))) if b <= a else 1.0 / round(b / a))
    return tuple(out)


def _stride_arg(stride: object, k: int) -> Stride | None:
    if stride is None:
        return None
    vals = (stride,) * k if isinstance(stride, (int, float)) and not isinstance(stride, bool) else stride
    if not isinstance(vals, Sequence) or len(vals) != k or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vals
    ):
        raise ValueError(f"stride must be None, a positive number or a tuple of {k} positive numbers, got {stride!r}")
    return tuple(float(v) for v in vals)


def _shifted_batch(
    x: Tensor, shifts: ShiftSpec, mode: str, dims: Any, crop_size: Any
) -> tuple[Tensor, list[tuple], tuple[int, ...], tuple[int, ...]]:
    d = check_batch(x)
    mode = check_mode(mode)
    axes = resolve_dims(d, dims)
    sh = parse_shifts(shifts, len(axes))
    zero = (0,) * len(axes)
    if mode == "crop":
        size, _ = crop_geometry([x.shape[2 + a] for a in axes], sh, crop_size)
    else:
        if crop_size is not None:
            raise ValueError(f"crop_size is only used with mode='crop', got mode={mode!r}")
        size = tuple(x.shape[2 + a] for a in axes)
    xb = shift(x, [zero, *sh], mode, axes, crop_size=crop_size)
    return xb, sh, axes, size


def _run(f: Callable[[Tensor], Any], xb: Tensor, expected: int, no_grad: bool) -> Tensor:
    with torch.no_grad() if no_grad else torch.enable_grad():
        y = first_tensor(f(xb))
    if y.shape[0] != expected:
        raise ValueError(f"f must keep the batch dim: input batch {expected}, output shape {tuple(y.shape)}")
    return y


def invariance(
    f: Callable[[Tensor], Any],
    x: Tensor,
    shifts: ShiftSpec,
    mode: str = "circular",
    *,
    dims: int | Sequence[int] | None = None,
    crop_size: int | Sequence[int] | None = None,
    eval_mode: bool = True,
    no_grad: bool = True,
) -> ShiftResult:
    """How far ``f`` is from invariant: ``||f(T x) - f(x)|| / ||f(x)||`` for each shift ``T``.

    ``0`` means invariant. ``x`` and all its shifted copies go through ``f`` in
    one batch. With ``mode="crop"`` the reference is the unshifted window.

    Args:
        f: any callable on a batch (an ``nn.Module`` is put in eval mode for the call,
            then restored); a tuple output is measured on its first tensor.
        x: input ``(N, C, *spatial)``.
        shifts: as :func:`poolkit.measure.shift` (e.g. ``[(1, 0), (0, 1)]``, or ``range(1, 4)``).
        mode: ``"circular"``, ``"zeros"``, ``"reflect"`` or ``"crop"``.
        dims: spatial axes to shift (default all).
        crop_size: window size for ``"crop"``.
        eval_mode: put an ``nn.Module`` in eval mode during the call.
        no_grad: run without autograd.

    Returns:
        :class:`ShiftResult` with ``per_sample`` ``(S, N)``, ``per_shift`` ``(S,)`` and ``mean``.

    Example:
        >>> x = torch.rand(4, 3, 16, 16)
        >>> float(invariance(lambda t: t.mean((2, 3)), x, [(1, 0), (3, 5)]))  # doctest: +SKIP
        0.0
    """
    xb, sh, axes, _ = _shifted_batch(x, shifts, mode, dims, crop_size)
    n = x.shape[0]
    with evaluating(f, eval_mode):
        y = _run(f, xb, xb.shape[0], no_grad)
    inv, _, _ = shift_distances(y[:n], y[n:].view(len(sh), n, *y.shape[1:]), sh, mode, axes, None)
    return ShiftResult("invariance", inv, sh, mode, axes)


def equivariance(
    f: Callable[[Tensor], Any],
    x: Tensor,
    shifts: ShiftSpec,
    mode: str = "circular",
    stride: float | Sequence[float] | None = None,
    *,
    dims: int | Sequence[int] | None = None,
    crop_size: int | Sequence[int] | None = None,
    subpixel: bool = True,
    eval_mode: bool = True,
    no_grad: bool = True,
) -> ShiftResult:
    """How far ``f`` is from equivariant: ``||f(T x) - T' f(x)|| / ||f(x)||``.

    ``T'`` is the shift divided by ``f``'s total stride per axis, applied to the
    output in the same mode; a shift that is not a multiple of the stride
    (not *commensurate*) becomes a sub-pixel ``T'`` (Fourier for circular,
    linear otherwise), so only commensurate shifts can be exactly equivariant.
    With ``"crop"``, ``T'`` fills with zeros and only the cells it fills from
    data are compared. With ``"reflect"``, shifts too large to mirror on the
    output give ``nan``.

    Args:
        f: a callable whose output has the input's spatial axes, ``(N, C', *spatial')``.
        x: input ``(N, C, *spatial)``.
        shifts: as :func:`poolkit.measure.shift`.
        mode: ``"circular"``, ``"zeros"``, ``"reflect"`` or ``"crop"``.
        stride: total stride per shifted axis (number or tuple); default inferred as
            ``round(input size / output size)``.
        dims: spatial axes to shift (default all).
        crop_size: window size for ``"crop"``.
        subpixel: measure non-commensurate shifts against a sub-pixel ``T'``; ``False`` leaves
            them ``nan`` (skips their Fourier transforms).
        eval_mode: put an ``nn.Module`` in eval mode during the call.
        no_grad: run without autograd.

    Returns:
        :class:`ShiftResult` with ``stride`` and ``commensurate`` (one bool per shift) set.

    Example:
        >>> pool = lambda t: torch.nn.functional.max_pool1d(t, 2)
        >>> r = equivariance(pool, torch.rand(2, 3, 16), [2, 1])
        >>> r.commensurate, r.per_shift[0].item()
        ([True, False], 0.0)
    """
    xb, sh, axes, size = _shifted_batch(x, shifts, mode, dims, crop_size)
    n = x.shape[0]
    st = _stride_arg(stride, len(axes))
    with evaluating(f, eval_mode):
        y = _run(f, xb, xb.shape[0], no_grad)
    if y.ndim != x.ndim:
        raise ValueError(
            f"equivariance needs an output with the input's {x.ndim - 2} spatial axes, got shape "
            f"{tuple(y.shape)}; use invariance for outputs without spatial axes"
        )
    if st is None:
        st = infer_stride(size, [y.shape[2 + a] for a in axes])
    _, dist, comm = shift_distances(y[:n], y[n:].view(len(sh), n, *y.shape[1:]), sh, mode, axes, st, subpixel)
    assert dist is not None and comm is not None
    return ShiftResult("equivariance", dist, sh, mode, axes, st, comm)

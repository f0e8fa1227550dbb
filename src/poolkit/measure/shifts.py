"""Shift operators: every requested shifted copy of a batch, made as one batch.

Convention: a positive shift moves the content toward higher indices, as
:func:`torch.roll` does: ``shift(x, [(s,)])[..., i] == x[..., i - s]``.

Modes:

- ``"circular"``: wrap around (``torch.roll``); fractional shifts are Fourier
  phase shifts (band-limited interpolation).
- ``"zeros"``: cells shifted in are zero; fractional shifts interpolate linearly.
- ``"reflect"``: cells shifted in mirror the input (as ``F.pad(mode="reflect")``);
  fractional shifts interpolate linearly.
- ``"crop"``: a window smaller than the input is moved inside it (Zhang 2019's
  protocol); the output has the window's size. Fractional shifts interpolate linearly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "SHIFT_MODES",
    "ShiftSpec",
    "crop_geometry",
    "fourier_shift",
    "from_spectrum",
    "parse_shifts",
    "shift",
    "shift_per_sample",
    "spectrum",
]

SHIFT_MODES = ("circular", "zeros", "reflect", "crop")

Number = int | float
ShiftSpec = Number | Sequence[Number | Sequence[Number]] | Tensor


def check_batch(x: object, name: str = "x") -> int:
    """Validate ``(N, C, *spatial)`` floating input with 1 to 3 spatial dims; return the number of spatial dims."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    d = x.ndim - 2
    if not 1 <= d <= 3:
        raise ValueError(
            f"{name} must be batched (N, C, *spatial) with 1 to 3 spatial dims, got shape {tuple(x.shape)}"
        )
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{name} has an empty dim: shape {tuple(x.shape)}")
    return d


def check_mode(mode: object) -> str:
    if mode not in SHIFT_MODES:
        raise ValueError(f"mode must be one of {SHIFT_MODES}, got {mode!r}")
    return str(mode)


def resolve_dims(d: int, dims: int | Sequence[int] | None) -> tuple[int, ...]:
    """Spatial axes to shift, as indices ``0 .. d-1`` (negative counts from the last spatial axis)."""
    if dims is None:
        return tuple(range(d))
    seq = (dims,) if isinstance(dims, int) and not isinstance(dims, bool) else dims
    if not isinstance(seq, Sequence) or isinstance(seq, str) or len(seq) == 0:
        raise TypeError(f"dims must be None, an int or a non-empty sequence of spatial axis indices, got {dims!r}")
    out = []
    for a in seq:
        if isinstance(a, bool) or not isinstance(a, int) or not -d <= a < d:
            raise ValueError(
                f"dims entries must be spatial axis indices in [{-d}, {d - 1}] for {d}-d input, got {dims!r}"
            )
        out.append(a % d)
    if len(set(out)) != len(out):
        raise ValueError(f"dims must not repeat an axis, got {dims!r}")
    return tuple(out)


def _number(v: object, shifts: object) -> Number:
    if isinstance(v, Tensor) and v.ndim == 0:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"shifts entries must be numbers or tuples of numbers, got {v!r} in {shifts!r}")
    if not math.isfinite(v):
        raise ValueError(f"shifts must be finite, got {v!r}")
    return int(v) if float(v).is_integer() else float(v)


def parse_shifts(shifts: ShiftSpec, k: int) -> list[tuple[Number, ...]]:
    """Normalize ``shifts`` to a list of ``k``-tuples (one entry per shifted axis).

    Accepted: a sequence of ``k``-tuples (``[(1, 0), (0, 2)]``); a sequence of
    numbers, each meaning the same shift along every shifted axis (``[1, 2]`` is
    ``[(1, 1), (2, 2)]`` in 2-D, ``[(1,), (2,)]`` in 1-D); a single number (one
    shift); a tensor ``(S,)`` or ``(S, k)``. Integral floats become ints.
    """
    if isinstance(shifts, Tensor):
        shifts = shifts.tolist()
    if isinstance(shifts, (int, float)) and not isinstance(shifts, bool):
        shifts = [shifts]
    if not isinstance(shifts, Sequence) or isinstance(shifts, str):
        raise TypeError(f"shifts must be a number, a sequence of numbers or of {k}-tuples, got {shifts!r}")
    out: list[tuple[Number, ...]] = []
    for s in shifts:
        if (isinstance(s, Sequence) and not isinstance(s, str)) or (isinstance(s, Tensor) and s.ndim == 1):
            t = tuple(_number(v, shifts) for v in s)
            if len(t) != k:
                raise ValueError(f"each shift must have {k} entries (one per shifted axis), got {tuple(s)!r}")
        else:
            t = (_number(s, shifts),) * k
        out.append(t)
    if not out:
        raise ValueError("shifts must not be empty")
    return out


def is_int(s: tuple[Number, ...]) -> bool:
    return all(isinstance(v, int) for v in s)


def fourier_shift(x: Tensor, shifts: ShiftSpec, dims: int | Sequence[int] | None = None) -> Tensor:
    """Circular shift by any real amount through a phase ramp in the Fourier domain.

    Separable: the response along each axis is ``exp(-2 pi i f s)``. Integer amounts equal
    :func:`torch.roll` up to rounding; shifts compose (``a`` then ``b`` equals
    ``a + b``). For an even size, the Nyquist component along an axis cannot
    move by a fraction of a cell and stay real: it is scaled by ``cos(pi s)``
    (the real part of its phase), so composition is exact for odd sizes and
    for signals without Nyquist content.

    Args:
        x: ``(N, C, *spatial)``.
        shifts: see :func:`parse_shifts`.
        dims: spatial axes the shift tuples refer to (default: all).

    Shape:
        ``(S * N, C, *spatial)``, shift-major.

    Example:
        >>> x = torch.arange(5.0).view(1, 1, 5)
        >>> fourier_shift(x, [1]).round(decimals=4) + 0.0
        tensor([[[4., 0., 1., 2., 3.]]])
        >>> i = torch.arange(8.0)
        >>> wave = torch.cos(2 * math.pi * i / 8).view(1, 1, 8)
        >>> torch.allclose(fourier_shift(wave, [0.5]), torch.cos(2 * math.pi * (i - 0.5) / 8), atol=1e-6)
        True
    """
    d = check_batch(x)
    axes = resolve_dims(d, dims)
    sh = parse_shifts(shifts, len(axes))
    return from_spectrum(spectrum(x, axes), sh, axes, x.shape, x.dtype)


def spectrum(x: Tensor, axes: Sequence[int]) -> Tensor:
    """Real FFT of ``x`` over the spatial ``axes`` (computed once, shifted many times)."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return torch.fft.rfftn(work, dim=[2 + a for a in axes])


def _multiplier(n: int, col: Tensor, half: bool, ndim: int, pos: int) -> Tensor:
    """Per-shift frequency response along one axis: ``exp(-2 pi i f s)``, ``cos(pi s)`` at Nyquist."""
    f = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(n, dtype=torch.float64, device=col.device)
    phase = col.view(-1, 1) * f
    m = torch.polar(torch.ones_like(phase), -2 * math.pi * phase)
    if n % 2 == 0:  # keeps the operator real and separable: the Nyquist term takes the real part
        m[:, n // 2] = torch.cos(math.pi * col).to(m.dtype)
    shape = [col.shape[0]] + [1] * ndim
    shape[1 + pos] = m.shape[1]
    return m.view(shape)


def from_spectrum(
    spec: Tensor, sh: Sequence[tuple[Number, ...]], axes: Sequence[int], shape: Sequence[int], dtype: torch.dtype
) -> Tensor:
    """Shifted copies ``(S * N, C, *spatial)`` from the :func:`spectrum` of a batch of ``shape``."""
    cols = torch.tensor(list(sh), dtype=torch.float64, device=spec.device)
    ramp = None
    for j, a in enumerate(axes):
        m = _multiplier(shape[2 + a], cols[:, j], j == len(axes) - 1, spec.ndim, 2 + a)
        ramp = m if ramp is None else ramp * m
    assert ramp is not None
    y = torch.fft.irfftn(spec.unsqueeze(0) * ramp.to(spec.dtype), s=[shape[2 + a] for a in axes],
                         dim=[3 + a for a in axes])
    return y.reshape((len(sh) * shape[0], *shape[1:])).to(dtype)


def _int_axis(x: Tensor, s: int, mode: str, ax: int) -> Tensor:
    """Integer shift along tensor axis ``ax`` in mode circular/zeros/reflect."""
    if s == 0:
        return x
    n = x.shape[ax]
    if mode == "circular":
        return torch.roll(x, s, ax)
    if mode == "zeros":
        out = torch.zeros_like(x)
        if abs(s) < n:
            if s > 0:
                out.narrow(ax, s, n - s).copy_(x.narrow(ax, 0, n - s))
            else:
                out.narrow(ax, 0, n + s).copy_(x.narrow(ax, -s, n + s))
        return out
    if abs(s) >= n:
        raise ValueError(f"mode='reflect' needs |shift| < size along each axis, got shift {s} for size {n}")
    idx = torch.arange(n, device=x.device) - s
    idx = torch.where(idx < 0, -idx, idx)
    idx = torch.where(idx >= n, 2 * (n - 1) - idx, idx)
    return x.index_select(ax, idx)


def blocks(n: int, s: int, circular: bool) -> list[tuple[int, int, int]]:
    """(source start, destination start, length) of the pieces of a shift by ``s`` along a size-``n`` axis."""
    if circular:
        s %= n
        return [(0, 0, n)] if s == 0 else [(0, s, n - s), (n - s, 0, s)]
    if abs(s) >= n:
        return []
    return [(0, s, n - s)] if s >= 0 else [(-s, 0, n + s)]


def write_int(out: Tensor, x: Tensor, s: tuple[Number, ...], mode: str, axes: Sequence[int]) -> None:
    """Write the integer shift ``s`` of ``x`` into ``out`` (zeroed beforehand for ``"zeros"``)."""
    pieces = [blocks(x.shape[2 + a], int(v), mode == "circular") for v, a in zip(s, axes)]
    for combo in itertools.product(*pieces):
        src, dst = x, out
        for (ss, ds, length), a in zip(combo, axes):
            src = src.narrow(2 + a, ss, length)
            dst = dst.narrow(2 + a, ds, length)
        dst.copy_(src)


def linear_one(x: Tensor, s: tuple[Number, ...], mode: str, axes: Sequence[int]) -> Tensor:
    """One shift, axis by axis; a fractional amount blends the two neighbouring integer shifts."""
    for v, a in zip(s, axes):
        ax = 2 + a
        lo = math.floor(v)
        frac = v - lo
        if frac == 0:
            x = _int_axis(x, int(lo), mode, ax)
        else:
            x = (1 - frac) * _int_axis(x, lo, mode, ax) + frac * _int_axis(x, lo + 1, mode, ax)
    return x


def crop_geometry(
    sizes: Sequence[int], shifts: Sequence[tuple[Number, ...]], crop_size: int | Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window size and origin per shifted axis for mode ``"crop"``.

    The window of shift ``s`` starts at ``origin - s``. The default window is as
    large as every shift (and the zero shift) allows; a given ``crop_size`` is
    centred in the slack. Raises ``ValueError`` when a shifted window would
    leave the input.
    """
    k = len(sizes)
    if crop_size is None:
        want: tuple[int | None, ...] = (None,) * k
    elif isinstance(crop_size, int) and not isinstance(crop_size, bool):
        want = (crop_size,) * k
    elif isinstance(crop_size, Sequence) and len(crop_size) == k and all(
        isinstance(c, int) and not isinstance(c, bool) for c in crop_size
    ):
        want = tuple(crop_size)
    else:
        raise ValueError(f"crop_size must be None, an int or a tuple of {k} ints, got {crop_size!r}")
    sizes_out, origin = [], []
    for j, n in enumerate(sizes):
        lo = min([0] + [math.floor(s[j]) for s in shifts])
        hi = max([0] + [math.ceil(s[j]) for s in shifts])
        c = n - (hi - lo) if want[j] is None else want[j]
        if c is None or c < 1 or c + (hi - lo) > n:
            raise ValueError(
                f"mode='crop': a window of size {c} shifted over [{lo}, {hi}] does not fit in input size {n} "
                f"(need crop_size + max shift - min shift <= input size, crop_size >= 1)"
            )
        sizes_out.append(c)
        origin.append(hi + (n - c - (hi - lo)) // 2)
    return tuple(sizes_out), tuple(origin)


def _crop_one(
    x: Tensor, s: tuple[Number, ...], axes: Sequence[int], size: Sequence[int], origin: Sequence[int]
) -> Tensor:
    for v, a, c, o in zip(s, axes, size, origin):
        ax = 2 + a
        lo = math.floor(v)
        frac = v - lo
        # window of shift v reads x[o - v + i]
        x = x.narrow(ax, o - lo, c) if frac == 0 else (
            (1 - frac) * x.narrow(ax, o - lo, c) + frac * x.narrow(ax, o - lo - 1, c)
        )
    return x


def shift(
    x: Tensor,
    shifts: ShiftSpec,
    mode: str = "circular",
    dims: int | Sequence[int] | None = None,
    *,
    crop_size: int | Sequence[int] | None = None,
) -> Tensor:
    """All shifted copies of a batch, as one batch.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        shifts: one tuple per shift with one entry per axis of ``dims``
            (``[(1, 0), (0, 2)]`` in 2-D, ``[(1,), (3,)]`` in 1-D); floats give
            sub-pixel shifts. Shorthand: a bare number shifts every axis of
            ``dims`` by that amount (``[1, 2]`` is ``[(1, 1), (2, 2)]`` in 2-D),
            and a single number is one shift.
        mode: ``"circular"``, ``"zeros"``, ``"reflect"`` or ``"crop"`` (see the module doc).
        dims: spatial axes (``0`` is the first spatial axis) the tuples refer to; default all.
        crop_size: window size for ``mode="crop"`` (int or one per axis of ``dims``); default
            the largest window every shift (and the zero shift) fits.

    Returns:
        ``(S * N, C, *spatial)`` ordered shift-major: rows ``i * N .. (i + 1) * N - 1``
        hold shift ``i``. With ``"crop"`` the shifted axes have the window size.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 4)
        >>> shift(x, [(1,), (-1,)])
        tensor([[[3., 0., 1., 2.]],
        <BLANKLINE>
                [[1., 2., 3., 0.]]])
        >>> shift(x, [0.5], mode="zeros")
        tensor([[[0.0000, 0.5000, 1.5000, 2.5000]]])
    """
    d = check_batch(x)
    mode = check_mode(mode)
    axes = resolve_dims(d, dims)
    sh = parse_shifts(shifts, len(axes))
    if crop_size is not None and mode != "crop":
        raise ValueError(f"crop_size is only used with mode='crop', got mode={mode!r}")
    if mode == "crop":
        size, origin = crop_geometry([x.shape[2 + a] for a in axes], sh, crop_size)
        return torch.cat([_crop_one(x, s, axes, size, origin) for s in sh])
    n = x.shape[0]
    fill = torch.zeros if mode == "zeros" else torch.empty
    out = fill((len(sh) * n, *x.shape[1:]), dtype=x.dtype, device=x.device)
    frac = [i for i, s in enumerate(sh) if not is_int(s)]
    if mode == "circular" and frac:
        for i, moved in zip(frac, fourier_shift(x, [sh[i] for i in frac], axes).split(n)):
            out[i * n:(i + 1) * n].copy_(moved)
    for i, s in enumerate(sh):
        slot = out[i * n:(i + 1) * n]
        if mode == "reflect" or (mode == "zeros" and not is_int(s)):
            slot.copy_(linear_one(x, s, mode, axes))
        elif is_int(s):
            write_int(slot, x, s, mode, axes)  # block copies: one pass, no roll/cat temporaries
    return out


def shift_per_sample(
    x: Tensor,
    offsets: Tensor,
    mode: str = "circular",
    dims: Sequence[int] | None = None,
    *,
    crop_size: Sequence[int] | None = None,
) -> Tensor:
    """A different integer shift for each sample, by one gather per axis (no copies per shift).

    Args:
        x: ``(N, C, *spatial)``.
        offsets: integer tensor ``(N, k)``, one row per sample, one column per axis of ``dims``.
            For ``"circular"``/``"zeros"``/``"reflect"`` a shift; for ``"crop"`` the window's start.
        mode: as :func:`shift`.
        dims: spatial axes (default all).
        crop_size: window size per axis of ``dims`` (required for ``"crop"``).

    Returns:
        ``(N, C, *spatial)`` (the window size along ``dims`` for ``"crop"``).
    """
    d = check_batch(x)
    mode = check_mode(mode)
    axes = resolve_dims(d, dims)
    if offsets.shape != (x.shape[0], len(axes)) or offsets.is_floating_point():
        raise ValueError(f"offsets must be an integer tensor of shape {(x.shape[0], len(axes))}, got {offsets}")
    offsets = offsets.to(x.device)
    valid = None
    for j, a in enumerate(axes):
        ax = 2 + a
        n = x.shape[ax]
        o = offsets[:, j : j + 1]
        if mode == "crop":
            if crop_size is None:
                raise ValueError("crop_size is required with mode='crop'")
            c = crop_size[j]
            if int(o.min()) < 0 or int(o.max()) + c > n:
                raise ValueError(f"crop windows of size {c} at offsets {o.flatten().tolist()} leave input size {n}")
            idx = o + torch.arange(c, device=x.device)
        else:
            idx = torch.arange(n, device=x.device) - o
            if mode == "circular":
                idx = idx % n
            elif mode == "reflect":
                if int(o.abs().max()) >= n:
                    raise ValueError(f"mode='reflect' needs |shift| < size along each axis (size {n})")
                idx = torch.where(idx < 0, -idx, idx)
                idx = torch.where(idx >= n, 2 * (n - 1) - idx, idx)
            else:
                ok = (idx >= 0) & (idx < n)
                shape = [x.shape[0]] + [1] * (x.ndim - 1)
                shape[ax] = n
                m = ok.view(shape)
                valid = m if valid is None else valid & m
                idx = idx.clamp(0, n - 1)
        m_len = idx.shape[1]
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        shape[ax] = m_len
        target = list(x.shape)
        target[ax] = m_len
        x = torch.gather(x, ax, idx.view(shape).expand(target))
    if valid is not None:
        x = x * valid.to(x.dtype)
    return x

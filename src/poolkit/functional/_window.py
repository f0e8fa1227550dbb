"""Window geometry shared by every pooling statistic.

Resolves ``kernel_size``/``stride``/``padding``/``dilation``/``ceil_mode`` into
per-dimension tuples, validates them with errors that name the argument, pads
in any mode, and extracts windows (as strided views) for statistics that have
no fused native reduction. Geometry only: no layout policy, no fast kernels
(those live in :mod:`poolkit.functional._fast`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IntOrTuple = int | Sequence[int]
Padding = int | Sequence[int] | str
OutputSize = int | None | Sequence[int | None]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

__all__ = [
    "PADDING_MODES",
    "Window",
    "WindowViews",
    "adaptive_bounds",
    "adaptive_windows",
    "check_input",
    "check_padding_mode",
    "native",
    "ntuple",
    "pad",
    "resolve",
    "resolve_output_size",
    "window_source",
    "windows",
]


def check_input(x: object, name: str = "input", dims: int | None = None) -> int:
    """Validate a batched pooling input and return its number of spatial dims.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` is not ``(N, C, *spatial)`` with 1 to 3 spatial dims
            (or not ``dims`` of them when given).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(
            f"{name} must have a floating-point dtype (float16/bfloat16/float32/float64), got {x.dtype}"
        )
    d = x.ndim - 2
    if dims is not None and d != dims:
        axes = ("L",) if dims == 1 else ("D", "H", "W")[3 - dims :]
        raise ValueError(
            f"{name} must be (N, C, {', '.join(axes)}) for a {dims}-d pool, i.e. {dims + 2} dims, "
            f"got shape {tuple(x.shape)}"
        )
    if not 1 <= d <= 3:
        raise ValueError(
            f"{name} must be batched (N, C, *spatial) with 1 to 3 spatial dims, got shape {tuple(x.shape)}"
        )
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(f"{name} has an empty spatial dim: shape {tuple(x.shape)}")
    return d


def ntuple(value: object, d: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Broadcast an int or check a sequence of ``d`` ints, each >= ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of {d} ints, got {value!r}")
    if isinstance(value, int):
        out = (value,) * d
    elif isinstance(value, Sequence) and not isinstance(value, str):
        out = tuple(value)
        if len(out) != d or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
            raise ValueError(f"{name} must be an int or a tuple of {d} ints for {d}-d input, got {value!r}")
    else:
        raise TypeError(f"{name} must be an int or a tuple of {d} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


@dataclass(frozen=True)
class Window:
    """Resolved geometry of a local pooling window over ``d`` spatial dims."""

    size: tuple[int, ...]  # input spatial size
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]  # (before, after) per dim
    out: tuple[int, ...]
    ceil_mode: bool

    @property
    def dims(self) -> int:
        return len(self.kernel)

    @property
    def extent(self) -> tuple[int, ...]:
        """Effective kernel extent, dilation included."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def symmetric(self) -> bool:
        return all(a == b for a, b in self.pad)

    @property
    def padded(self) -> bool:
        return any(a or b for a, b in self.pad)

    @property
    def overhang(self) -> tuple[int, ...]:
        """Extra cells past the padded input that ceil_mode windows reach."""
        return tuple(
            max((o - 1) * s + e - (n + a + b), 0)
            for o, s, e, n, (a, b) in zip(self.out, self.stride, self.extent, self.size, self.pad)
        )

    def flat_pad(self, extra: bool = False) -> list[int]:
        """Padding in ``F.pad`` order (last dim first); with ``extra`` the ceil overhang too."""
        hang = self.overhang if extra else (0,) * self.dims
        out: list[int] = []
        for (a, b), h in zip(reversed(self.pad), reversed(hang)):
            out += [a, b + h]
        return out


def _typed(v: object) -> object:
    """A cache key that tells ``True`` from ``1`` (equal and equally hashed), also inside tuples."""
    if type(v) is int:  # the common case, and distinct from every key below
        return v
    if isinstance(v, (tuple, list)):
        return tuple((type(e), e) for e in v)
    return (type(v), v)


#: resolved windows of recent calls (a layer sees the same shapes call after call); bounded, cleared when full
_RESOLVED: dict[tuple, Window] = {}


def resolve(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> Window:
    """Resolve and validate window arguments against the input's spatial size.

    ``padding`` may be ints (symmetric, per dim), ``"valid"`` (none) or
    ``"same"`` (output size ``ceil(L / stride)``; the total is split with the
    smaller half before, as TensorFlow does). Output sizes follow torch's
    formula, ``ceil_mode`` included. Valid arguments seen before are looked up
    (the checks cost more than the pooling of a small input).
    """
    if torch.compiler.is_compiling():  # no global state inside a compiled graph
        return _resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
    try:
        key = (x.shape[2:], _typed(kernel_size), _typed(stride), _typed(padding), _typed(dilation), _typed(ceil_mode))
        win = _RESOLVED.get(key)
    except TypeError:  # unhashable arguments: resolve without the cache
        key, win = None, None
    if win is not None:
        return win
    win = _resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
    if key is not None:
        if len(_RESOLVED) >= 1024:
            _RESOLVED.clear()
        _RESOLVED[key] = win
    return win


def _resolve(
    x: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: Padding,
    dilation: IntOrTuple,
    ceil_mode: bool,
) -> Window:
    d = x.ndim - 2
    k = ntuple(kernel_size, d, "kernel_size")
    s = k if stride is None else ntuple(stride, d, "stride")
    dil = ntuple(dilation, d, "dilation")
    size = tuple(int(n) for n in x.shape[2:])
    ext = tuple(di * (ki - 1) + 1 for ki, di in zip(k, dil))
    if isinstance(padding, str):
        if padding == "valid":
            pads = tuple((0, 0) for _ in range(d))
        elif padding == "same":
            pads_l = []
            for n, si, e in zip(size, s, ext):
                total = max((math.ceil(n / si) - 1) * si + e - n, 0)
                pads_l.append((total // 2, total - total // 2))
            pads = tuple(pads_l)
        else:
            raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
    else:
        p = ntuple(padding, d, "padding", minimum=0)
        for pi, ki in zip(p, k):
            if pi > ki // 2:  # torch's rule: every window keeps at least one input cell
                raise ValueError(
                    f"padding must be at most half the kernel size, got padding={padding!r} "
                    f"for kernel_size={kernel_size!r}"
                )
        pads = tuple((pi, pi) for pi in p)
    out = []
    for n, (a, b), e, si in zip(size, pads, ext, s):
        full = n + a + b
        if full < e:
            raise ValueError(
                f"kernel_size {tuple(k)} (dilation {tuple(dil)}) is larger than the padded input "
                f"{tuple(n + a + b for n, (a, b) in zip(size, pads))}"
            )
        o = (math.ceil if ceil_mode else math.floor)((full - e) / si) + 1
        if ceil_mode and (o - 1) * si >= n + a:
            o -= 1
        out.append(o)
    return Window(size, k, s, dil, pads, tuple(out), bool(ceil_mode))


def pad(x: Tensor, win: Window, mode: str, value: float = 0.0, extra: bool = False) -> Tensor:
    """Pad ``x`` by the window's padding in ``mode``; ``"zeros"`` pads with ``value``.

    With ``extra`` the ceil-mode overhang is padded too, always with ``value``.
    """
    check_padding_mode(mode)
    if not win.padded and not (extra and any(win.overhang)):
        return x
    if mode == "zeros":
        return F.pad(x, win.flat_pad(extra), value=value)
    for n, (a, b) in zip(win.size, win.pad):
        if mode == "reflect" and max(a, b) >= n:
            raise ValueError(f"padding_mode='reflect' needs padding < input size, got padding {(a, b)} for size {n}")
        if mode == "circular" and max(a, b) > n:
            raise ValueError(f"padding_mode='circular' needs padding <= input size, got padding {(a, b)} for size {n}")
    x = F.pad(x, win.flat_pad(False), mode=mode)
    if extra and any(win.overhang):
        hang: list[int] = []
        for h in reversed(win.overhang):
            hang += [0, h]
        x = F.pad(x, hang, value=value)
    return x


def crop(y: Tensor, out: Sequence[int]) -> Tensor:
    """Keep the leading ``out`` cells of each spatial dim (natives on folded padding may give more)."""
    if tuple(y.shape[2:]) == tuple(out):
        return y
    index = (slice(None), slice(None), *(slice(0, o) for o in out))
    return y[index]


def native(name: str, d: int) -> Callable[..., Tensor]:
    """``native("max_pool", 2)`` -> ``F.max_pool2d``."""
    return getattr(F, f"{name}{d}d")


def windows(x: Tensor, win: Window) -> Tensor:
    """Windows as a strided view ``(N, C, *out, *kernel)``; ``x`` must already be padded (extra included)."""
    for i, (e, s, o, dl) in enumerate(zip(win.extent, win.stride, win.out, win.dilation)):
        x = x.unfold(2 + i, e, s).narrow(2 + i, 0, o)
        if dl > 1:
            x = x[..., ::dl]
    return x  # unfold appends the kernel dims in order


def resolve_output_size(x: Tensor, output_size: OutputSize) -> tuple[int, ...]:
    """Adaptive target size per dim; ``None`` entries keep the input size."""
    d = x.ndim - 2
    if isinstance(output_size, bool):
        raise TypeError(f"output_size must be an int or a tuple of {d} ints/None, got {output_size!r}")
    if output_size is None:
        return tuple(int(n) for n in x.shape[2:])
    if isinstance(output_size, int):
        vals: tuple = (output_size,) * d
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        vals = tuple(output_size)
        if len(vals) != d:
            raise ValueError(f"output_size must be an int or a tuple of {d} ints for {d}-d input, got {output_size!r}")
    else:
        raise TypeError(f"output_size must be an int or a tuple of {d} ints/None, got {output_size!r}")
    out = []
    for v, n in zip(vals, x.shape[2:]):
        if v is None:
            out.append(int(n))
        elif isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            out.append(v)
        else:
            raise ValueError(f"output_size entries must be ints >= 1 (or None), got {output_size!r}")
    return tuple(out)


def adaptive_bounds(n: int, o: int) -> tuple[list[int], list[int]]:
    """torch's adaptive windows: ``[floor(i n / o), ceil((i + 1) n / o))``."""
    starts = [(i * n) // o for i in range(o)]
    ends = [-((-(i + 1) * n) // o) for i in range(o)]
    return starts, ends


def adaptive_windows(x: Tensor, out: Sequence[int], fill: float) -> Tensor:
    """Adaptive windows gathered as ``(N, C, *out, *kmax)``, cells past a window's end set to ``fill``.

    Used only by statistics with no native adaptive reduction (median, top-k, ...).
    When every size divides evenly it is a strided view (no copy).
    """
    d = x.ndim - 2
    sizes = tuple(int(n) for n in x.shape[2:])
    if all(n % o == 0 for n, o in zip(sizes, out)):
        k = tuple(n // o for n, o in zip(sizes, out))
        return windows(x, Window(sizes, k, k, (1,) * d, tuple((0, 0) for _ in range(d)), tuple(out), False))
    mask = None
    y = x
    for i, (n, o) in enumerate(zip(sizes, out)):
        starts, ends = adaptive_bounds(n, o)
        kmax = max(e - s for s, e in zip(starts, ends))
        i_out = torch.arange(o, device=x.device)  # the same bounds made on the device (no host-to-device copy)
        st = (i_out * n) // o
        en = -((-(i_out + 1) * n) // o)
        idx = st[:, None] + torch.arange(kmax, device=x.device)
        ok = idx < en[:, None]
        idx = idx.clamp(max=n - 1)
        dim = 2 + i
        y = y.index_select(dim, idx.reshape(-1))
        y = y.unflatten(dim, (o, kmax)).movedim(dim + 1, -1)
        shape = [1] * (2 + d + i) + [kmax]
        shape[dim] = o
        m = ok.view(shape)
        mask = m if mask is None else mask.unsqueeze(-1) & m
    assert mask is not None
    return y.masked_fill(~mask, fill)


def check_args(
    d: int,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> None:
    """Validate window arguments before any input is seen (module constructors)."""
    check_padding_mode(padding_mode)
    if output_size is None:
        if kernel_size is None:
            raise TypeError("kernel_size is required unless output_size is given")
        ntuple(kernel_size, d, "kernel_size")
        if stride is not None:
            ntuple(stride, d, "stride")
        ntuple(dilation, d, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
        else:
            ntuple(padding, d, "padding", minimum=0)
    else:
        resolve_output_size(torch.empty((1, 1) + (1,) * d, device="meta"), output_size)


@dataclass(frozen=True)
class WindowViews:
    """How the windows of a pooling without a fused reduction (median, top-k) lie in their source tensor ``src``.

    ``view(src)`` is the ``(N, C, *out, *kernel)`` windows of ``src``, a strided view (``src`` is the
    padded input, or the gathered windows of uneven adaptive pooling with ``view`` the identity).
    ``disjoint``: no cell of ``src`` lies in two windows; ``tiles``: every cell lies in exactly one.
    """

    view: Callable[[Tensor], Tensor]
    disjoint: bool
    tiles: bool


def _identity(t: Tensor) -> Tensor:
    return t


def window_source(
    x: Tensor,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None,
    padding: Padding,
    dilation: IntOrTuple,
    ceil_mode: bool,
    padding_mode: str,
    output_size: OutputSize,
    fill: float,
    geometry: bool = True,
) -> tuple[Tensor, WindowViews, Tensor | None, Tensor | None]:
    """The windows' source ``src``, their :class:`WindowViews`, and where some window holds cells outside the
    input (zero padding, ceil-mode overhang, the tail of a shorter adaptive window; they hold ``fill``,
    other padding modes pad with copies): ``valid``, which window cells are input cells, and ``count``,
    how many per window (both ``None`` when every cell is; never computed without ``geometry``).
    ``valid`` is ``(1, 1, *out, *kernel)`` bool, ``count`` ``(1, 1, *out)`` float32.
    """
    args = (kernel_size, stride, padding, dilation, ceil_mode, padding_mode, output_size)
    if output_size is not None:
        out = resolve_output_size(x, output_size)
        filled = any(int(n) % o for n, o in zip(x.shape[2:], out))
        if filled:
            src = adaptive_windows(x, out, fill)
            view: Callable[[Tensor], Tensor] = _identity
        else:
            src, view = x, functools.partial(adaptive_windows, out=out, fill=fill)
        disjoint = tiles = True
    else:
        if kernel_size is None:
            raise TypeError("kernel_size is required unless output_size is given")
        win = resolve(x, kernel_size, stride, padding, dilation, ceil_mode)
        filled = (padding_mode == "zeros" and win.padded) or any(win.overhang)
        src = pad(x, win, padding_mode, value=fill, extra=True)
        view = functools.partial(windows, win=win)
        disjoint = all(s >= e for s, e in zip(win.stride, win.extent))
        tiles = all(s == k and dl == 1 and o * s == n
                    for s, k, dl, o, n in zip(win.stride, win.kernel, win.dilation, win.out, src.shape[2:]))
    valid = count = None
    if filled and geometry:
        ones = x.new_ones((1, 1, *x.shape[2:]), dtype=torch.float32)
        ones_src, ones_win, _, _ = window_source(ones, *args, 0.0, geometry=False)
        w = ones_win.view(ones_src)
        valid = w > 0
        count = w.flatten(-(x.ndim - 2)).sum(-1)
    return src, WindowViews(view, disjoint, tiles), valid, count

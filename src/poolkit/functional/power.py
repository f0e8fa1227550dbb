"""Power-mean family: avg, lp, gem, lse, softpool, mixed, gated.

Each public function checks its arguments, resolves the window, offers the call to the fast kernels
(:mod:`poolkit.functional._fast.power`; ``poolkit.fast_paths(False)`` turns them off) and otherwise runs
its reference formula in plain, device-generic torch ops: a native average pooling of a pointwise map
(avg, lp, gem), a log-sum-exp or softmax over the gathered windows (lse, softpool: stable for any input,
no value is inspected), or a blend of native max and average poolings (mixed, gated). Every fast kernel
gives the reference's values, gradients, dtype, device and memory layout; for avg and lp the reference is
torch's own ``avg_pool{1,2,3}d`` / ``lp_pool{1,2,3}d`` formula, and the other statistics return the fresh
strides of the layout torch's pooling keeps from the input (channels-last in, channels-last out).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._fast import dispatch
from ._fast import power as _kernels  # noqa: F401 (registers the family's fast kernels)
from ._fast.layout import as_layout
from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    adaptive_bounds,
    adaptive_windows,
    check_input,
    check_padding_mode,
    crop,
    native,
    pad,
    resolve,
    resolve_output_size,
    windows,
)
from .order import max_pool, window_max

__all__ = ["avg_pool", "gated_pool", "gem_pool", "lp_pool", "lse_pool", "mixed_pool", "softpool", "window_mean"]


def _avg_native(x: Tensor, k, s, p, ceil_mode: bool, count_include_pad: bool, divisor_override) -> Tensor:
    """torch's ``avg_pool{1,2,3}d`` (1-d with ``divisor_override``, which torch's 1-d op lacks: the 2-d op)."""
    if x.ndim == 3:
        if divisor_override is None:
            return F.avg_pool1d(x, k, s, p, ceil_mode, count_include_pad)
        y = F.avg_pool2d(x.unsqueeze(2), (1, k[0]), (1, s[0]), (0, p[0]), ceil_mode, count_include_pad,
                         divisor_override)
        return y.squeeze(2).contiguous()
    if x.ndim == 5 and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # torch's CPU avg_pool3d has no half kernels: compute in float32
        return F.avg_pool3d(x.float(), k, s, p, ceil_mode, count_include_pad, divisor_override).to(x.dtype)
    return native("avg_pool", x.ndim - 2)(x, k, s, p, ceil_mode, count_include_pad, divisor_override)


def window_mean(
    x: Tensor,
    win: Window | tuple[int, ...],
    padding_mode: str = "zeros",
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean of ``x`` over each window of ``win`` (a :class:`Window`, or an adaptive output size).

    The building block of every smooth statistic: one native average pooling.
    ``padding_mode="zeros"`` pads with zeros that count when ``count_include_pad``;
    other modes pad with copies of the input, which always count. Windows that
    ceil_mode lets run past the padded input are averaged over their cells inside.
    """
    if not isinstance(win, Window):
        return native("adaptive_avg_pool", x.ndim - 2)(x, win)
    if any(dl != 1 for dl in win.dilation):
        raise ValueError("dilation must be 1 for mean-based statistics (torch's avg_pool has none)")
    if padding_mode == "zeros" and win.symmetric:
        p = [a for a, _ in win.pad]
        return _avg_native(x, win.kernel, win.stride, p, win.ceil_mode, count_include_pad, divisor_override)
    xp = pad(x, win, padding_mode, 0.0)
    zero = (0,) * win.dims
    y = crop(_avg_native(xp, win.kernel, win.stride, zero, win.ceil_mode, True, divisor_override), win.out)
    if padding_mode == "zeros" and not count_include_pad and win.padded and divisor_override is None:
        ones = pad(x.new_ones((1, 1, *win.size)), win, "zeros", 0.0)
        frac = crop(_avg_native(ones, win.kernel, win.stride, zero, win.ceil_mode, True, None), win.out)
        y = y / frac
    return y


def avg_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Average over each window, in 1-D, 2-D or 3-D.

    Equal to ``torch.nn.functional.avg_pool{1,2,3}d`` wherever torch has the op
    (``count_include_pad`` and ``divisor_override`` included, also in 1-D), and to
    ``adaptive_avg_pool{1,2,3}d`` with ``output_size``: values, gradients and strides.

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the divisor (``"zeros"`` mode).
        divisor_override: divide each window sum by this instead.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global average).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> avg_pool(torch.arange(8.0).view(1, 1, 8), 2)
        tensor([[[0.5000, 2.5000, 4.5000, 6.5000]]])
    """
    check_input(x)
    check_padding_mode(padding_mode)
    if divisor_override is not None and (
        isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override < 1
    ):
        raise ValueError(f"divisor_override must be a positive int or None, got {divisor_override!r}")
    if output_size is not None:
        return window_mean(x, resolve_output_size(x, output_size))
    if kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    y = dispatch("avg", x, win, padding_mode, count_include_pad, divisor_override)
    if y is not None:
        return y
    return window_mean(x, win, padding_mode, count_include_pad, divisor_override)


# ---------------------------------------------------------------- shared helpers


def _work(x: Tensor) -> Tensor:
    """Half-precision inputs are computed in float32: pow/exp/log overflow or lose too much in 16 bits."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _geometry(
    x: Tensor,
    kernel_size: IntOrTuple | None,
    stride: IntOrTuple | None,
    padding: Padding,
    ceil_mode: bool,
    padding_mode: str,
    output_size: OutputSize,
) -> Window | tuple[int, ...]:
    """Validate the input; a local :class:`Window`, or an adaptive output size that does not divide the input
    (sizes that divide it evenly are plain non-overlapping windows)."""
    check_input(x)
    check_padding_mode(padding_mode)
    if output_size is None:
        if kernel_size is None:
            raise TypeError("kernel_size is required unless output_size is given")
        return resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    out = resolve_output_size(x, output_size)
    size = tuple(int(n) for n in x.shape[2:])
    if all(n % o == 0 for n, o in zip(size, out)):
        k = tuple(n // o for n, o in zip(size, out))
        return Window(size, k, k, (1,) * len(k), tuple((0, 0) for _ in k), out, False)
    return out


def _channel_param(value: float | Tensor, x: Tensor, name: str, low: float | None = None) -> float | Tensor:
    """A float, or a tensor of shape () / (C,) broadcast against ``x`` as ``(1, C, 1, ...)``.

    ``low`` bounds floats only: a tensor's values are not checked, which would cost a device sync per call.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor of shape () or (C,), got {type(value).__name__}")
    if isinstance(value, Tensor):
        if value.ndim == 1 and value.numel() == x.shape[1]:
            value = value.view((1, -1) + (1,) * (x.ndim - 2))
        elif value.ndim != 0:
            raise ValueError(
                f"{name} must be a scalar or have shape (C,) = ({x.shape[1]},), got shape {tuple(value.shape)}"
            )
        return value.to(_work(x).dtype)
    value = float(value)
    if low is not None and not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def _check_float(value: object, name: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    v = float(value)
    if (low is not None and not v >= low) or (high is not None and not v <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return v


def _sum_count(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Number of cells in each adaptive window, ``(*out)``, to turn adaptive means into sums."""
    count = None
    for i, (n, o) in enumerate(zip(x.shape[2:], out)):
        starts, ends = adaptive_bounds(int(n), o)
        c = torch.tensor([e - s for s, e in zip(starts, ends)], dtype=_work(x).dtype, device=x.device)
        c = c.view((-1,) + (1,) * (len(out) - 1 - i))
        count = c if count is None else count * c
    assert count is not None
    return count


def _safe_root(s: Tensor, p: float | Tensor) -> Tensor:
    """``s ** (1/p)`` for ``s >= 0`` with a finite (zero) gradient where ``s == 0``."""
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, 1.0) ** (1.0 / p), 0.0)


def _cells(x: Tensor, win: Window | tuple[int, ...], padding_mode: str, counted: bool) -> tuple[Tensor, Tensor]:
    """The cells of each window as a view ``(N, C, *out, *kernel)`` of the padded input, and how many count
    ``(*out)``.

    Cells that do not count (uncounted zero padding, and the ceil-mode overhang past the padded input) are
    ``-inf``; counted zero padding is 0; other padding modes pad with copies of the input.
    """
    d = x.ndim - 2
    if not isinstance(win, Window):
        return adaptive_windows(x, win, -torch.inf), _sum_count(x, win)
    xp = pad(x, win, padding_mode, 0.0 if counted else -torch.inf)
    mp = pad(x.new_ones((1, 1, *win.size)), win, padding_mode, 1.0 if counted else 0.0)
    if any(win.overhang):
        hang = [v for h in reversed(win.overhang) for v in (0, h)]
        xp, mp = F.pad(xp, hang, value=-torch.inf), F.pad(mp, hang, value=0.0)
    return windows(xp, win), windows(mp, win).sum(tuple(range(-d, 0)))[0, 0]


# ---------------------------------------------------------------- statistics


def lp_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    p: float = 2.0,
    absolute: bool = False,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Power-average pooling, torch's ``lp_pool{1,2,3}d``: ``S^(1/p)``, ``S = sum x^p`` over each window.

    torch's formula, values and gradients: ``S = kernel cells * avg_pool(x^p)`` (a window cut by the input
    edge under ``ceil_mode`` is scaled by ``kernel cells / cells inside``, as torch does), then
    ``(sign(S) relu(|S|))^(1/p)``, so signed input gives what torch gives (NaN where a window's ``S`` is
    negative and ``1/p`` fractional). ``absolute=True`` pools ``|x|^p`` instead: the ``p``-norm of each
    window, finite on signed input. ``p = inf`` is the maximum of ``|x|``. Zero windows give 0 with a zero
    gradient (as torch's). Beyond torch: padding, padding modes and the adaptive form.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        p: the power (torch's ``norm_type``), ``p >= 1`` (``math.inf`` allowed).
        absolute: pool ``|x|^p`` (the window's ``p``-norm) instead of torch's ``x^p``.
        padding_mode: ``"zeros"`` (zeros add nothing to the sum), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global); each window's own cell count scales the mean.

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> lp_pool(torch.tensor([[[3.0, 4.0, 0.0, 0.0]]]), 2, p=2.0)
        tensor([[[5., 0.]]])
        >>> lp_pool(torch.tensor([[[-3.0, 4.0]]]), 2, p=3.0, absolute=True)
        tensor([[[4.4979]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    p = _check_float(p, "p", 1.0, math.inf)
    if not isinstance(absolute, bool):
        raise TypeError(f"absolute must be a bool, got {absolute!r}")
    if math.isinf(p):
        return max_pool(x.abs(), kernel_size, stride, padding, 1, ceil_mode,  # type: ignore[return-value]
                        padding_mode=padding_mode, output_size=output_size)
    y = dispatch("lp", x, win, p, absolute, padding_mode)
    if y is not None:
        return y
    xw = _work(x)
    t = xw.abs().pow(p) if absolute else xw.pow(p)
    if isinstance(win, Window):
        s = window_mean(t, win, padding_mode)
        cells: float | Tensor = float(math.prod(win.kernel))
    else:
        s, cells = window_mean(t, win), _sum_count(x, win)
    return ((torch.sign(s) * torch.relu(torch.abs(s))).mul(cells).pow(1.0 / p)).to(x.dtype)


def gem_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    p: float | Tensor = 3.0,
    eps: float = 1e-6,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Generalized mean ``(mean clamp(x, eps)^p)^(1/p)`` over each window.

    ``p = 1`` is the average (of ``clamp(x, eps)``), ``p -> inf`` the maximum.
    ``p`` may be a float or a tensor of shape ``()`` or ``(C,)`` (one per channel),
    learnable. Zero padding adds cells of value 0 (counted with ``count_include_pad``).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the mean.
        p: the power, ``> 0``; float or tensor ``()`` / ``(C,)``.
        eps: lower clamp of the input, ``> 0``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global GeM, as in image retrieval).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> gem_pool(torch.tensor([[[1.0, 3.0]]]), output_size=1, p=1.0)
        tensor([[[2.]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    pp = _channel_param(p, x, "p")
    if isinstance(pp, float) and not pp > 0:
        raise ValueError(f"p must be > 0, got {p!r}")
    eps = _check_float(eps, "eps", 0.0)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    y = dispatch("gem", x, win, pp, eps, padding_mode, count_include_pad)
    if y is not None:
        return y
    t = _work(x).clamp(min=eps) ** pp
    m = window_mean(t, win, padding_mode, count_include_pad) if isinstance(win, Window) else window_mean(t, win)
    return as_layout(_safe_root(m, pp).to(x.dtype), x)


def lse_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    beta: float | Tensor = 1.0,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Log-mean-exp ``(1/beta) log mean exp(beta x)`` over each window.

    A smooth maximum: ``beta -> 0`` gives the average, ``beta -> inf`` the maximum.
    Zero padding adds cells of value 0, counted with ``count_include_pad`` (as
    avg, so small ``beta`` gives avg). Computed as ``m + log(mean exp(beta (x - m))) / beta`` with
    ``m`` each window's maximum, so no exponential overflows and no window underflows, and as
    ``log1p`` of the mean of ``expm1`` where that mean is above ``-1/2`` (cells close to the maximum,
    small ``beta``), which loses nothing to cancellation. No value is inspected to choose a path.

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the mean.
        beta: inverse temperature ``> 0``; float or tensor ``()`` / ``(C,)``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> lse_pool(torch.tensor([[[0.0, 100.0]]]), 2, beta=50.0)
        tensor([[[99.9861]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    b = _channel_param(beta, x, "beta")
    if isinstance(b, float) and not b > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    y = dispatch("lse", x, win, b, padding_mode, count_include_pad)
    if y is not None:
        return y
    w, n = _cells(_work(x), win, padding_mode, count_include_pad)
    cells = tuple(range(x.ndim, w.ndim))
    m = w.detach().amax(cells)  # the shift cancels exactly; exponents <= 0 cannot overflow
    bw = b.view(b.shape + (1,) * len(cells)) if isinstance(b, Tensor) else b
    t = bw * (w - m.view(m.shape + (1,) * len(cells)))  # cells that do not count are -inf
    mean = torch.exp(t).sum(cells) / n
    # mean - 1 from expm1 (uncounted cells give -1 each: added back), exact where the cells are close
    mean1 = (torch.expm1(t).sum(cells) + (math.prod(w.shape[x.ndim:]) - n)) / n
    return as_layout((m + torch.where(mean1 > -0.5, torch.log1p(mean1), torch.log(mean)) / b).to(x.dtype), x)


def softpool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """SoftPool (Stergiou et al., 2021): ``sum softmax(x)_i x_i`` over each window.

    Zero padding cells carry no weight (as max pooling ignores them), so there is
    no ``count_include_pad``: the divisor cancels in the ratio. The softmax of each
    window's cells is shifted by the window's maximum, so nothing overflows or
    underflows whatever the input (no value is inspected to choose a path).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        padding_mode: ``"zeros"`` (ignored cells), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> softpool(torch.tensor([[[0.0, 1e4]]]), 2)
        tensor([[[10000.]]])
    """
    win = _geometry(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size)
    y = dispatch("softpool", x, win, padding_mode)
    if y is not None:
        return y
    w, _ = _cells(_work(x), win, padding_mode, False)
    cells = tuple(range(x.ndim, w.ndim))
    e = torch.exp(w - w.detach().amax(cells, keepdim=True))  # the shift cancels; cells that do not count: 0
    return as_layout(((e * torch.where(e > 0, w, 0.0)).sum(cells) / e.sum(cells)).to(x.dtype), x)


def _max_and_avg(
    x: Tensor, win: Window | tuple[int, ...], padding_mode: str, count_include_pad: bool
) -> tuple[Tensor, Tensor]:
    if not isinstance(win, Window):
        return native("adaptive_max_pool", x.ndim - 2)(x, win), window_mean(x, win)
    mx = window_max(x, win, padding_mode)
    assert isinstance(mx, Tensor)
    return mx, window_mean(x, win, padding_mode, count_include_pad)


def mixed_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    alpha: float | Tensor = 0.5,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Mixed pooling ``alpha max + (1 - alpha) avg`` over each window (Yu et al., 2014; Lee et al., 2016).

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the average (the max ignores it).
        alpha: weight of the max in ``[0, 1]``; float or tensor ``()`` / ``(C,)``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> mixed_pool(torch.tensor([[[1.0, 3.0]]]), 2, alpha=0.25)
        tensor([[[2.2500]]])
    """
    check_input(x)
    check_padding_mode(padding_mode)
    if output_size is not None:
        win: Window | tuple[int, ...] = resolve_output_size(x, output_size)
    elif kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    else:
        win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    a = _channel_param(alpha, x, "alpha", 0.0)
    if isinstance(a, float) and not a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(a, Tensor):
        a = a.to(x.dtype)
    y = dispatch("mixed", x, win, a, padding_mode, count_include_pad)
    if y is not None:
        return y
    mx, avg = _max_and_avg(x, win, padding_mode, count_include_pad)
    return as_layout(torch.lerp(avg, mx, a), x)  # avg + alpha (max - avg)


def gated_pool(
    x: Tensor,
    weight: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Gated max-average pooling (Lee, Gallagher & Tu, AISTATS 2016).

    ``a max + (1 - a) avg`` with a gate ``a = sigmoid(w . window)`` per window,
    ``w`` a learned kernel of the window's size: one convolution with stride =
    pooling stride over the padded input (grouped per channel). ``weight`` is
    ``(C, 1, *kernel)`` (one gate kernel per channel) or ``(1, 1, *kernel)``
    (one per layer, as in the paper's "responsive" gate). The adaptive/global
    form, whose windows have no fixed size, gates with ``sigmoid(w * window mean)``
    and a scalar ``w`` per channel: ``weight`` of shape ``(C,)`` or ``(1,)``.

    Args:
        x: input ``(N, C, *spatial)``.
        weight: gate kernel, see above.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints, ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        count_include_pad: zero padding counts in the average.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Returns:
        ``(N, C, *out)``, ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim.

    Example:
        >>> gated_pool(torch.tensor([[[1.0, 3.0]]]), torch.zeros(1, 1, 2), 2)  # gate 0.5
        tensor([[[2.5000]]])
    """
    check_input(x)
    check_padding_mode(padding_mode)
    if output_size is not None:
        win: Window | tuple[int, ...] = resolve_output_size(x, output_size)
    elif kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    else:
        win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a tensor, got {type(weight).__name__}")
    c, w = x.shape[1], weight.to(x.dtype)
    mx, avg = _max_and_avg(x, win, padding_mode, count_include_pad)
    if isinstance(win, Window):
        if tuple(w.shape) not in ((c, 1, *win.kernel), (1, 1, *win.kernel)):
            raise ValueError(
                f"weight must have shape (C, 1, *kernel) = {(c, 1, *win.kernel)} or {(1, 1, *win.kernel)}, "
                f"got {tuple(w.shape)}"
            )
        xp = pad(x, win, padding_mode, 0.0, extra=True)
        conv = getattr(F, f"conv{win.dims}d")
        z = crop(conv(xp, w.expand((c, 1, *win.kernel)), None, win.stride, 0, 1, c), win.out)
    else:
        if tuple(w.shape) not in ((c,), (1,)):
            raise ValueError(
                f"weight must have shape (C,) = ({c},) or (1,) for the adaptive form, got {tuple(w.shape)}"
            )
        z = w.view((1, -1) + (1,) * (x.ndim - 2)) * avg
    return as_layout(avg + torch.sigmoid(z) * (mx - avg), x)

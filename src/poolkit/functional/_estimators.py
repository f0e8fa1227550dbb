"""Window estimators behind :mod:`poolkit.functional.stats`: window means of pointwise maps (cached per call),
the per-distribution maximum-likelihood fits and log-likelihoods, and the series for the gamma functions.

Every estimator is built from native average poolings of pointwise maps and native max/min poolings (plain,
device-generic torch ops, no value inspected to choose a path); the one exception is the Weibull shape, whose
likelihood equation has a per-window exponent and reads the windows as a strided view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

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
    pad,
    resolve,
    resolve_output_size,
    windows,
)
from .order import max_pool, min_pool
from .power import window_mean

_S_MIN = 1e-4  # gamma: floor of log E[x] - E[log x]; the shape then stays below ~1/(2 s) = 5000
_WEIBULL_K = (0.02, 100.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _adaptive_count(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Cells per adaptive window ``(1, 1, *out)``: the product of per-dim window lengths."""
    c = x.new_ones((1, 1, *out))
    for i, (n, o) in enumerate(zip(x.shape[2:], out)):
        starts, ends = adaptive_bounds(int(n), o)
        lens = torch.tensor([e - s for s, e in zip(starts, ends)], dtype=x.dtype, device=x.device)
        shape = [1] * (2 + len(out))
        shape[2 + i] = o
        c = c * lens.view(shape)
    return c


class _Windows:
    """One input and one window geometry; caches window means of pointwise maps by name."""

    def __init__(
        self,
        x: Tensor,
        kernel_size: IntOrTuple | None,
        stride: IntOrTuple | None,
        padding: Padding,
        ceil_mode: bool,
        padding_mode: str,
        output_size: OutputSize,
        eps: float,
    ) -> None:
        check_input(x)
        check_padding_mode(padding_mode)
        self.dtype = x.dtype
        self.x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        self.eps = eps
        self.padding_mode = padding_mode
        self.win: Window | tuple[int, ...]
        if output_size is not None:
            self.win = resolve_output_size(x, output_size)
            self.kw: dict = {"output_size": self.win}
        else:
            if kernel_size is None:
                raise TypeError("kernel_size is required unless output_size is given")
            self.win = resolve(x, kernel_size, stride, padding, 1, ceil_mode)
            self.kw = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                           padding_mode=padding_mode)
        self._cache: dict[str, Tensor] = {}

    @property
    def adaptive(self) -> bool:
        return not isinstance(self.win, Window)

    @property
    def padded(self) -> bool:
        """Some windows see padding or run past the input (their statistics depend on ``padding_mode``)."""
        return isinstance(self.win, Window) and (self.win.padded or any(self.win.overhang))

    @property
    def size(self) -> int:
        """Cells in a full window (adaptive: the average window)."""
        if isinstance(self.win, Window):
            return math.prod(self.win.kernel)
        return math.prod(max(n // o, 1) for n, o in zip(self.x.shape[2:], self.win))

    def count(self) -> Tensor | float:
        """Cells per window (scores use unpadded windows, where this is exact)."""
        if isinstance(self.win, Window):
            return float(self.size)
        if "count" not in self._cache:
            self._cache["count"] = _adaptive_count(self.x, self.win)
        return self._cache["count"]

    def xs(self) -> Tensor:
        if "xs" not in self._cache:
            self._cache["xs"] = self.x.clamp_min(self.eps)
        return self._cache["xs"]

    def log(self) -> Tensor:
        if "log" not in self._cache:
            self._cache["log"] = self.xs().log()
        return self._cache["log"]

    def mean(self, key: str, fn: Callable[[], Tensor]) -> Tensor:
        """Window mean of the pointwise map ``fn()``, cached under ``key``."""
        k = "E:" + key
        if k not in self._cache:
            self._cache[k] = window_mean(fn(), self.win, self.padding_mode, count_include_pad=False)
        return self._cache[k]

    def max(self) -> Tensor:
        if "max" not in self._cache:
            self._cache["max"] = max_pool(self.x, **self.kw)  # type: ignore[assignment]
        return self._cache["max"]

    def min(self) -> Tensor:
        if "min" not in self._cache:
            self._cache["min"] = min_pool(self.x, **self.kw)  # type: ignore[assignment]
        return self._cache["min"]

    def flat_windows(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``t`` as windows ``(N, C, *out, K)`` and a 0/1 weight of the cells that count ``(1, 1, *out, K)``."""
        d = t.ndim - 2
        ones = t.new_ones((1, 1, *t.shape[2:]))
        if isinstance(self.win, Window):
            tw = windows(pad(t, self.win, self.padding_mode, 1.0, extra=True), self.win)
            mw = windows(pad(ones, self.win, self.padding_mode, 0.0, extra=True), self.win)
        else:
            tw = adaptive_windows(t, self.win, 1.0)
            mw = adaptive_windows(ones, self.win, 0.0)
        return tw.flatten(-d), mw.flatten(-d)

    def out(self, y: Tensor) -> Tensor:
        """The result in the input's dtype and layout (fresh strides, as every smooth pool)."""
        return as_layout(y.to(self.dtype), self.x)


class _NonzeroWindows(_Windows):
    """The same windows restricted to their non-zero cells (the continuous part of a hurdle model).

    ``mean`` is the mean over a window's non-zero cells; a window without any gives 0 there (it then
    carries no weight in the scores), and the Weibull view falls back to all its cells.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nz = (self.x != 0).to(self.x.dtype)
        self.frac = window_mean(self.nz, self.win)  # share of non-zero cells per window
        self._floor = 1.0 / math.prod(self.x.shape[2:])  # below any non-zero share: keeps gradients bounded

    def count(self) -> Tensor:
        return (self.frac * super().count()).clamp_min(1.0)  # non-zero cells

    def mean(self, key: str, fn: Callable[[], Tensor]) -> Tensor:
        k = "E:" + key
        if k not in self._cache:
            self._cache[k] = window_mean(fn() * self.nz, self.win) / self.frac.clamp_min(self._floor)
        return self._cache[k]

    def flat_windows(self, t: Tensor) -> tuple[Tensor, Tensor]:
        tw, mw = super().flat_windows(t)
        nzw = super().flat_windows(self.nz.expand_as(t))[0] * mw
        return tw, torch.where(nzw.sum(-1, keepdim=True) > 0, nzw, mw)


# ---------------------------------------------------------------- per-distribution estimators


def _m(w: _Windows) -> Tensor:
    return w.mean("x", lambda: w.x)


def _var(w: _Windows) -> Tensor:
    m = _m(w)
    return (w.mean("x2", lambda: w.x * w.x) - m * m).clamp_min(0.0)


def _log_moments(w: _Windows) -> tuple[Tensor, Tensor]:
    ml = w.mean("log", w.log)
    vl = (w.mean("log2", lambda: w.log() * w.log()) - ml * ml).clamp_min(0.0)
    return ml, vl


_SHIFT = 6  # recurrence shift before the asymptotic series: error < 1e-10 at z >= 6

# Elementwise series instead of torch.digamma/polygamma/lgamma: those are ~50x slower on CPU, and
# log k - digamma(k), trigamma(k) - 1/k cancel badly for large k when taken as differences.


def _log_minus_digamma(k: Tensor) -> Tensor:
    """``log k - digamma(k)``, ``k > 0``: shift by 6 (recurrence), then the asymptotic series."""
    z = k + _SHIFT
    r = 1 / z
    r2 = r * r
    g = r / 2 + r2 * (1 / 12 + r2 * (-1 / 120 + r2 * (1 / 252 + r2 * (-1 / 240 + r2 / 132))))
    return g + sum(1 / (k + i) for i in range(_SHIFT)) - torch.log1p(_SHIFT / k)


def _trigamma_minus_inv(k: Tensor) -> Tensor:
    """``trigamma(k) - 1/k``, ``k > 0``."""
    z = k + _SHIFT
    r = 1 / z
    r2 = r * r
    h = r2 * (1 / 2 + r * (1 / 6 + r2 * (-1 / 30 + r2 * (1 / 42 + r2 * (-1 / 30 + r2 * 5 / 66)))))
    return h + sum(1 / (k + i) ** 2 for i in range(_SHIFT)) - _SHIFT / (k * z)


def _lgamma(k: Tensor) -> Tensor:
    """``lgamma(k)``, ``k > 0``, by Stirling's series after the shift (its gradient needs no digamma)."""
    z = k + _SHIFT
    r = 1 / z
    r2 = r * r
    st = (z - 0.5) * z.log() - z + _HALF_LOG_2PI + r * (1 / 12 + r2 * (-1 / 360 + r2 * (1 / 1260 - r2 / 1680)))
    return st - sum((k + i).log() for i in range(_SHIFT))


def _gamma_shape(w: _Windows, steps: int) -> Tensor:
    """Minka's closed-form start (within 1.5 % of the MLE) refined by ``steps`` generalized Newton steps."""
    key = f"gamma_shape{steps}"
    if key in w._cache:
        return w._cache[key]
    m = _m(w).clamp_min(w.eps)
    ml = w.mean("log", w.log)
    s = (m.log() - ml).clamp_min(_S_MIN)
    k = (3 - s + ((s - 3) ** 2 + 24 * s).sqrt()) / (12 * s)
    for _ in range(steps):
        # Minka: 1/k <- 1/k + (log k - digamma(k) - s) / (k² (1/k - trigamma(k)))
        k = 1 / (1 / k - (_log_minus_digamma(k) - s) / (k * k * _trigamma_minus_inv(k)))
        k = k.clamp_min(1e-6)
    w._cache[key] = k
    return k


def _log_windows(w: _Windows) -> tuple[Tensor, Tensor, Tensor]:
    """``log x`` as windows ``(N, C, *out, K)`` (cells outside a window set to its max), their 0/1
    weights, and the (detached) window max of ``log x`` ``(N, C, *out, 1)``."""
    if "logwin" not in w._cache:
        lw, mw = w.flat_windows(w.log())
        lmax = lw.detach().masked_fill(mw == 0, -torch.inf).amax(-1, keepdim=True)
        w._cache["logwin"], w._cache["maskwin"], w._cache["lmax"] = torch.where(mw > 0, lw, lmax), mw, lmax
    return w._cache["logwin"], w._cache["maskwin"], w._cache["lmax"]


def _weibull_shape(w: _Windows, steps: int) -> Tensor:
    """Newton on the Weibull likelihood equation ``1/k + E[log x] - E[x^k log x]/E[x^k] = 0``.

    Starts from the Gumbel moment estimate ``k = pi / (sqrt 6 sd(log x))``; every step needs
    ``E[x^k ...]`` with a per-window ``k``, so the windows are read as a strided view here. ``x^k`` is
    taken relative to the window's maximum (the equation is scale-free), so it can neither overflow
    nor vanish.
    """
    lw, mw, lmax = _log_windows(w)
    cnt = mw.sum(-1)
    mean = lambda t: (t * mw).sum(-1) / cnt
    lc = lw - lmax  # <= 0, and 0 at the window max
    ml = mean(lc)
    vl = (mean(lc * lc) - ml * ml).clamp_min(0.0)
    lo, hi = _WEIBULL_K
    k = (math.pi / math.sqrt(6) / (vl + w.eps**2).sqrt()).clamp(lo, hi)
    for _ in range(steps):
        p = (k.unsqueeze(-1) * lc).exp()
        b = mean(p)  # >= 1 / window cells
        a = mean(p * lc)
        c = mean(p * lc * lc)
        f = 1 / k + ml - a / b
        fp = -1 / (k * k) - (c * b - a * a) / (b * b)
        k = (k - f / fp).clamp(lo, hi)
    return k


def _power_mean(w: _Windows, k: float | Tensor) -> Tensor:
    """``(E[x^k])^(1/k)`` of ``x`` clamped to ``eps`` (the Weibull scale for shape ``k``)."""
    if isinstance(k, Tensor):  # per-window shape: same strided view as the shape estimate
        lw, mw, lmax = _log_windows(w)
        ek = ((k.unsqueeze(-1) * (lw - lmax)).exp() * mw).sum(-1) / mw.sum(-1)
        return (lmax.squeeze(-1) + ek.log() / k).exp()
    # relative to the (detached) map maximum, so x^k cannot overflow
    xs = w.xs()
    top = xs.detach().flatten(2).amax(-1).view(xs.shape[:2] + (1,) * (xs.ndim - 2))
    tiny = torch.finfo(xs.dtype).tiny
    return top * w.mean(f"pow{k!r}", lambda: (xs / top) ** k).clamp_min(tiny) ** (1 / k)


def _fit(w: _Windows, dist: str, params: Sequence[str], k: float | None, steps: int) -> dict[str, Tensor]:
    eps = w.eps
    out: dict[str, Tensor] = {}
    if dist == "uniform":
        for p in params:
            out[p] = w.max() if p == "high" else w.min()
    elif dist == "exponential":
        m = _m(w)
        for p in params:
            out[p] = m if p == "scale" else 1 / m.clamp_min(eps)
    elif dist == "normal":
        for p in params:
            if p == "mean":
                out[p] = _m(w)
            elif p == "var":
                out[p] = _var(w)
            else:
                out[p] = (_var(w) + eps * eps).sqrt()
    elif dist == "gamma":
        shape = _gamma_shape(w, steps)
        for p in params:
            out[p] = shape if p == "shape" else _m(w).clamp_min(eps) / shape
    elif dist == "weibull":
        if k is None:
            kk: float | Tensor = _weibull_shape(w, steps)
        elif "shape" in params:
            raise ValueError("param='shape' for dist='weibull' needs k=None (the shape is then estimated)")
        else:
            kk = k
        for p in params:
            out[p] = kk if p == "shape" else _power_mean(w, kk)  # type: ignore[assignment]
    elif dist == "lognormal":
        ml, vl = _log_moments(w)
        for p in params:
            out[p] = ml.exp() if p == "scale" else ml if p == "mu" else (vl + eps * eps).sqrt()
    return out


def _loglik(w: _Windows, dist: str, k: float | None, steps: int) -> Tensor:
    """Mean log-likelihood per cell of each window under ``dist`` fitted to that window (by MLE).

    Positive-support densities are evaluated at ``x`` clamped to ``eps``; spreads are floored as in
    :func:`_fit`. Uniform is scored as U[0, max (n + 1) / n] (the unbiased endpoint), ``-log max -
    log(1 + 1/n)``: the likelihood of U[0, max] itself is degenerate (any further sample above the max
    has probability 0) and optimistic by ~1/n on its own window.
    """
    eps = w.eps
    if dist == "uniform":  # endpoint max (n + 1) / n, unbiased: U[0, max] itself is degenerate
        n = w.count()
        return -w.max().clamp_min(eps).log() - (math.log1p(1 / n) if isinstance(n, float) else torch.log1p(1 / n))
    if dist == "exponential":
        m = w.mean("xs", w.xs).clamp_min(eps)
        return -m.log() - 1
    if dist == "normal":
        var = _var(w)
        sd2 = var + eps * eps
        return -_HALF_LOG_2PI - 0.5 * sd2.log() - 0.5 * var / sd2
    if dist == "gamma":
        shape = _gamma_shape(w, steps)
        m = w.mean("xs", w.xs).clamp_min(eps)
        ml = w.mean("log", w.log)
        scale = m / shape
        return (shape - 1) * ml - m / scale - shape * scale.log() - _lgamma(shape)
    if dist == "lognormal":
        ml, vl = _log_moments(w)
        sd2 = vl + eps * eps
        return -ml - _HALF_LOG_2PI - 0.5 * sd2.log() - 0.5 * vl / sd2
    # weibull: at the MLE scale E[(x/λ)^k] = 1
    kk: float | Tensor = _weibull_shape(w, steps) if k is None else k
    lam = _power_mean(w, kk)
    ml = w.mean("log", w.log)
    logk = kk.log() if isinstance(kk, Tensor) else math.log(kk)
    return logk - kk * lam.log() + (kk - 1) * ml - 1

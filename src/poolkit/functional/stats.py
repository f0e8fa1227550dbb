"""Pooling as a summary statistic: maximum-likelihood (MLE) pooling, several statistics at once, and a
distribution chosen per channel.

A pooling layer replaces a window by a summary statistic; the most efficient summary of a sample from a
known distribution is the MLE of its parameter. Every estimator here is built from window means of
pointwise maps (``E[x]``, ``E[x^2]``, ``E[log x]``, ``E[x^k]``: one native average pooling each) and
native max/min pooling, so the local, adaptive and global forms share one code path. The one exception
is the Weibull *shape*, whose likelihood equation has a per-window exponent: it reads the windows as a
strided view (a ``kernel``-fold buffer), used only when that shape is asked for.

Distributions, parameters (the first is the default) and estimators:

============  ===========================  ====================================================
dist          param                        estimator
============  ===========================  ====================================================
uniform       high, low                    max (the MLE of θ for U[0, θ]), min
exponential   scale, rate                  mean, 1 / mean
normal        mean, std, var               mean, sqrt(var + eps²), E[x²] − E[x]² (biased, as the MLE)
gamma         scale, shape                 Minka's closed form for the shape, ``steps`` Newton steps
weibull       scale, shape                 (E[x^k])^(1/k) for a known ``k``; shape by ``steps``
                                           Newton steps when ``k=None``
lognormal     scale, mu, sigma             exp(E[log x]), E[log x], sqrt(Var[log x] + eps²)
============  ===========================  ====================================================

Zeros and constant windows (post-ReLU maps are full of both) never give NaN or Inf:

* positive-support distributions (all but normal and uniform) see ``x`` clamped to ``eps`` before any
  log or power; ``eps`` defaults to ``1e-6``;
* standard deviations are ``sqrt(var + eps²)``, so they stay ``>= eps`` with a finite gradient;
* the gamma statistic ``s = log E[x] − E[log x]`` is clamped to ``>= 1e-4`` (shape at most ~5000); a
  window of zeros has ``s = 0`` and gets that largest shape;
* Weibull shapes are clamped to ``[0.02, 100]`` after every step; ``E[x^k]`` to the dtype's tiny.

The per-channel choice of ``adaptive_mle`` scores each candidate by its log-likelihood on the non-zero
cells of each window (a hurdle model, so zeros cannot make a density with a pole at 0 win), see
:func:`distribution_scores`.

Half-precision inputs (float16/bfloat16) are computed in float32 and cast back, because variances are
differences of window means that cancel badly in 11 bits.

Window padding with ``padding_mode="zeros"`` *excludes* the padded cells (a window's statistic is that
of its real cells, ``count_include_pad=False``; max/min pad with their neutral element); the other modes
pad with copies of the input, which then count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Union

import torch
from torch import Tensor

from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
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

__all__ = [
    "DISTRIBUTIONS",
    "STATISTICS",
    "adaptive_mle_pool",
    "distribution_scores",
    "mle_pool",
    "multistat_pool",
]

#: distribution -> accepted ``param`` names; the first is the default (and what ``adaptive_mle`` outputs)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("high", "low"),
    "exponential": ("scale", "rate"),
    "normal": ("mean", "std", "var"),
    "gamma": ("scale", "shape"),
    "weibull": ("scale", "shape"),
    "lognormal": ("scale", "mu", "sigma"),
}
#: statistics accepted by :func:`multistat_pool`
STATISTICS: tuple[str, ...] = ("max", "min", "range", "mean", "std", "var", "gmean")
#: number of free parameters per distribution (the AIC penalty)
_NPARAMS = {"uniform": 1, "exponential": 1, "normal": 2, "gamma": 2, "weibull": 2, "lognormal": 2}
_DEFAULT_STEPS = {"gamma": 2, "weibull": 6}
_S_MIN = 1e-4  # gamma: floor of log E[x] - E[log x]; the shape then stays below ~1/(2 s) = 5000
_WEIBULL_K = (0.02, 100.0)
_MIN_CELLS = 3  # non-zero cells a window needs to count in the scores
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

Names = Union[str, Sequence[str]]  # noqa: UP007 (a runtime alias on Python 3.10)


def _names(value: Names | None, name: str, accepted: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    """``"a+b"`` / ``["a", "b"]`` / ``None`` -> validated tuple of names."""
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        items = [v.strip().lower() for v in value.split("+")]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        items = [v.strip().lower() for v in value]
    else:
        raise TypeError(f"{name} must be a name, a '+'-joined string or a sequence of names, got {value!r}")
    bad = [v for v in items if v not in accepted]
    if not items or bad:
        raise ValueError(f"{name} must name one or more of {', '.join(accepted)}, got {value!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} names a value twice: {value!r}")
    return tuple(items)


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a float in (0, 1), got {eps!r}")
    return float(eps)


def _check_steps(steps: int | None, dist: str) -> int:
    if steps is None:
        return _DEFAULT_STEPS.get(dist, 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 50:
        raise ValueError(f"steps must be an int in [0, 50] (Newton iterations) or None, got {steps!r}")
    return steps


def _check_k(k: float | None) -> float | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k < math.inf:
        raise ValueError(f"k (the Weibull shape) must be a positive finite number or None, got {k!r}")
    return float(k)


def _adaptive_count(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Cells per adaptive window ``(1, 1, *out)``: the product of per-dim window lengths."""
    from ._window import adaptive_bounds

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
        return y.to(self.dtype)


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


# ---------------------------------------------------------------- public functions


def mle_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    dist: str = "gamma",
    param: Names | None = None,
    k: float | None = None,
    eps: float = 1e-6,
    steps: int | None = None,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Maximum-likelihood estimate of a distribution's parameter(s) over each window, in 1-D, 2-D or 3-D.

    ``dist="uniform"`` is max pooling, ``"exponential"`` and ``"normal"`` (mean) are average pooling,
    ``"weibull"`` with a known shape ``k`` is the power mean with ``p = k``. ``"gamma"`` estimates the
    shape with Minka's closed form ``k0 = (3 - s + sqrt((s - 3)² + 24 s)) / (12 s)``,
    ``s = log E[x] - E[log x]`` (within 1.5 % of the MLE), then ``steps`` (default 2) generalized Newton
    steps, after which it agrees with ``scipy.stats.gamma.fit(floc=0)`` within 1e-5 (tested); the scale is
    ``E[x] / shape``. See the module docstring for every estimator and epsilon.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size; required unless ``output_size``.
        stride: step between windows; default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        dist: ``"uniform"``, ``"exponential"``, ``"normal"``, ``"gamma"``, ``"weibull"`` or ``"lognormal"``.
        param: the parameter(s) to output (see :data:`DISTRIBUTIONS`; default the first), a name,
            a ``"+"``-joined string (``"shape+scale"``) or a sequence. Several parameters stack as channels,
            parameter-major: output channel ``j * C + c`` is parameter ``j`` of input channel ``c``.
        k: Weibull shape; ``None`` estimates it per window (``steps`` Newton steps, default 6, each
            clamped to ``[0.02, 100]``; this path reads the windows as a strided view).
        eps: values are clamped to ``eps`` before logs and powers; spreads are ``sqrt(var + eps²)``.
        steps: Newton steps for the gamma shape (default 2) or the Weibull shape (default 6).
        padding_mode: ``"zeros"`` (padded cells excluded), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``(N, C, *spatial) -> (N, C * len(param), *out)`` with
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` per dim (ceil with ``ceil_mode``).

    Example:
        >>> x = torch.tensor([[[1.0, 3.0, 2.0, 2.0]]])
        >>> mle_pool(x, 2, dist="uniform")
        tensor([[[3., 2.]]])
        >>> mle_pool(x, 2, dist="normal", param="mean+std").shape
        torch.Size([1, 2, 2])
    """
    if not isinstance(dist, str) or dist.lower() not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
    dist = dist.lower()
    params = _names(param, "param", DISTRIBUTIONS[dist], DISTRIBUTIONS[dist][:1])
    w = _Windows(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size, _check_eps(eps))
    fitted = _fit(w, dist, params, _check_k(k), _check_steps(steps, dist))
    ys = [fitted[p] for p in params]
    return w.out(ys[0] if len(ys) == 1 else torch.cat(ys, dim=1))


def multistat_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    stats: Names = ("max", "range"),
    eps: float = 1e-6,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """Several summary statistics of each window side by side as channels.

    ``stats`` among ``max``, ``min``, ``range`` (max − min), ``mean``, ``std`` (``sqrt(var + eps²)``),
    ``var`` (biased), ``gmean`` (geometric mean of ``x`` clamped to ``eps``). ``"max+range"`` is max and
    max−min pooling in parallel, as used for convolutions over multivariate sensor data.
    Channels are statistic-major: output channel ``j * C + c`` is statistic ``j`` of input channel ``c``.

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        stats: names as a ``"+"``-joined string or a sequence.
        eps: floor of ``std`` and of ``x`` before the log in ``gmean``.
        padding_mode: ``"zeros"`` (padded cells excluded), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``(N, C, *spatial) -> (N, C * len(stats), *out)``, ``out`` as for :func:`mle_pool`.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0, 2.0, 2.0]]])
        >>> multistat_pool(x, 2, stats="max+range")
        tensor([[[3., 2.],
                 [2., 0.]]])
    """
    names = _names(stats, "stats", STATISTICS, ())
    w = _Windows(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size, _check_eps(eps))
    ys = []
    for s in names:
        if s == "max":
            ys.append(w.max())
        elif s == "min":
            ys.append(w.min())
        elif s == "range":
            ys.append(w.max() - w.min())
        elif s == "mean":
            ys.append(_m(w))
        elif s == "var":
            ys.append(_var(w))
        elif s == "std":
            ys.append((_var(w) + w.eps**2).sqrt())
        else:
            ys.append(w.mean("log", w.log).exp())
    return w.out(torch.cat(ys, dim=1))


def _scores(w: _NonzeroWindows, dists: Sequence[str], k: float | None, steps: int | None, criterion: str) -> Tensor:
    """``(N, C, D)``: each distribution's mean log-likelihood per non-zero cell, averaged over windows
    weighted by their non-zero share (AIC: minus ``n_params / non-zero cells`` per window)."""
    out = []
    # windows with fewer than 3 non-zero cells carry no evidence: a 2-parameter fit to 1 or 2 points is degenerate
    wts = w.frac * (w.count() >= _MIN_CELLS)
    total = wts.flatten(2).sum(-1).clamp_min(w._floor)
    for dist in dists:
        ll = _loglik(w, dist, k, _check_steps(steps, dist))
        if criterion == "aic":  # -AIC / (2 n) = mean log-likelihood - p / n
            ll = ll - _NPARAMS[dist] / w.count()
        out.append((ll * wts).flatten(2).sum(-1) / total)
    return torch.stack(out, dim=-1)


def _score_windows(w: _Windows, kernel_size, stride, output_size, eps: float, score_kernel_size=None
                   ) -> _NonzeroWindows:
    """Unpadded windows (scores, and so the soft mix, do not depend on ``padding_mode``), non-zero cells."""
    if score_kernel_size is not None:
        kernel_size, stride, output_size = score_kernel_size, None, None
    try:
        return _NonzeroWindows(w.x, kernel_size, stride, 0, False, "zeros", output_size, eps)
    except ValueError:  # kernel only fits with padding: score the whole map
        return _NonzeroWindows(w.x, None, None, 0, False, "zeros", 1, eps)


def _check_criterion(criterion: str) -> str:
    if criterion not in ("loglik", "aic"):
        raise ValueError(f"criterion must be 'loglik' or 'aic', got {criterion!r}")
    return criterion


def distribution_scores(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    *,
    dists: Names = ("exponential", "gamma", "normal", "uniform"),
    criterion: str = "aic",
    k: float | None = None,
    eps: float = 1e-6,
    steps: int | None = None,
    output_size: OutputSize = None,
) -> Tensor:
    """How well each distribution describes each channel's windows: ``(N, C, len(dists))``.

    Post-ReLU maps are full of exact zeros, and a density with a pole at 0 (gamma or Weibull with
    shape < 1, lognormal) would win on them with an unbounded likelihood. So the scores follow a hurdle
    model: each window's exact zeros are a Bernoulli part shared by every candidate (it cancels in the
    comparison), and each distribution is fitted by MLE to the window's *non-zero* cells. The score is the
    mean log-likelihood per non-zero cell, averaged over the (unpadded) windows weighted by their number
    of non-zero cells; ``criterion="aic"`` subtracts ``n_params / n`` per window (``-AIC / (2 n)``, ``n``
    its non-zero cells). Higher is better. Positive-support densities see values clamped to ``eps``
    (negative inputs are not modelled by them), spreads are floored at ``eps``, so constant windows
    score high but finite for normal and lognormal; uniform is scored with the unbiased endpoint
    ``max (n + 1) / n``. Windows with fewer than 3 non-zero cells carry no weight (a two-parameter
    fit to one or two points is degenerate); a map without such a window scores 0 for every candidate.

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        dists: distributions (see :data:`DISTRIBUTIONS`), ``"+"``-joined or a sequence.
        criterion: ``"aic"`` (default; lets a one-parameter candidate beat one that nests it) or
            ``"loglik"``.
        k: Weibull shape (``None``: estimated).
        eps: see :func:`mle_pool`.
        steps: Newton steps (see :func:`mle_pool`).
        output_size: adaptive windows instead (``1``: the whole map).

    Example:
        >>> x = torch.rand(2, 3, 16)
        >>> distribution_scores(x, 4, dists="uniform+normal").shape
        torch.Size([2, 3, 2])
    """
    names = _names(dists, "dists", tuple(DISTRIBUTIONS), ())
    w = _NonzeroWindows(x, kernel_size, stride, 0, False, "zeros", output_size, _check_eps(eps))
    return w.out(_scores(w, names, _check_k(k), steps, _check_criterion(criterion)))


def adaptive_mle_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    dists: Names = ("exponential", "gamma", "normal", "uniform"),
    choice: Tensor | None = None,
    temperature: float = 1.0,
    criterion: str = "aic",
    k: float | None = None,
    eps: float = 1e-6,
    steps: int | None = None,
    score_kernel_size: IntOrTuple | None = None,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
) -> Tensor:
    """MLE pooling with the distribution chosen per channel.

    Every distribution in ``dists`` is fitted to each window and outputs its default parameter (the first
    of :data:`DISTRIBUTIONS`: uniform -> max, exponential -> mean, normal -> mean, gamma -> scale,
    weibull -> scale, lognormal -> geometric mean). With ``choice`` (an int tensor ``(C,)`` of indices
    into ``dists``, e.g. fixed by :func:`poolkit.nn.stats.calibrate`) channel ``c`` takes distribution
    ``choice[c]``; a negative entry, or ``choice=None``, mixes softly with weights
    ``softmax(score / temperature)`` per sample and channel, the scores of :func:`distribution_scores`
    on the unpadded windows (so the mix does not depend on ``padding_mode``); gradients flow through
    the weights too. With a complete choice only the distributions in use are fitted.

    Args:
        x: input ``(N, C, *spatial)``.
        kernel_size: window size; required unless ``output_size``.
        stride: default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        dists: candidate distributions, ``"+"``-joined or a sequence.
        choice: ``(C,)`` integer tensor of per-channel indices into ``dists``; ``-1`` (or ``None``) = soft.
        temperature: softmax temperature of the soft mix (> 0).
        criterion: ``"aic"`` or ``"loglik"``, see :func:`distribution_scores`.
        k: Weibull shape (``None``: estimated).
        eps: see :func:`mle_pool`.
        steps: Newton steps (see :func:`mle_pool`).
        score_kernel_size: score the candidates on non-overlapping windows of this size instead of the
            pooling windows (a window larger than the input: the whole map). Small pooling windows
            (``kernel_size=2``) hold too few non-zero cells for any evidence (see
            :func:`distribution_scores`).
        padding_mode: ``"zeros"`` (padded cells excluded), ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form (``1`` = global).

    Shape:
        ``(N, C, *spatial) -> (N, C, *out)``, ``out`` as for :func:`mle_pool`.

    Example:
        >>> x = torch.rand(2, 3, 16)
        >>> adaptive_mle_pool(x, 2).shape
        torch.Size([2, 3, 8])
        >>> y = adaptive_mle_pool(x, 2, dists="uniform+normal", choice=torch.tensor([0, 1, 0]))
        >>> torch.equal(y[:, 0], x.view(2, 3, 8, 2).amax(-1)[:, 0])
        True
    """
    names = _names(dists, "dists", tuple(DISTRIBUTIONS), ())
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    _check_criterion(criterion)
    eps = _check_eps(eps)
    k = _check_k(k)
    w = _Windows(x, kernel_size, stride, padding, ceil_mode, padding_mode, output_size, eps)
    C = w.x.shape[1]
    hard = None
    if choice is not None:
        if not isinstance(choice, Tensor) or choice.is_floating_point() or choice.shape != (C,):
            raise ValueError(f"choice must be an integer tensor of shape ({C},), one index per channel, got {choice!r}")
        hard = choice.to(w.x.device)
        if bool((hard >= len(names)).any()):
            raise ValueError(f"choice entries must be < len(dists) = {len(names)} (or -1 for soft), got {choice!r}")
    soft_needed = hard is None or bool((hard < 0).any())
    if soft_needed:
        used = list(range(len(names)))
    else:  # calibrated: fit only the distributions some channel uses
        assert hard is not None
        used = sorted(set(hard.tolist()))
        hard = torch.tensor([-1] * len(names), device=hard.device).index_put_(
            (torch.tensor(used, device=hard.device),), torch.arange(len(used), device=hard.device))[hard]
    ys = torch.stack(
        [_fit(w, names[i], DISTRIBUTIONS[names[i]][:1], k, _check_steps(steps, names[i]))[DISTRIBUTIONS[names[i]][0]]
         for i in used], dim=-1
    )  # (N, C, *out, D)
    lead = (1, C) + (1,) * (ys.ndim - 3)
    if soft_needed:
        sw = _score_windows(w, kernel_size, stride, output_size, eps, score_kernel_size)
        wts = torch.softmax(_scores(sw, names, k, steps, criterion) / temperature, dim=-1)
        wts = wts.view(wts.shape[:2] + (1,) * (ys.ndim - 3) + wts.shape[-1:])
    if hard is None:
        y = (ys * wts).sum(-1)
    else:
        onehot = torch.nn.functional.one_hot(hard.clamp_min(0), len(used)).to(ys.dtype).view((*lead, len(used)))
        if soft_needed:
            onehot = torch.where((hard >= 0).view((*lead, 1)), onehot, wts)
        y = (ys * onehot).sum(-1)
    return w.out(y)

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
from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from ._estimators import _fit, _loglik, _m, _NonzeroWindows, _var, _Windows
from ._window import IntOrTuple, OutputSize, Padding

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
_MIN_CELLS = 3  # non-zero cells a window needs to count in the scores

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
    soft_needed, used = True, list(range(len(names)))
    if choice is not None:
        if not isinstance(choice, Tensor) or choice.is_floating_point() or choice.shape != (C,):
            raise ValueError(f"choice must be an integer tensor of shape ({C},), one index per channel, got {choice!r}")
        hard = choice.to(w.x.device)
        msg = f"choice entries must be < len(dists) = {len(names)} (or -1 for soft)"
        if choice.device.type == "cpu" and not torch.compiler.is_compiling():  # a CPU read: no device sync
            if bool((choice >= len(names)).any()):
                raise ValueError(f"{msg}, got {choice.tolist()}")
            soft_needed = bool((choice < 0).any())
            if not soft_needed:  # calibrated: fit only the distributions some channel uses
                used = sorted(set(choice.tolist()))
                hard = torch.tensor([-1] * len(names), device=hard.device).index_put_(
                    (torch.tensor(used, device=hard.device),), torch.arange(len(used), device=hard.device))[hard]
        else:  # checked on the device, no sync (nor graph break); every distribution fitted, soft entries mix
            torch._assert_async((hard < len(names)).all(), msg)
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
        onehot = (hard.clamp_min(0).unsqueeze(-1) == torch.arange(len(used), device=hard.device)).to(ys.dtype)
        onehot = onehot.view((*lead, len(used)))
        if soft_needed:
            onehot = torch.where((hard >= 0).view((*lead, 1)), onehot, wts)
        y = (ys * onehot).sum(-1)
    return w.out(y)

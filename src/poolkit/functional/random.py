"""Random pools: stochastic pooling (Zeiler & Fergus 2013) and fractional max pooling (Graham 2014).

Both draw in training and are deterministic in eval (``training=False``):
stochastic pooling then returns the probability-weighted mean of each window,
fractional max pooling a fixed pseudo-random grid (every sample ``u = 0.5``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._fast import dispatch
from ._fast import random as _kernels  # noqa: F401 (registers the draw's fast kernel)
from ._fast.layout import as_layout
from ._window import (
    IntOrTuple,
    OutputSize,
    Padding,
    Window,
    adaptive_windows,
    check_input,
    check_padding_mode,
    native,
    ntuple,
    pad,
    resolve,
    resolve_output_size,
    windows,
)
from .power import window_mean

__all__ = ["fractional_max_pool", "stochastic_pool"]

Ratio = float | Sequence[float]


def _expectation(x: Tensor, geom: Window | tuple[int, ...], padding_mode: str) -> Tensor:
    """``avg(a^2) / avg(a)`` over each window with ``a = relu(x)``, 0 where a window has no positive cell.

    Padding follows :func:`~poolkit.functional.window_mean` (zeros count as cells of value 0, which change
    neither sum, so the ratio is exact).
    """
    y = dispatch("stochastic_mean", x, geom, padding_mode)
    if y is not None:
        return y
    a = torch.relu(x)  # zero gradient at 0 too, so an all-zero window has zero gradient
    mode = (padding_mode,) if isinstance(geom, Window) else ()
    num, den = window_mean(a * a, geom, *mode), window_mean(a, geom, *mode)
    pos = den > 0
    return as_layout(torch.where(pos, num / torch.where(pos, den, 1.0), 0.0), x)


def stochastic_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    stride: IntOrTuple | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    *,
    padding_mode: str = "zeros",
    output_size: OutputSize = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic pooling (Zeiler & Fergus 2013), in 1-D, 2-D or 3-D.

    Activations are clamped at 0, ``a = relu(x)``, and each window defines the
    probabilities ``p_i = a_i / Σ a_j``. In training one cell per window is drawn
    with those probabilities (one uniform per window, inverse CDF) and its value
    is the output; the gradient reaches that cell only. In eval the output is
    the expectation ``Σ p_i a_i = Σ a_i² / Σ a_i``, computed as the ratio of two
    native average poolings, so it is deterministic. A window with no positive
    cell gives 0 (with zero, finite gradients).

    ``padding_mode="zeros"`` pads with zeros, which have probability 0, so the
    padding is never drawn and never changes the eval mean; other modes pad with
    copies of the input, which take part like any cell.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size; required unless ``output_size``.
        stride: step between windows; default ``kernel_size``.
        padding: ints (at most half the kernel), ``"same"`` or ``"valid"``.
        ceil_mode: ceil instead of floor for the output size.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
        output_size: adaptive form with torch's adaptive windows (``1`` = global).
        training: draw (``True``) or return the expectation (``False``).
        generator: random source for the draws (for reproducibility).

    Shape:
        ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1`` (ceil with
        ``ceil_mode``) per spatial dim; ``output_size`` when given.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0, 0.0, -2.0]]])
        >>> stochastic_pool(x, 2, training=False)
        tensor([[[2.5000, 0.0000]]])
        >>> y = stochastic_pool(x, 2, generator=torch.Generator().manual_seed(0))
        >>> y[0, 0, 0].item() in (1.0, 3.0), y[0, 0, 1].item()
        (True, 0.0)
    """
    d = check_input(x)
    check_padding_mode(padding_mode)
    if output_size is None and kernel_size is None:
        raise TypeError("kernel_size is required unless output_size is given")
    geom = (
        resolve_output_size(x, output_size)
        if output_size is not None
        else resolve(x, kernel_size, stride, padding, 1, ceil_mode)  # type: ignore[arg-type]
    )
    if not training:
        return _expectation(x, geom, padding_mode)
    a = torch.relu(x)  # zero gradient at 0 too, so an all-zero window has zero gradient
    if isinstance(geom, tuple):
        w = adaptive_windows(a, geom, 0.0)
    else:
        w = windows(pad(a, geom, padding_mode, 0.0, extra=True), geom)
    # sampling needs the probabilities, not their gradient; half-precision running sums are too coarse
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    u = torch.rand(w.shape[:-d], generator=generator, device=x.device, dtype=acc)
    y = dispatch("stochastic_draw", w, u, d, acc)
    if y is not None:
        return as_layout(y, x)
    # inverse CDF: the draw is the first cell whose running sum passes t = u * total
    flat = w.flatten(-d)
    cum = flat.detach().to(acc).cumsum(-1)
    total = cum[..., -1]
    # t stays strictly below the total, so rounding never walks past the last positive cell;
    # an all-zero window has t = 0, no running sum passes it, and the output is 0
    t = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    idx = torch.searchsorted(cum, t.unsqueeze(-1), right=True).clamp(max=flat.shape[-1] - 1)
    return as_layout(torch.where(total.isnan(), torch.nan, flat.gather(-1, idx).squeeze(-1)), x)


def check_ratio(output_ratio: object, d: int) -> tuple[float, ...]:
    """``output_ratio`` as ``d`` floats, each in ``(0, 1)``."""
    if isinstance(output_ratio, (int, float)) and not isinstance(output_ratio, bool):
        r: tuple = (float(output_ratio),) * d
    elif isinstance(output_ratio, Sequence) and not isinstance(output_ratio, str) and len(output_ratio) == d:
        r = tuple(output_ratio)
    else:
        raise TypeError(f"output_ratio must be a float or a tuple of {d} floats in (0, 1), got {output_ratio!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in r):
        raise ValueError(f"output_ratio must be in (0, 1) per dim, got {output_ratio!r}")
    return tuple(float(v) for v in r)


def _output_shape(
    x: Tensor, kernel_size: IntOrTuple | None, output_size: OutputSize, output_ratio: Ratio | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    d = x.ndim - 2
    size = tuple(int(n) for n in x.shape[2:])
    if output_size is not None and output_ratio is not None:
        raise ValueError("give either output_size or output_ratio, not both")
    if output_size is not None:
        out = resolve_output_size(x, output_size)
    else:
        r = check_ratio(0.5 if output_ratio is None else output_ratio, d)
        out = tuple(int(n * v) for n, v in zip(size, r))
        if any(o < 1 for o in out):
            raise ValueError(f"output_ratio {output_ratio!r} gives an empty output for input size {size}")
    if kernel_size is None:
        if output_size is None:
            raise TypeError("kernel_size is required unless output_size is given")
        k = tuple(-(-n // o) for n, o in zip(size, out))  # smallest windows that cover the input
    else:
        k = ntuple(kernel_size, d, "kernel_size")
    for n, o, ki in zip(size, out, k):
        if o > n:
            raise ValueError(f"output_size {out} is larger than the input {size}")
        if o + ki - 1 > n:
            raise ValueError(
                f"kernel_size {k} is larger than the input {size} allows for output size {out}: "
                "fractional max pooling needs output + kernel_size - 1 <= input per dim"
            )
    return out, k


def fractional_max_pool(
    x: Tensor,
    kernel_size: IntOrTuple | None = None,
    output_size: OutputSize = None,
    output_ratio: Ratio | None = None,
    *,
    return_indices: bool = False,
    random_samples: Tensor | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Fractional max pooling (Graham 2014) in 1-D, 2-D and 3-D.

    Each output cell is the max of a ``kernel_size`` window whose starts follow
    torch's pseudo-random sequence: with ``α = (L - k) / (L_out - 1)`` and one
    sample ``u ∈ [0, 1)`` per (sample, channel, dim), window ``i`` starts at
    ``floor((i + u) α) - floor(u α)`` and the last one at ``L - k``. Equal to
    ``torch.nn.functional.fractional_max_pool{2,3}d`` given the same samples;
    1-D runs torch's 2-D kernel with a unit height, so it follows the same rule.

    In training (``training=True``) fresh samples are drawn on every call (from
    ``generator`` when given); in eval every sample is 0.5, so eval is
    deterministic. ``random_samples`` overrides both.

    Global form: ``output_size=1`` with ``kernel_size=None`` (a window covering
    the input) is the global max. Without ``kernel_size`` and with
    ``output_size``, the kernel is ``ceil(L / L_out)``, the smallest that covers
    the input. ``output_size=1`` with an explicit ``kernel_size`` keeps only the
    last window, ``[L - k, L)``.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: window size (int or one per dim); optional with ``output_size``.
        output_size: output size per dim (int, or a tuple with ``None`` to keep a dim).
        output_ratio: output size as a fraction of the input, in ``(0, 1)``;
            default 0.5 (halving) when neither ``output_size`` nor it is given.
        return_indices: also return the flat argmax indices (for ``max_unpool``).
        random_samples: ``(N, C, d)`` samples in ``[0, 1)`` in torch's layout:
            ``[W, H]`` for 2-D, ``[T, H, W]`` for 3-D (``[L]`` for 1-D).
        training: draw fresh samples (``True``) or use 0.5 (``False``).
        generator: random source for the samples.

    Shape:
        ``L_out = output_size`` or ``int(L * output_ratio)``, with
        ``L_out + kernel_size - 1 <= L`` per spatial dim.

    Example:
        >>> x = torch.arange(10.0).view(1, 1, 10)
        >>> fractional_max_pool(x, 2, output_size=4, training=False)
        tensor([[[1., 4., 6., 9.]]])
        >>> fractional_max_pool(x, output_size=1)
        tensor([[[9.]]])
    """
    d = check_input(x)
    out, k = _output_shape(x, kernel_size, output_size, output_ratio)
    n, c = x.shape[:2]
    if random_samples is not None:
        if not isinstance(random_samples, Tensor) or not random_samples.is_floating_point():
            raise TypeError(f"random_samples must be a floating-point tensor, got {type(random_samples).__name__}")
        if tuple(random_samples.shape) != (n, c, d):
            raise ValueError(
                f"random_samples must have shape (N, C, {d}) = {(n, c, d)}, got {tuple(random_samples.shape)}"
            )
        samples = random_samples.to(device=x.device, dtype=x.dtype)
        bad = ((samples < 0) | (samples >= 1) | samples.isnan()).any()
        if samples.device.type == "cpu":  # reading a CPU tensor costs no device sync
            if bool(bad):
                raise ValueError("random_samples must lie in [0, 1)")
        else:  # checked on the device, without a sync: a failure surfaces at the next sync
            torch._assert_async(~bad, "random_samples must lie in [0, 1)")
    elif training:
        samples = torch.rand((n, c, d), generator=generator, device=x.device, dtype=x.dtype)
    else:
        samples = torch.full((n, c, d), 0.5, device=x.device, dtype=x.dtype)
    if d == 1:
        # torch's 2-D kernel with a unit height: samples[..., 0] drives the width, the height has one window
        y = native("fractional_max_pool", 2)(
            x.unsqueeze(2), (1, k[0]), output_size=(1, out[0]), return_indices=return_indices,
            _random_samples=samples.expand(n, c, 2),
        )
        if return_indices:
            return y[0].squeeze(2), y[1].squeeze(2)
        return y.squeeze(2)
    if d == 3 and any(o + ki - 1 == n for o, ki, n in zip(out, k, x.shape[2:])):
        return _fractional_3d_separable(x, k, out, samples, return_indices)
    return native("fractional_max_pool", d)(
        x, k, output_size=out, return_indices=return_indices, _random_samples=samples
    )


def _fractional_3d_separable(
    x: Tensor, k: tuple[int, ...], out: tuple[int, ...], samples: Tensor, return_indices: bool
) -> Tensor | tuple[Tensor, Tensor]:
    """3-D fractional max pooling as a 2-D pass over (H, W) then a 1-D pass over T.

    torch's 3-D kernel refuses ``output + kernel - 1 == input`` (its check is
    strict where the 2-D one is not), which the global form needs. A box max
    is separable and both passes use torch's interval rule, so values are the
    same; samples are ``[T, H, W]`` as in torch's 3-D layout.
    """
    n, c, t, h, w = x.shape
    (kt, kh, kw), (ot, oh, ow) = k, out
    f2 = native("fractional_max_pool", 2)
    # (H, W): T joins the channels; torch's 2-D samples are [W, H]
    s_hw = samples[..., [2, 1]].unsqueeze(2).expand(n, c, t, 2).reshape(n, c * t, 2)
    y1, i1 = f2(x.reshape(n, c * t, h, w), (kh, kw), output_size=(oh, ow), return_indices=True, _random_samples=s_hw)
    # T: every (H, W) output cell becomes a channel with a unit-height row of length T
    z = y1.view(n, c, t, oh, ow).permute(0, 1, 3, 4, 2).reshape(n, c * oh * ow, 1, t)
    s_t = samples[..., :1].unsqueeze(2).expand(n, c, oh * ow, 1).reshape(n, c * oh * ow, 1).expand(-1, -1, 2)
    y2, i2 = f2(z, (1, kt), output_size=(1, ot), return_indices=True, _random_samples=s_t)
    y = y2.view(n, c, oh, ow, ot).permute(0, 1, 4, 2, 3)
    if not return_indices:
        return y
    ti = i2.view(n, c, oh, ow, ot).permute(0, 1, 4, 2, 3)
    hw = i1.view(n, c, t, oh, ow).gather(2, ti)
    return y, ti * (h * w) + hw

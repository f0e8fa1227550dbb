"""Lie derivative of a model along continuous translations (Gruver et al. 2022)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .metrics import evaluating, first_tensor
from .shifts import check_batch, resolve_dims

__all__ = ["lie_derivative", "translation_generator"]


def translation_generator(x: Tensor, dims: int | Sequence[int] | None = None) -> Tensor:
    """``d/dt shift_t(x)`` at ``t = 0`` for the Fourier (circular) shift, per axis of ``dims``.

    The spectral derivative ``-dx/di`` along each axis (the Nyquist term of an
    even size contributes nothing, as in :func:`poolkit.measure.fourier_shift`).

    Shape:
        ``(k * N, C, *spatial)``: axis-major, one block of ``N`` per axis of ``dims``.
    """
    d = check_batch(x)
    axes = resolve_dims(d, dims)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = []
    for a in axes:
        n = x.shape[2 + a]
        f = torch.fft.rfftfreq(n, dtype=work.dtype, device=x.device).view([-1] + [1] * (d - 1 - a))
        spec = torch.fft.rfft(work, dim=2 + a)
        out.append(torch.fft.irfft(spec * (-2j * math.pi * f), n=n, dim=2 + a))
    return torch.cat(out).to(x.dtype)


def lie_derivative(
    model: Callable[[Tensor], Any],
    x: Tensor,
    dims: int | Sequence[int] | None = None,
    *,
    per_axis: bool = False,
    relative: bool = False,
    eval_mode: bool = True,
) -> Tensor:
    """Norm of the derivative of the output under a continuous translation, at ``t = 0``.

    ``L_k f(x) = d/dt f(shift_t^{(k)} x)`` at ``t = 0``, where ``shift_t^{(k)}``
    is the Fourier (circular, band-limited) shift by ``t`` pixels along axis
    ``k``. Jacobian-vector products in forward mode (:func:`torch.func.jvp`),
    the ``k`` axes batched by :func:`torch.func.vmap` so the primal runs once
    (models vmap cannot batch fall back to one batch of ``k`` copies). Units: output change per pixel of shift.
    ``0`` for a model invariant to continuous translations; aliasing (strided
    sampling, pointwise nonlinearities on sampled signals) makes it large.

    Args:
        model: a callable on a batch (``nn.Module`` in eval mode for the call); a tuple
            output is measured on its first tensor.
        x: input ``(N, C, *spatial)``.
        dims: spatial axes to translate along (default all).
        per_axis: return one column per axis instead of the combined norm.
        relative: divide by ``||f(x)||`` per sample.
        eval_mode: put an ``nn.Module`` in eval mode during the call.

    Returns:
        ``(N,)``: ``sqrt(sum_k ||L_k f(x)||^2)`` per sample; ``(N, k)`` with ``per_axis``.

    Example:
        >>> gap = lambda t: t.mean(dim=(2, 3))
        >>> lie_derivative(gap, torch.rand(2, 3, 8, 8)).abs().max() < 1e-5
        tensor(True)
    """
    d = check_batch(x)
    axes = resolve_dims(d, dims)
    k = len(axes)
    n = x.shape[0]
    x = x.detach()
    tangent = translation_generator(x, axes)

    def fn(t: Tensor) -> Tensor:
        return first_tensor(model(t), "model output")

    def along(v: Tensor) -> tuple[Tensor, Tensor]:
        primal, tangent = torch.func.jvp(fn, (x,), (v,))[:2]
        return primal, tangent

    with evaluating(model, eval_mode), torch.no_grad():
        try:  # the primal once, the k tangents batched by vmap
            out, jv = torch.func.vmap(along, out_dims=(None, 0))(tangent.view(k, *x.shape))  # type: ignore[arg-type]
        except (RuntimeError, ValueError):  # a model vmap cannot batch: repeat the primal per axis
            out, jv = torch.func.jvp(fn, (x.repeat(k, *([1] * (x.ndim - 1))),), (tangent,))[:2]
            out = out[:n]
        jv = jv.reshape(k * n, -1)
    norms = jv.detach().norm(dim=1).view(k, n).t()  # (N, k)
    if relative:
        norms = norms / out.detach().flatten(1).norm(dim=1).clamp_min(torch.finfo(norms.dtype).tiny)[:, None]
    return norms if per_axis else norms.norm(dim=1)

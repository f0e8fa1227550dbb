"""Polyphase sampling: adaptive (aps), learnable (lps) and the matching unpooling, in 1-D, 2-D and 3-D.

Strided subsampling keeps one fixed phase of the input, so a one-cell shift
changes the output. Adaptive polyphase sampling (Chaman & Dokmanić, CVPR 2021)
keeps the component of largest norm instead; learnable polyphase sampling
(Rojas-Gomez et al., NeurIPS 2022) scores the components with a small network.

Here the candidates are all *cyclic start offsets*: offset ``i`` (one per dim)
takes the samples ``(i + s j) mod L`` for ``j = 0 .. ceil(L / s) - 1``. A circular
shift of the input permutes the candidates and leaves each one's content
unchanged, so choosing by content gives an output that is *identical* for every
circular shift of the input, for any size and any stride (padding odd sizes, as
the APS paper does, would break this). When ``s`` divides ``L`` the candidates are
the ``s^d`` classic polyphase components, each in all its cyclic rotations.

A candidate's score reduces a per-position map (channel-reduced energy for aps,
a learned logit map for lps) over the candidate's positions, one dim at a time,
always in the candidate's own order, so scores of the same content are equal
bit for bit; in a dim that the stride divides, all rotations of a component
share one score. Exact ties (e.g. rotations of one component, or many candidates
sharing the largest value under ``linf``) go to the candidate whose first sample
is largest in channel 0, then to the lowest offset; the first rule depends on
content only, so it too is shift-consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._fast.layout import as_layout
from ._window import IntOrTuple, check_input, ntuple
from .antialias import blur, check_mode

__all__ = ["APS_NORMS", "aps_pool", "aps_unpool", "lps_pool", "polyphase_scores"]

#: norms accepted by :func:`aps_pool`; ``*_min`` keeps the component of smallest norm
APS_NORMS = ("l2", "l1", "linf", "l2_min", "l1_min", "linf_min")


def _work(x: Tensor) -> Tensor:
    # scores and selection in float32 at least, so low precision picks as float32 does
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def polyphase_scores(e: Tensor, stride: Sequence[int], reduce: str = "sum") -> Tensor:
    """Score of every cyclic start offset: ``reduce`` of ``e`` over the offset's samples.

    Args:
        e: per-position map ``(N, *spatial)``.
        stride: subsampling factor per spatial dim.
        reduce: ``"sum"`` or ``"max"``.

    Shape:
        same as ``e``: entry ``i`` scores the candidate starting at offset ``i``.

    Example:
        >>> polyphase_scores(torch.tensor([[1.0, 2.0, 3.0]]), (2,))
        tensor([[4., 3., 5.]])
    """
    for dim, s in enumerate(stride):
        ax = 1 + dim
        n = e.shape[ax]
        m = -(-n // s)
        if m == 1:
            continue
        if n % s == 0:
            # rotations of one polyphase component: one score each, exactly equal, so the tie rule decides
            part = e.unflatten(ax, (m, s))
            part = part.sum(ax) if reduce == "sum" else part.amax(ax)
            e = part.repeat(*[m if a == ax else 1 for a in range(e.ndim)])
            continue
        ext = torch.cat([e, e.narrow(ax, 0, s * (m - 1))], ax)  # s (m - 1) < n: one wrap suffices
        acc = ext.narrow(ax, 0, n)
        for j in range(1, m):  # a fixed summation order per candidate keeps equal contents bit-equal
            nxt = ext.narrow(ax, s * j, n)
            acc = acc + nxt if reduce == "sum" else torch.maximum(acc, nxt)
        e = acc
    return e


def _select(score: Tensor, tiebreak: Tensor, largest: bool) -> Tensor:
    """Flat index of the best candidate per sample, ties broken by ``tiebreak`` then lowest index."""
    flat = score.flatten(1)
    best = flat.amax(1, keepdim=True) if largest else flat.amin(1, keepdim=True)
    key = tiebreak.flatten(1).masked_fill(flat != best, -math.inf)
    return key.argmax(1)


def _unravel(idx: Tensor, shape: Sequence[int]) -> Tensor:
    out = []
    for n in reversed(shape):
        out.append(idx % n)
        idx = idx // n
    return torch.stack(out[::-1], 1)


def _linear_index(phase: Tensor, size: Sequence[int], stride: Sequence[int]) -> tuple[Tensor, tuple[int, ...]]:
    """Flat input positions ``(N, M)`` of the candidates ``phase`` ``(N, d)`` and the output size."""
    d = len(size)
    out = tuple(-(-n // s) for n, s in zip(size, stride))
    lin = None
    step = 1
    for k in reversed(range(d)):
        n, s, m = size[k], stride[k], out[k]
        pos = (phase[:, k, None] + s * torch.arange(m, device=phase.device)) % n  # (N, m)
        shape = [phase.shape[0]] + [1] * d
        shape[1 + k] = m
        term = pos.view(shape) * step
        lin = term if lin is None else lin + term
        step *= n
    assert lin is not None
    return lin.flatten(1), out


def _gather(x: Tensor, phase: Tensor, stride: Sequence[int]) -> Tensor:
    size = tuple(int(n) for n in x.shape[2:])
    lin, out = _linear_index(phase, size, stride)
    n, c = x.shape[:2]
    d = x.ndim - 2
    fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(d)
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        # channels-last: gather whole channel vectors from the (N, L, C) view, no layout copy
        rows = x.movedim(1, -1).reshape(n, -1, c)
        y = rows.gather(1, lin[:, :, None].expand(n, lin.shape[1], c))
        return y.view((n, *out, c)).movedim(-1, 1)
    y = x.reshape(n, c, -1).gather(2, lin[:, None, :].expand(n, c, lin.shape[1]))
    return y.view((n, c, *out))


def _factor(x: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None) -> tuple[int, ...]:
    d = x.ndim - 2
    return ntuple(kernel_size, d, "kernel_size") if stride is None else ntuple(stride, d, "stride")


def aps_pool(
    x: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    norm: str = "l2",
    filt: int = 1,
    *,
    blur_padding_mode: str = "circular",
    return_phase: bool = False,
    blur_weight: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Adaptive polyphase sampling: keep the cyclic candidate of largest norm.

    The output is identical (not merely shifted) for every circular shift of
    the input, for any input size and stride; see the module docstring for the
    candidates and the tie rule.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        kernel_size: the subsampling factor, used when ``stride`` is None.
        stride: the subsampling factor (int or one per dim); default ``kernel_size``.
        norm: ``"l2"``, ``"l1"``, ``"linf"`` (over channels and samples of a
            candidate), or ``"l2_min"``, ``"l1_min"``, ``"linf_min"`` to keep the smallest.
        filt: binomial blur of this size (stride 1) before sampling; 1 = none.
        blur_padding_mode: border handling of the blur; ``"circular"`` keeps exact invariance.
        return_phase: also return the chosen start offsets ``(N, d)`` (for :func:`aps_unpool`).
        blur_weight: ``binomial_filter(filt, d)`` already built (a module's buffer); built when None.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> x = torch.tensor([[[0.0, 5.0, 0.0, 1.0, 0.0]]])
        >>> aps_pool(x, 2)
        tensor([[[5., 1., 0.]]])
        >>> torch.equal(aps_pool(x.roll(2, -1), 2), aps_pool(x, 2))
        True
    """
    check_input(x)
    s = _factor(x, kernel_size, stride)
    if norm not in APS_NORMS:
        raise ValueError(f"norm must be one of {APS_NORMS}, got {norm!r}")
    check_mode(blur_padding_mode, "blur_padding_mode")
    if filt != 1:
        x = blur(x, filt, 1, blur_padding_mode, weight=blur_weight)
    w = _work(x).detach()
    base = norm.removesuffix("_min")
    if base == "l2":
        e = w.square().sum(1)  # measured faster than linalg.vector_norm over dim 1 in NCHW
    elif base == "l1":
        e = w.abs().sum(1)
    else:
        e = w.abs().amax(1)
    score = polyphase_scores(e, s, "max" if base == "linf" else "sum")
    idx = _select(score, w[:, 0], largest=not norm.endswith("_min"))
    phase = _unravel(idx, x.shape[2:])
    y = _gather(x, phase, s)
    return (y, phase) if return_phase else y


def aps_unpool(
    y: Tensor,
    phase: Tensor,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Put the samples kept by :func:`aps_pool` (or :func:`lps_pool`) back where they came from; zeros elsewhere.

    Down- then up-sampling with the same phase commutes with circular shifts of
    the input (equivariant upsampling).

    Args:
        y: sampled tensor ``(N, C, *m)``.
        phase: start offsets ``(N, d)`` returned with ``return_phase=True``.
        kernel_size: the subsampling factor, used when ``stride`` is None.
        stride: the subsampling factor; default ``kernel_size``.
        output_size: spatial size of the original input; default ``m * stride``.
            Needed when the original size was not a multiple of the stride.

    Shape:
        ``(N, C, *output_size)`` with ``ceil(output_size / stride) == m``.

    Example:
        >>> x = torch.tensor([[[0.0, 5.0, 0.0, 1.0, 0.0]]])
        >>> y, phase = aps_pool(x, 2, return_phase=True)
        >>> aps_unpool(y, phase, 2, output_size=(5,))
        tensor([[[0., 5., 0., 1., 0.]]])
    """
    d = check_input(y, "y")
    s = _factor(y, kernel_size, stride)
    m = tuple(int(v) for v in y.shape[2:])
    if output_size is None:
        size = tuple(mi * si for mi, si in zip(m, s))
    else:
        size = ntuple(tuple(output_size) if not isinstance(output_size, int) else output_size, d, "output_size")
        if any(-(-n // si) != mi for n, si, mi in zip(size, s, m)):
            raise ValueError(
                f"output_size {size} does not match y's size {m} at stride {s}: need ceil(output_size / stride) == m"
            )
    n, c = y.shape[:2]
    if not isinstance(phase, Tensor) or phase.shape != (n, d) or phase.is_floating_point():
        raise ValueError(f"phase must be an integer tensor of shape ({n}, {d}), as aps_pool returns, got "
                         f"{getattr(phase, 'shape', type(phase).__name__)}")
    lin, _ = _linear_index(phase.to(device=y.device, dtype=torch.long) % torch.tensor(size, device=y.device), size, s)
    out = y.new_zeros((n, c, math.prod(size)))
    out = out.scatter(2, lin[:, None, :].expand(n, c, lin.shape[1]), y.reshape(n, c, -1))
    return out.view((n, c, *size))


def lps_pool(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    kernel_size: IntOrTuple = 2,
    stride: IntOrTuple | None = None,
    *,
    tau: float | Tensor = 1.0,
    training: bool = False,
    return_phase: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Learnable polyphase sampling: a small circular conv scorer picks the candidate.

    The scorer ``conv(weight, circular) -> ReLU -> conv(proj_weight)`` runs once
    on the full-resolution input and gives a logit map; a candidate's logit is
    the mean of that map over its samples. (Rojas-Gomez et al. score each
    component with its own pass; one pass on the full grid has the same
    shift-consistency at a fraction of the cost.) In eval the best candidate is
    taken (hard argmax, ties as in :func:`aps_pool`): the output is identical for
    every circular shift. In training the output is the Gumbel-softmax mixture
    of all candidates at temperature ``tau``, computed as one circular
    correlation by FFT.

    Args:
        x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
        weight: first scorer conv ``(H, C, *k)``, odd or even ``k``, circular padding.
        bias: its bias ``(H,)`` or None.
        proj_weight: projection to one logit per position ``(1, H, 1, ...)``.
        proj_bias: its bias ``(1,)`` or None.
        kernel_size: the subsampling factor, used when ``stride`` is None.
        stride: the subsampling factor; default ``kernel_size``.
        tau: Gumbel-softmax temperature (training only), > 0; a tensor is used as it is (not checked).
        training: soft Gumbel-softmax mixture (True) or hard argmax (False).
        return_phase: also return the start offsets ``(N, d)`` of the most likely candidate.

    Shape:
        ``L_out = ceil(L / stride)`` per spatial dim.

    Example:
        >>> w, pw = torch.randn(8, 3, 3, 3), torch.randn(1, 8, 1, 1)
        >>> lps_pool(torch.rand(2, 3, 9, 9), w, None, pw, None, 2).shape
        torch.Size([2, 3, 5, 5])
    """
    d = check_input(x)
    s = _factor(x, kernel_size, stride)
    c = x.shape[1]
    if weight.ndim != d + 2 or weight.shape[1] != c:
        raise ValueError(f"weight must have shape (hidden, {c}, *k) with {d} kernel dims for input with {c} "
                         f"channels, got {tuple(weight.shape)}")
    if proj_weight.shape[:2] != (1, weight.shape[0]):
        raise ValueError(f"proj_weight must have shape (1, {weight.shape[0]}, 1, ...), got {tuple(proj_weight.shape)}")
    t: float | Tensor = tau
    if not isinstance(tau, Tensor):  # a tensor (a module's buffer) is not read back: no host sync
        t = float(tau)
        if not t > 0:
            raise ValueError(f"tau (the Gumbel-softmax temperature) must be > 0, got {t}")
    w = _work(x)
    k = weight.shape[2:]
    pads: list[int] = []
    for ki in reversed(k):
        pads += [(ki - 1) // 2, ki // 2]
    conv = getattr(F, f"conv{d}d")
    h = F.relu(conv(F.pad(w, pads, mode="circular"), weight.to(w.dtype), None if bias is None else bias.to(w.dtype)))
    z = conv(h, proj_weight.to(w.dtype), None if proj_bias is None else proj_bias.to(w.dtype)).squeeze(1)
    m = math.prod([-(-n // si) for n, si in zip(x.shape[2:], s)])
    logits = polyphase_scores(z, s, "sum") / m
    size = tuple(int(n) for n in x.shape[2:])
    if not training:
        idx = _select(logits, w.detach()[:, 0], largest=True)
        phase = _unravel(idx, size)
        y = _gather(x, phase, s)
        return (y, phase) if return_phase else y
    flat = logits.flatten(1)
    u = torch.rand_like(flat).clamp_(1e-10, 1.0 - 1e-7)
    weights = torch.softmax((flat - torch.log(-torch.log(u))) / t, 1)
    dims = tuple(range(2, 2 + d))
    xf = torch.fft.rfftn(w, dim=dims)
    wf = torch.fft.rfftn(weights.view((x.shape[0], 1, *size)), dim=dims)
    # circular correlation c[t] = sum_i weights[i] x[i + t], read at t = s j
    corr = torch.fft.irfftn(xf * wf.conj(), s=size, dim=dims)
    index = (slice(None), slice(None), *(slice(None, None, si) for si in s))
    y = as_layout(corr[index].to(x.dtype), x)  # a fresh tensor in the input's layout, not a strided view
    if return_phase:
        return y, _unravel(weights.argmax(1), size)
    return y

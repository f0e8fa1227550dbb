"""Classification consistency under shifts: top-1 agreement, flip rate, top-class probability change.

For each sample, random pairs of shifts (or crops); the four shifted copies of a batch go through
the classifier in one forward pass. Invariance and equivariance are in :mod:`poolkit.measure.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .metrics import evaluating, first_tensor
from .shifts import check_batch, check_mode, resolve_dims, shift_per_sample

__all__ = ["Consistency", "consistency"]


@dataclass
class Consistency:
    """Classification consistency under shifts.

    Attributes:
        consistency: fraction of pairs of random shifts with the same top-1 class
            (Zhang 2019; with ``mode="circular"``, Chaman & Dokmanić 2021's form).
        flip_rate: probability that the top-1 class changes between two shifts one
            pixel apart (Azulay & Weiss 2019).
        prob_change: mean absolute change of the top-class probability between two
            shifts one pixel apart (the class is the one predicted for the first).
        mode: shift mode.
        max_shift: maximum shift per shifted axis.
        n: number of samples measured.
        pairs: random pairs drawn per sample.
        crop_size: the window size (``"crop"`` only).
    """

    consistency: float
    flip_rate: float
    prob_change: float
    mode: str
    max_shift: tuple[int, ...]
    n: int
    pairs: int = 1
    crop_size: tuple[int, ...] | None = None


def _batches(data: object, batch_size: int) -> Iterator[Tensor]:
    if isinstance(data, Tensor):
        yield from data.split(batch_size)
        return
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be a Tensor or an iterable of tensors or (x, y) batches, got {type(data).__name__}")
    for item in data:
        xb = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(xb, Tensor):
            raise TypeError(f"data must yield tensors or (x, y) batches, got {type(xb).__name__}")
        yield from xb.split(batch_size)


def _per_axis(value: object, k: int, name: str, minimum: int) -> tuple[int, ...]:
    vals = (value,) * k if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(vals, Sequence) or len(vals) != k or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in vals
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a tuple of {k} such ints, got {value!r}")
    return tuple(vals)


def consistency(
    model: Callable[[Tensor], Any],
    data: Tensor | Iterable[Any],
    max_shift: int | Sequence[int] | None = None,
    mode: str = "circular",
    *,
    crop_size: int | Sequence[int] | None = None,
    pairs: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    dims: int | Sequence[int] | None = None,
) -> Consistency:
    """Classification consistency, top-1 flip rate and top-class probability change under shifts.

    For each sample and each of ``pairs`` draws: two random shifts, uniform in
    ``[-max_shift, max_shift]`` per axis, and whether the top-1 classes agree;
    and one random pair of shifts one pixel apart along a random axis, for the
    flip rate and the change of the top-class probability (softmax of the
    output). The four shifted copies of a batch go through the model in one
    pass. With ``"crop"`` the model sees windows of ``crop_size`` cut at random
    offsets in ``[0, max_shift]`` (centred in any extra room), so a model with a
    fixed input size is fed data padded by ``max_shift``.

    Args:
        model: a classifier returning logits ``(N, num_classes)``; run in eval mode, without grad.
        data: ``(N, C, *spatial)`` tensor, or an iterable of tensors or ``(x, y)`` batches.
        max_shift: per axis (int or tuple). Default: ``size // 2`` for ``"circular"`` (every
            circular shift); ``size - crop_size`` for ``"crop"`` with ``crop_size``; else ``max(1, size // 8)``.
        mode: ``"circular"``, ``"zeros"``, ``"reflect"`` or ``"crop"``.
        crop_size: window size for ``"crop"`` (default: input size - ``max_shift``).
        pairs: random draws per sample.
        batch_size: samples per forward pass (each pass holds four shifted copies).
        seed: seed of the random shifts; the result is deterministic given it.
        dims: spatial axes to shift (default all).

    Returns:
        :class:`Consistency`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> c = consistency(model, torch.rand(10, 1, 16), max_shift=2)
        >>> 0.0 <= c.consistency <= 1.0
        True
    """
    mode = check_mode(mode)
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise ValueError(f"pairs must be an int >= 1, got {pairs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if crop_size is not None and mode != "crop":
        raise ValueError(f"crop_size is only used with mode='crop', got mode={mode!r}")
    gen = torch.Generator().manual_seed(seed)
    param = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    agree = flips = 0
    change = 0.0
    count = 0
    geometry: tuple[tuple[int, ...], tuple[int, ...] | None, tuple[int, ...]] | None = None
    with evaluating(model), torch.no_grad():
        for xb in _batches(data, batch_size):
            d = check_batch(xb, "data batch")
            axes = resolve_dims(d, dims)
            k = len(axes)
            sizes = tuple(xb.shape[2 + a] for a in axes)
            if geometry is None or geometry[2] != sizes:
                geometry = (*_consistency_geometry(sizes, max_shift, mode, crop_size), sizes)
            m, crop, _ = geometry
            if param is not None:
                xb = xb.to(param.device)
            n = xb.shape[0]
            for _ in range(pairs):
                lo = torch.tensor([0 if mode == "crop" else -mi for mi in m])
                hi = torch.tensor(list(m))
                base = torch.tensor([0] * k)
                if crop is not None:  # offsets centred in any room beyond max_shift
                    base = torch.tensor([(sz - c - mi) // 2 for sz, c, mi in zip(sizes, crop, m)])
                a = lo + (torch.rand((n, k), generator=gen) * (hi - lo + 1)).long()
                b = lo + (torch.rand((n, k), generator=gen) * (hi - lo + 1)).long()
                axis = (torch.rand(n, generator=gen) * k).long()
                step = torch.nn.functional.one_hot(axis, k)
                # first of the one-pixel pair: its stepped coordinate in [lo, hi - 1]
                c1 = lo + (torch.rand((n, k), generator=gen) * (hi - lo + 1)).long()
                c1 = torch.where(step.bool(), lo + (torch.rand((n, k), generator=gen) * (hi - lo)).long(), c1)
                c2 = c1 + step
                offs = torch.cat([a, b, c1, c2]) + base
                xs = shift_per_sample(xb.repeat(4, *([1] * (xb.ndim - 1))), offs, mode, axes, crop_size=crop)
                logits = first_tensor(model(xs), "model output")
                if logits.ndim != 2 or logits.shape[0] != 4 * n:
                    raise ValueError(f"model output must be logits (N, num_classes), got shape {tuple(logits.shape)}")
                prob = torch.softmax(logits.double(), dim=1).view(4, n, -1)
                top = prob.argmax(dim=2)
                agree += int((top[0] == top[1]).sum())
                flips += int((top[2] != top[3]).sum())
                cls = top[2].unsqueeze(1)
                change += float((prob[2].gather(1, cls) - prob[3].gather(1, cls)).abs().sum())
                count += n
    if geometry is None or count == 0:
        raise ValueError("data is empty")
    return Consistency(
        consistency=agree / count,
        flip_rate=flips / count,
        prob_change=change / count,
        mode=mode,
        max_shift=geometry[0],
        n=count // pairs,
        pairs=pairs,
        crop_size=geometry[1],
    )


def _consistency_geometry(
    sizes: tuple[int, ...], max_shift: object, mode: str, crop_size: object
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    k = len(sizes)
    crop = None if crop_size is None else _per_axis(crop_size, k, "crop_size", 1)
    if max_shift is None:
        if mode == "circular":
            m = tuple(max(1, s // 2) for s in sizes)
        elif mode == "crop" and crop is not None:
            m = tuple(s - c for s, c in zip(sizes, crop))
        else:
            m = tuple(max(1, s // 8) for s in sizes)
    else:
        m = _per_axis(max_shift, k, "max_shift", 1)
    if any(mi < 1 for mi in m):
        raise ValueError(f"max_shift must be >= 1 per axis (the one-pixel pairs need room), got {m} for sizes {sizes}")
    if mode == "crop":
        crop = crop or tuple(s - mi for s, mi in zip(sizes, m))
        if any(c < 1 or c + mi > s for c, mi, s in zip(crop, m, sizes)):
            raise ValueError(
                f"mode='crop' needs crop_size + max_shift <= input size per axis, got crop_size {crop}, "
                f"max_shift {m}, input size {sizes}"
            )
    elif mode == "reflect" and any(mi >= s for mi, s in zip(m, sizes)):
        raise ValueError(f"mode='reflect' needs max_shift < input size per axis, got {m} for sizes {sizes}")
    return m, crop

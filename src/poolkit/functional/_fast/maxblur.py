"""Fast kernels of maxblur (stride-1 max pooling, then the blur); the formula is in ``antialias.py``.

- ``fused``: contiguous CPU float32/float64 maps up to 128: one chunked pass that computes the dense max
  and the band-matrix blur chunk by chunk in reused buffers, so the full-size dense max is never
  allocated, with a backward that recomputes each chunk.
- ``running_max``: other contiguous CPU input: the dense max as a running maximum of shifted views
  (several times faster than torch's stride-1 max pooling in NCHW), with a lean backward, then the blur.

Both give the formula's values, gradients (ties to the first maximum in window order, as max pooling)
and layout (contiguous).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._window import Padding, pad, resolve
from . import custom_backward, register
from .blur import band

__all__: list[str] = []

#: elements per chunk (per thread) of the fused maxblur: the chunk's few buffers stay near the core's L2 cache
#: (measured best among 2**15 to 2**18)
_CHUNK = 1 << 17

#: largest output size (per spatial dim) of the fused pass (its band matrices grow with the map)
_FUSED_MAX = 128


def _fused_applies(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding: Padding, dilation: object,
                   filt: int, mode: str, weight: Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return False
    if not x.is_contiguous() or weight.dtype not in (torch.float32, torch.float64):
        return False  # (a half filter buffer is rounded: the formula then)
    win = resolve(x, k, 1, padding, dilation)  # type: ignore[arg-type]
    return max(win.out) <= _FUSED_MAX and not (mode == "reflect" and filt // 2 >= min(win.out))


@register("maxblur", "fused", "CPU, float32/float64, contiguous, output maps up to 128", _fused_applies)
def _fused_max_blur(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding: Padding, dilation: object,
                    filt: int, mode: str, weight: Tensor) -> Tensor:
    """Maxblur of contiguous CPU input as one chunked pass."""
    win = resolve(x, k, 1, padding, dilation)  # type: ignore[arg-type]
    phys = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:], 1)  # planes as the batch, a trailing unit axis
    mats = tuple(band(o, si, filt, mode, x.dtype, x.device) for o, si in zip(win.out, s))
    y = _MaxBlur.apply(phys, _FlatPlan(tuple(phys.shape), win, mats))
    return y.view(x.shape[0], x.shape[1], *y.shape[1:-1])


class _FlatPlan:
    """Geometry of the fused maxblur on a contiguous ``(B, *spatial, T)`` tensor, chunked over ``B``.

    Every stage of the dense max (one spatial axis at a time) keeps the padded
    input's shape and runs on the flattened chunk: the ``j``-th shift along an axis
    is an offset of ``j * dilation * (axis stride)`` in memory, so each maximum is
    one contiguous elementwise op. Cells past a stage's output size hold garbage
    that no valid output reads; the backward keeps the gradient zero there.
    """

    def __init__(
        self, shape: tuple[int, ...], win: Any, mats: tuple[Tensor, ...]) -> None:
        self.d = len(shape) - 2
        self.pad = win.pad
        self.padded_size = tuple(n + a + b for n, (a, b) in zip(win.size, win.pad))
        self.out = win.out
        self.mats = mats
        cells = math.prod(self.padded_size) * shape[-1]
        # (flat offset between shifts, number of shifts) per axis with a window > 1, last axis first: on ties the
        # gradient then goes to the window's first maximum in row-major order, as max pooling sends it
        self.steps = []
        self.axes = []  # (axis, dilation) of each step
        for i, (kk, dl) in reversed(list(enumerate(zip(win.kernel, win.dilation)))):
            if kk > 1:
                self.steps.append((dl * math.prod(self.padded_size[i + 1 :]) * shape[-1], kk))
                self.axes.append((i, dl))
        threads = max(1, torch.get_num_threads())
        self.chunk = self.chunk_backward = max(1, (_CHUNK * threads) // cells)
        self.buf_shape = (*self.padded_size, shape[-1])
        self.max_shape = (*self.out, shape[-1])

    def last_max(self, y: Tensor, out: Tensor) -> None:
        """The last stage of the dense max, from the padded-shape chunk ``y`` into the compact ``out``."""
        if not self.steps:
            out.copy_(self.valid(y))
            return
        axis, dl = self.axes[-1]
        k = self.steps[-1][1]
        views = []
        for j in range(k):
            v = y
            for i, o in enumerate(self.out):
                v = v.narrow(1 + i, j * dl if i == axis else 0, o)
            views.append(v)
        torch.maximum(views[0], views[1], out=out)
        for v in views[2:]:
            torch.maximum(out, v, out=out)

    def valid(self, t: Tensor) -> Tensor:
        """The dense max's cells of a padded-shape chunk."""
        for i, o in enumerate(self.out):
            t = t.narrow(1 + i, 0, o)
        return t

    def interior(self, t: Tensor) -> Tensor:
        """The input's cells of a padded-shape chunk."""
        for i, ((a, _), n) in enumerate(zip(self.pad, self.padded_size)):
            t = t.narrow(1 + i, a, n - a - self.pad[i][1])
        return t

    def band(self, t: Tensor, transpose: bool) -> Tensor:
        """The blur (or its transpose) of a chunk, as one band-matrix product per spatial axis."""
        for i, mat in enumerate(self.mats):
            if transpose:
                mat = mat.t()
            shape = t.shape
            n, lead, rest = shape[1 + i], math.prod(shape[: 1 + i]), math.prod(shape[2 + i :])
            if rest == 1:
                t = (t.reshape(lead, n) @ mat.t()).view(*shape[: 1 + i], mat.shape[0], *shape[2 + i :])
            else:
                t = (mat @ t.reshape(lead, n, rest)).view(*shape[: 1 + i], mat.shape[0], *shape[2 + i :])
        return t


def _flat_max(y: Tensor, z: Tensor, step: int, k: int) -> None:
    """``z[p] = max_j y[p + j * step]`` over the flat chunk, as far as every shift stays inside."""
    yf, zf = y.view(-1), z.view(-1)
    length = yf.numel() - (k - 1) * step
    head = zf[:length]
    torch.maximum(yf[:length], yf[step : step + length] if k > 2 else yf[step:], out=head)
    for j in range(2, k):
        torch.maximum(head, yf[j * step : j * step + length], out=head)


def _flat_max_backward(y: Tensor, z: Tensor, g: Tensor, out: Tensor, step: int, k: int, scratch: Tensor) -> None:
    """Gradient of :func:`_flat_max` into ``out``: each output's gradient goes to its first shift attaining the
    maximum (as max pooling does on ties). ``scratch`` holds at least ``3 * numel`` cells; the masks are float
    (comparisons writing float outputs are several times faster here than boolean masks and ``where``)."""
    yf, gf, of = y.view(-1), g.view(-1), out.view(-1)
    length = yf.numel() - (k - 1) * step
    gh = gf[:length]
    mask = scratch[:length]
    rest = scratch[length : 2 * length]
    if k == 2:
        torch.ge(yf[:length], yf[step:], out=mask)  # the first shift holds the maximum
        head = of[:length]
        torch.mul(gh, mask, out=head)
        torch.sub(gh, head, out=rest)  # the second shift's share
        of[length:].zero_()
        of[step:].add_(rest)
        return
    take = scratch[2 * length : 3 * length]
    acc = z.view(-1)[:length]
    of.zero_()
    rest.copy_(gh)
    for j in range(k - 1):
        torch.eq(yf[j * step : j * step + length], acc, out=mask)
        torch.mul(rest, mask, out=take)
        of[j * step : j * step + length].add_(take)
        rest.sub_(take)  # later shifts get only what earlier ones did not take
    of[(k - 1) * step :].add_(rest)


class _MaxBlur(torch.autograd.Function):
    """Dense max then blur on ``(B, *spatial, T)``, chunk by chunk so that the full-size dense max never exists.

    The backward recomputes each chunk's stages from the input (cheaper than storing them) and routes the
    gradient back through the blur's transposed band matrices and each max stage.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, plan: _FlatPlan) -> Tensor:
        ctx.save_for_backward(x)
        ctx.plan = plan
        n = x.shape[0]
        out = x.new_empty((n, *(m.shape[0] for m in plan.mats), x.shape[-1]))
        stages, padbuf = _buffers(x, plan, len(plan.steps) - 1, plan.chunk)
        dense = x.new_empty((plan.chunk, *plan.max_shape))
        for b in range(0, n, plan.chunk):
            c = min(plan.chunk, n - b)
            y = _chunk_input(x, plan, padbuf, b, c)
            for i, (step, k) in enumerate(plan.steps[:-1]):
                z = stages[i][:c]
                _flat_max(y, z, step, k)
                y = z
            plan.last_max(y, dense[:c])
            out[b : b + c] = plan.band(dense[:c], transpose=False)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        plan: _FlatPlan = ctx.plan
        grad = grad.contiguous()
        n = x.shape[0]
        chunk = plan.chunk_backward
        gx = torch.empty_like(x, memory_format=torch.contiguous_format)
        stages, padbuf = _buffers(x, plan, len(plan.steps), chunk)
        gbufs = [x.new_empty((chunk, *plan.buf_shape)) for _ in range(2)]
        gtop = x.new_zeros((chunk, *plan.buf_shape))  # cells past the dense max stay zero
        scratch = x.new_empty(3 * gtop.numel())
        for b in range(0, n, chunk):
            c = min(chunk, n - b)
            ys = [_chunk_input(x, plan, padbuf, b, c)]
            for i, (step, k) in enumerate(plan.steps[:-1] if plan.steps else []):
                _flat_max(ys[-1], stages[i][:c], step, k)
                ys.append(stages[i][:c])
            g = gtop[:c]
            plan.valid(g).copy_(plan.band(grad[b : b + c], transpose=True))
            for i in reversed(range(len(plan.steps))):
                step, k = plan.steps[i]
                last = i == 0
                target = gx[b : b + c] if last and padbuf is None else gbufs[i % 2][:c]
                z = stages[i][:c] if k > 2 else g
                if k > 2 and i == len(plan.steps) - 1:
                    _flat_max(ys[i], z, step, k)  # the last stage's output was not kept above
                _flat_max_backward(ys[i], z, g, target, step, k, scratch)
                g = target
            if padbuf is not None or not plan.steps:
                gx[b : b + c] = plan.interior(g)
        return gx, None


def _buffers(x: Tensor, plan: _FlatPlan, count: int, chunk: int) -> tuple[list[Tensor], Tensor | None]:
    stages = [x.new_empty((chunk, *plan.buf_shape)) for _ in range(max(count, 0))]
    padbuf = None
    if any(a or b for a, b in plan.pad):
        padbuf = x.new_full((chunk, *plan.buf_shape), -torch.inf)  # the max's padding, kept between chunks
    return stages, padbuf


def _chunk_input(x: Tensor, plan: _FlatPlan, padbuf: Tensor | None, b: int, c: int) -> Tensor:
    if padbuf is None:
        return x[b : b + c]
    plan.interior(padbuf[:c]).copy_(x[b : b + c])
    return padbuf[:c]


class _RunningMax(torch.autograd.Function):
    """Maximum of ``k`` shifted views along one axis, with a lean backward.

    Autograd through a chain of ``torch.maximum`` on views is many times slower
    than the forward; here the forward is that chain and the backward routes
    the gradient to the first shift that attains the maximum (as max pooling
    does on ties) with one mask and masked multiplies into one buffer per shift.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, ax: int, k: int, dl: int, o: int) -> Tensor:
        acc = y.narrow(ax, 0, o)
        for j in range(1, k):
            acc = torch.maximum(acc, y.narrow(ax, j * dl, o))
        ctx.save_for_backward(y, acc)
        ctx.meta = (ax, k, dl, o)
        return acc

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        y, acc = ctx.saved_tensors
        ax, k, dl, o = ctx.meta
        # masked multiplies into one output buffer: where/sub temporaries cost about twice as much here
        out = torch.empty_like(y)
        out.narrow(ax, o, y.shape[ax] - o).zero_()
        rest = grad
        for j in range(k - 1):
            hit = y.narrow(ax, j * dl, o) == acc
            if j == 0:
                torch.mul(rest, hit, out=out.narrow(ax, 0, o))
            else:
                out.narrow(ax, j * dl, o).addcmul_(rest, hit)
            miss = hit.logical_not_()  # later shifts get only what earlier ones did not take
            if j < k - 2:
                rest = rest * miss
            else:
                out.narrow(ax, (k - 1) * dl, o).addcmul_(rest, miss)
        return out, None, None, None, None


def _dense_max(x: Tensor, kernel_size: tuple[int, ...], padding: Padding, dilation: object) -> Tensor:
    """Stride-1 max pooling (``-inf`` padding), one dim at a time, as a running maximum of shifted views."""
    track = custom_backward(x)
    win = resolve(x, kernel_size, 1, padding, dilation)  # type: ignore[arg-type]
    y = pad(x, win, "zeros", value=-torch.inf)
    for i, (k, dl, o) in reversed(list(enumerate(zip(win.kernel, win.dilation, win.out)))):
        ax = 2 + i  # last axis first: ties resolve as in max pooling (first maximum in row-major order)
        if k == 1:
            continue
        if track:
            y = _RunningMax.apply(y, ax, k, dl, o)
            continue
        acc = y.narrow(ax, 0, o)
        for j in range(1, k):
            acc = torch.maximum(acc, y.narrow(ax, j * dl, o))
        y = acc
    return y


def _running_applies(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding: Padding, dilation: object,
                     filt: int, mode: str, weight: Tensor) -> bool:
    return x.device.type == "cpu" and x.is_contiguous() and x.numel() > 0 and math.prod(k) > 1


@register("maxblur", "running_max", "CPU, contiguous input (where the fused pass does not apply)", _running_applies)
def _running_max_blur(x: Tensor, k: tuple[int, ...], s: tuple[int, ...], padding: Padding, dilation: object,
                      filt: int, mode: str, weight: Tensor) -> Tensor:
    from ..antialias import blur  # the formula's blur (and its kernels) on the dense max

    return blur(_dense_max(x, k, padding, dilation).contiguous(), filt, s, mode, weight=weight)

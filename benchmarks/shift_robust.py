"""Shift-robust pooling against the reference packages: blurpool vs antialiased-cnns' BlurPool, maxblur vs
kornia's MaxBlurPool2D, aps vs a plain stride-2 subsample plus one norm.

Forward and forward+backward, NCHW and channels-last input, on ``(32, 64, 56, 56)``; each row gives the
ratio reference time / poolkit time (above 1: poolkit is faster).

    .venv/bin/python benchmarks/shift_robust.py [--quick] [--threads N] [--pieces]

``--pieces`` adds a breakdown of maxblur in channels-last: the time of one full-size elementwise pass
against the fused maxblur's forward and forward+backward, to show how many such passes each costs.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import poolkit.functional as PF
from _timing import fwd_bwd, machine, median_time, table

SHAPE = (32, 64, 56, 56)

__all__ = ["main", "rows"]


def _pairs() -> list[tuple[str, str, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]]:
    """(operator, reference name, poolkit fn, reference fn)."""
    out: list[Any] = []
    c = SHAPE[1]
    try:
        import antialiased_cnns

        ref_bp = antialiased_cnns.BlurPool(c, pad_type="reflect", filt_size=4, stride=2)
        out.append(("blurpool filt=4 s=2", "antialiased-cnns BlurPool",
                    lambda x: PF.blur_pool(x, 2, filt=4, padding_mode="reflect"), ref_bp))
    except ImportError:
        pass
    try:
        import kornia

        ref_mb = kornia.filters.MaxBlurPool2D(kernel_size=3, stride=2, max_pool_size=2)
        out.append(("maxblur k=2 s=2 filt=3", "kornia MaxBlurPool2D",
                    lambda x: PF.max_blur_pool(x, 2, 2, filt=3, blur_padding_mode="zeros"), ref_mb))
    except ImportError:
        pass

    def subsample_and_norm(x: torch.Tensor) -> torch.Tensor:
        energy = x.square().sum(1)  # one norm map, as aps computes
        return x[:, :, ::2, ::2].contiguous() + energy[:, None, ::2, ::2]

    out.append(("aps l2 s=2", "x[..., ::2, ::2] + one norm", lambda x: PF.aps_pool(x, 2), subsample_and_norm))
    return out


def _paired(ours: Callable[[], object], ref: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median times of ``ours`` and ``ref`` and the median of their per-round ratios, the two run alternately.

    Alternating keeps both under the same load on shared cores; the median ratio
    of neighbouring runs is steadier than the ratio of two separate medians.
    """
    t_ours, t_ref = [], []
    for _ in range(repeat):
        t_ours.append(median_time(ours, warmup=2 if not t_ours else 0, repeat=1))
        t_ref.append(median_time(ref, warmup=2 if not t_ref else 0, repeat=1))
    ratios = [r / o for o, r in zip(t_ours, t_ref)]
    return statistics.median(t_ours), statistics.median(t_ref), statistics.median(ratios)


def rows(quick: bool = False) -> list[dict[str, Any]]:
    """One row per (operator, layout, pass): times in ms and the ratio reference / poolkit."""
    torch.manual_seed(0)
    shape = (8, 64, 56, 56) if quick else SHAPE
    repeat = 3 if quick else 21
    base = torch.randn(shape)
    result = []
    for op, ref_name, ours, ref in _pairs():
        for layout in ("NCHW", "channels_last"):
            x = base if layout == "NCHW" else base.contiguous(memory_format=torch.channels_last)
            for mode in ("forward", "forward+backward"):
                if mode == "forward":
                    with torch.no_grad():
                        t_ours, t_ref, ratio = _paired(lambda: ours(x), lambda: ref(x), repeat)
                else:
                    t_ours, t_ref, ratio = _paired(fwd_bwd(ours, x), fwd_bwd(ref, x), repeat)
                result.append(dict(op=op, reference=ref_name, layout=layout, mode=mode,
                                   poolkit_ms=1e3 * t_ours, reference_ms=1e3 * t_ref, ratio=ratio))
    return result


def pieces(quick: bool = False) -> list[list[Any]]:
    """Channels-last maxblur against its building blocks: (piece, median ms, full-size passes it equals)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    shape = (8, 64, 56, 56) if quick else SHAPE
    repeat = 3 if quick else 15
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    buf = torch.empty_like(x)
    dense = F.max_pool2d(x, 2, 1)
    weight = PF.binomial_filter(3, 2).expand(shape[1], 1, 3, 3).contiguous()

    def ours(t: torch.Tensor) -> torch.Tensor:
        return PF.max_blur_pool(t, 2, 2, filt=3, blur_padding_mode="zeros")

    with torch.no_grad():
        timed = [
            ("one elementwise pass: max of two shifted views into a reused buffer",
             lambda: torch.maximum(x[..., :-1], x[..., 1:], out=buf[..., :-1])),
            ("the same pass into a fresh tensor", lambda: torch.maximum(x[..., :-1], x[..., 1:])),
            ("depthwise 3x3 stride-2 convolution of the dense max", lambda: F.conv2d(dense, weight, None, 2, 1, 1, 64)),
            ("poolkit maxblur forward", lambda: ours(x)),
        ]
        times = [(name, median_time(fn, warmup=2, repeat=repeat)) for name, fn in timed]
    times.append(("poolkit maxblur forward+backward", median_time(fwd_bwd(ours, x), warmup=2, repeat=repeat)))
    try:
        import kornia

        ref = kornia.filters.MaxBlurPool2D(kernel_size=3, stride=2, max_pool_size=2)
        times.append(("kornia MaxBlurPool2D forward+backward", median_time(fwd_bwd(ref, x), warmup=2, repeat=repeat)))
    except ImportError:
        pass
    unit = times[0][1]
    return [[name, 1e3 * t, t / unit] for name, t in times]


def main() -> None:
    quick = "--quick" in sys.argv
    if "--threads" in sys.argv:
        # one thread gives steadier numbers on contended cores (parallel regions stall for whole time slices)
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    data = rows(quick)
    header = ["operator", "reference", "layout", "pass", "poolkit ms", "reference ms", "ref / poolkit"]
    print(f"input {(8, 64, 56, 56) if quick else SHAPE}; {machine()}\n")
    print(table(header, [[r["op"], r["reference"], r["layout"], r["mode"], r["poolkit_ms"], r["reference_ms"],
                          r["ratio"]] for r in data]))
    if "--pieces" in sys.argv:
        print("\nmaxblur k=2 s=2 filt=3, channels_last, pieces\n")
        print(table(["piece", "ms", "in elementwise passes"], pieces(quick)))


if __name__ == "__main__":
    main()

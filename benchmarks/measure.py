"""Cost of the instruments relative to plain passes of the same model and batch.

- ``profile`` over S shifts vs S plain forward passes of the batch (target <= 1.3x), with
  sub-pixel equivariance for stride-incommensurate shifts (default), without (``subpixel=False``),
  and one shift per pass (``chunk=1``, the batch size of the plain passes);
- ``lie_derivative`` (every spatial axis) vs one forward + backward (target <= 3x).

Run: ``.venv/bin/python benchmarks/measure.py --threads 1`` (``--repeat`` to change the number of rounds).
Each round times every variant once, back to back, so a ratio is the median over rounds of two runs made
moments apart: on shared cores a slow spell then hits both sides of a ratio instead of one.
Most shifts have an odd component, so layers past the first stride-2 pool need a sub-pixel ``T'`` for them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fwd_bwd, machine, table, timer
from poolkit.measure import lie_derivative, profile

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
CASES = {1: (32, 256), 2: (16, 32), 3: (4, 16)}  # dim: (batch, size)


def cnn(d: int, widths: tuple[int, ...] = (32, 64, 128)) -> nn.Sequential:
    """A small VGG-style CNN: stages of two conv-relu and a max pool (one per width), global average, linear."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    cin = 3
    for cout in widths:
        conv_a, conv_b = CONV[d](cin, cout, 3, padding=1), CONV[d](cout, cout, 3, padding=1)
        layers += [conv_a, nn.ReLU(), conv_b, nn.ReLU(), POOL[d](2)]
        cin = cout
    return nn.Sequential(*layers, GAP[d](1), nn.Flatten(), nn.Linear(cin, 10)).eval()


def shifts(d: int, s: int) -> list[tuple[int, ...]]:
    return [tuple((k + i) % 5 - 2 for i in range(d)) for k in range(1, s + 1)]


def rounds(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 2) -> dict[str, list[float]]:
    """Times in seconds of each function, ``repeat`` rounds of one call each, after ``warmup`` rounds
    (``torch.utils.benchmark.Timer.timeit(1)``: CUDA synchronised, the thread count fixed)."""
    timers = {k: timer(fn) for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeat):
        for k, t in timers.items():
            m = t.timeit(1)
            if r >= warmup:
                times[k].append(m.median)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``num / den`` timed in the same round."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shifts", type=int, default=8, help="number of shifts S")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128], help="channels of each stage")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for d, (n, size) in CASES.items():
        if d not in args.dims:
            continue
        model = cnn(d, tuple(args.widths))
        x = torch.randn((n, 3) + (size,) * d)
        sh = shifts(d, args.shifts)

        def plain(model=model, x=x, sh=sh) -> None:
            with torch.no_grad():
                for _ in sh:
                    model(x)

        t = rounds({
            "plain": plain,
            "profile": lambda model=model, x=x, sh=sh: profile(model, x, sh),
            "fast": lambda model=model, x=x, sh=sh: profile(model, x, sh, subpixel=False),
            "chunk": lambda model=model, x=x, sh=sh: profile(model, x, sh, chunk=1),
            "fwd_bwd": fwd_bwd(model, x),
            "lie": lambda model=model, x=x: lie_derivative(model, x),
        }, args.repeat)
        ms = {k: statistics.median(v) * 1e3 for k, v in t.items()}
        rows.append([
            f"{d}-D", f"{n}x3x" + "x".join([str(size)] * d), len(sh),
            ms["plain"], ms["profile"], ratio(t, "profile", "plain"), ratio(t, "fast", "plain"),
            ratio(t, "chunk", "plain"), ms["fwd_bwd"], ms["lie"], ratio(t, "lie", "fwd_bwd"),
        ])
    print(table(
        ["dim", "batch", "S", "S forwards ms", "profile ms", "profile ratio (<=1.3)", "subpixel=False",
         "chunk=1",
         "fwd+bwd ms", "lie_derivative ms", "lie ratio (<=3)"],
        rows,
    ))
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

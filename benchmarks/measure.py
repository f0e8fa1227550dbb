"""Cost of the instruments relative to plain passes of the same model and batch.

- ``profile`` over S shifts vs S plain forward passes of the batch (target <= 1.3x), with
  sub-pixel equivariance for stride-incommensurate shifts (default), without (``subpixel=False``),
  and one shift per pass (``chunk=1``, the batch size of the plain passes);
- ``lie_derivative`` (every spatial axis) vs one forward + backward (target <= 3x).

Run: ``.venv/bin/python benchmarks/measure.py --threads 1`` (``--repeat`` to change the number of runs).
Most shifts have an odd component, so layers past the first stride-2 pool need a sub-pixel ``T'`` for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fwd_bwd, machine, median_time, table
from poolkit.measure import lie_derivative, profile

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
CASES = {1: (32, 256), 2: (16, 32), 3: (4, 16)}  # dim: (batch, size)


def cnn(d: int) -> nn.Sequential:
    """A small VGG-style CNN: three stages of two conv-relu and a max pool, global average, linear head."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    cin = 3
    for cout in (32, 64, 128):
        conv_a, conv_b = CONV[d](cin, cout, 3, padding=1), CONV[d](cout, cout, 3, padding=1)
        layers += [conv_a, nn.ReLU(), conv_b, nn.ReLU(), POOL[d](2)]
        cin = cout
    return nn.Sequential(*layers, GAP[d](1), nn.Flatten(), nn.Linear(cin, 10)).eval()


def shifts(d: int, s: int) -> list[tuple[int, ...]]:
    return [tuple((k + i) % 5 - 2 for i in range(d)) for k in range(1, s + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shifts", type=int, default=8, help="number of shifts S")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for d, (n, size) in CASES.items():
        model = cnn(d)
        x = torch.randn((n, 3) + (size,) * d)
        sh = shifts(d, args.shifts)

        def plain(model=model, x=x, sh=sh) -> None:
            with torch.no_grad():
                for _ in sh:
                    model(x)

        t_plain = median_time(plain, repeat=args.repeat)
        t_prof = median_time(lambda model=model, x=x, sh=sh: profile(model, x, sh), repeat=args.repeat)
        t_fast = median_time(lambda model=model, x=x, sh=sh: profile(model, x, sh, subpixel=False), repeat=args.repeat)
        t_chunk = median_time(lambda model=model, x=x, sh=sh: profile(model, x, sh, chunk=1), repeat=args.repeat)
        t_fb = median_time(fwd_bwd(model, x), repeat=args.repeat)
        t_lie = median_time(lambda model=model, x=x: lie_derivative(model, x), repeat=args.repeat)
        rows.append([
            f"{d}-D", f"{n}x3x" + "x".join([str(size)] * d), len(sh),
            t_plain * 1e3, t_prof * 1e3, t_prof / t_plain, t_fast / t_plain, t_chunk / t_plain,
            t_fb * 1e3, t_lie * 1e3, t_lie / t_fb,
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

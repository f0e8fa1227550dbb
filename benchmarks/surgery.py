"""How long surgery takes on full-width module trees: ResNet-50, ResNet-18, MobileNetV2 (torchvision layouts).

The models (tests/zoo.py at torchvision's widths) are built on the meta device (no
weights allocated; ``--device cpu`` for real ones). Each timed statement converts a
fresh deep copy, made in the timer's setup (not timed). Uses ``torch.utils.benchmark``
(``Timer.timeit(1)`` per run, so that each run has its own copy).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/surgery.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from poolkit.convert import antialias, make_shift_invariant, swap_pools
from zoo import MobileNetV2, resnet18, resnet50

SURGERIES = {
    "make_shift_invariant aps (tied)": "make_shift_invariant(net, 'aps')",
    "make_shift_invariant aps (untied)": "make_shift_invariant(net, 'aps', tie_phases=False)",
    "make_shift_invariant lps (tied)": "make_shift_invariant(net, 'lps')",
    "antialias": "antialias(net)",
    "swap_pools max->lp": "swap_pools(net, 'lp:p=3', types=[torch.nn.MaxPool2d])",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="meta", help="where the models are built: meta (default) or cpu")
    ap.add_argument("--runs", type=int, default=15, help="timed surgeries per row (each on a fresh copy)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {
        "ResNet-50": lambda: resnet50(width=64, num_classes=1000),
        "ResNet-18": lambda: resnet18(width=64, num_classes=1000),
        "MobileNetV2": lambda: mobilenet_v2_full(),
    }
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"median and range of {args.runs} runs\n")
    print("| model | modules | surgery | median (ms) | min (ms) | max (ms) |")
    print("|---|---:|---|---:|---:|---:|")
    for mname, make in models.items():
        with torch.device(args.device):
            base = make()
        g = {"copy": copy, "base": base, "torch": torch, "make_shift_invariant": make_shift_invariant,
             "antialias": antialias, "swap_pools": swap_pools}
        n_mod = sum(1 for _ in base.modules())
        for sname, stmt in SURGERIES.items():
            # timeit(1) re-runs setup before its timed call: each timed surgery gets a fresh copy, not timed
            timer = benchmark.Timer(stmt, setup="net = copy.deepcopy(base)", globals=g)
            times = sorted(timer.timeit(1).median for _ in range(args.runs))
            print(f"| {mname} | {n_mod} | {sname} | {statistics.median(times) * 1e3:.1f} | {times[0] * 1e3:.1f} | "
                  f"{times[-1] * 1e3:.1f} |")


def mobilenet_v2_full() -> torch.nn.Module:
    return MobileNetV2(num_classes=1000, width_mult=1.0, last_channel=1280)


if __name__ == "__main__":
    main()

"""Invariance after surgery on the test zoo (tests/zoo.py): the figures behind the zoo tests, as a table.

For each model (random weights, fixed seed, float64, eval) and each input size (even,
odd): the largest change of the output over 10 random circular shifts, as given and
after ``make_shift_invariant`` (APS tied, APS untied, LPS); and the mean relative
change before and after ``antialias`` (circular blur).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/surgery_invariance.py
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from poolkit.convert import antialias, make_shift_invariant
from test_zoo import _change, inputs, random_shifts, shifted_batch
from zoo import ZOO, prepared


@torch.no_grad()
def worst(net: torch.nn.Module, shape: tuple[int, ...]) -> float:
    out = net(shifted_batch(inputs(shape), random_shifts(shape[1:])))
    return float((out - out[:1]).abs().max())


def main() -> None:
    torch.set_num_threads(1)
    print("| model | input | as given | aps (tied) | aps (untied) | lps (tied) | rel. change as given | "
          "after antialias |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, (make, even, odd) in ZOO.items():
        base = prepared(make)
        fixed = {}
        for key, kw in (("aps", {}), ("untied", {"tie_phases": False}), ("lps", {"method": "lps"})):
            net = copy.deepcopy(base)
            torch.manual_seed(0)
            make_shift_invariant(net, **kw)
            fixed[key] = net.double().eval()
        aa = copy.deepcopy(base)
        antialias(aa, padding_mode="circular")
        aa = aa.double().eval()
        for shape in (even, odd):
            x, shifts = inputs(shape, seed=3), random_shifts(shape[1:], seed=5)
            print(f"| {name} | {'x'.join(map(str, shape))} | {worst(base, shape):.1e} | "
                  f"{worst(fixed['aps'], shape):.1e} | {worst(fixed['untied'], shape):.1e} | "
                  f"{worst(fixed['lps'], shape):.1e} | "
                  f"{_change(base, x, shifts):.4f} | {_change(aa, x, shifts):.4f} |")


if __name__ == "__main__":
    main()

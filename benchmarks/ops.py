"""Every poolkit op beside torch's native op of the same statistic (or the plain formula).

Run:  .venv/bin/python benchmarks/ops.py [--quick] [--dims 1 2 3] [--only max avg ...]

For each op, input size and memory layout it prints the time ratio poolkit / reference
for the forward pass (under ``torch.no_grad``) and for forward + backward, and, for
the smooth statistics, the ratio to torch's avg_pool on the same input and layout.
All numbers come from one process, after warm-up, median of many runs; poolkit, the
reference and avg_pool run interleaved (round by round, alternating their order), so
load from other processes on a shared machine falls on all three alike. A ratio
below 1 means poolkit is faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poolkit.functional as PF
from _timing import fwd_bwd, machine, table

Fn = Callable[[torch.Tensor], torch.Tensor]

SHAPES = {1: (32, 64, 3136), 2: (32, 64, 56, 56), 3: (8, 64, 16, 28, 28)}
QUICK_SHAPES = {1: (8, 32, 1024), 2: (8, 32, 32, 32), 3: (2, 16, 8, 16, 16)}
K = 2


def _nat(name: str, d: int) -> Callable[..., torch.Tensor]:
    return getattr(F, f"{name}{d}d")


def _unfold(x: torch.Tensor, k: int) -> torch.Tensor:
    """Plain formula's windows: (..., out..., k**d) via Tensor.unfold, flattened (a copy)."""
    d = x.ndim - 2
    for i in range(d):
        x = x.unfold(2 + i, k, k)
    return x.reshape(*x.shape[: 2 + d], -1)


def cases(d: int) -> dict[str, tuple[Fn, Fn, bool]]:
    """name -> (poolkit fn, reference fn, smooth statistic?)"""
    mp, ap = _nat("max_pool", d), _nat("avg_pool", d)
    eps = 1e-6
    return {
        "max": (lambda x: PF.max_pool(x, K), lambda x: mp(x, K), False),
        "min": (lambda x: PF.min_pool(x, K), lambda x: -mp(-x, K), False),
        "avg": (lambda x: PF.avg_pool(x, K), lambda x: ap(x, K), False),
        "lp (p=2)": (lambda x: PF.lp_pool(x, K, p=2.0), lambda x: _nat("lp_pool", d)(x, 2.0, K), True),
        "gem (p=3)": (lambda x: PF.gem_pool(x, K, p=3.0), lambda x: ap(x.clamp(min=eps).pow(3), K).pow(1 / 3), True),
        "lse (beta=1)": (lambda x: PF.lse_pool(x, K, beta=1.0), lambda x: ap(torch.exp(x), K).log(), True),
        "softpool": (lambda x: PF.softpool(x, K), lambda x: ap(x * torch.exp(x), K) / ap(torch.exp(x), K), True),
        "mixed (a=0.5)": (lambda x: PF.mixed_pool(x, K, alpha=0.5), lambda x: 0.5 * mp(x, K) + 0.5 * ap(x, K), True),
        "range": (lambda x: PF.range_pool(x, K), lambda x: mp(x, K) + mp(-x, K), False),
        "median": (lambda x: PF.median_pool(x, K), lambda x: _unfold(x, K).median(-1).values, False),
        "topk (k=2)": (lambda x: PF.topk_pool(x, K, k=2), lambda x: _unfold(x, K).topk(2, -1).values.mean(-1), False),
        "stochastic (eval)": (
            lambda x: PF.stochastic_pool(x, K, training=False),
            lambda x: ap(x * x, K) / ap(x, K).clamp_min(1e-12),
            True,
        ),
    }


def paired_times(fns: list[Callable[[], object]], repeat: int, warmup: int) -> list[float]:
    """Median seconds of each of ``fns``, timed round by round.

    The order rotates from round to round (and reverses every other), so each function takes every slot
    equally often; each result is dropped before the next call is timed, so no call pays for freeing another's
    output (on this machine a large free or a first touch of fresh memory costs milliseconds).
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    m = len(fns)
    for r in range(repeat):
        order = [(i + r) % m for i in range(m)]
        for i in order if (r // m) % 2 == 0 else reversed(order):
            t0 = time.perf_counter()
            out = fns[i]()
            times[i].append(time.perf_counter() - t0)
            del out
    return [statistics.median(t) for t in times]


def _no_grad(fn: Fn, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return fn(x)

    return run


def layouts(d: int) -> list[tuple[str, torch.memory_format]]:
    if d == 1:
        return [("NCL", torch.contiguous_format)]
    cl = torch.channels_last if d == 2 else torch.channels_last_3d
    return [("contiguous", torch.contiguous_format), ("channels_last", cl)]


def run(dims: list[int], quick: bool, only: list[str] | None, repeat: int = 11) -> list[list[object]]:
    rows: list[list[object]] = []
    repeat, warmup = (3, 1) if quick else (repeat, 2)
    for d in dims:
        shape = (QUICK_SHAPES if quick else SHAPES)[d]
        base = torch.rand(shape) + 0.1  # positive: fair to lp, gem and stochastic's formula
        for lname, fmt in layouts(d):
            x = base.contiguous(memory_format=fmt)
            avg = _nat("avg_pool", d)
            for name, (ours, ref, smooth) in cases(d).items():
                if only and not any(name.startswith(o) for o in only):
                    continue
                fns = [_no_grad(ours, x), _no_grad(ref, x), _no_grad(lambda t: avg(t, K), x)]
                t_ours, t_ref, t_avg = paired_times(fns, repeat, warmup)
                fns = [fwd_bwd(ours, x), fwd_bwd(ref, x), fwd_bwd(lambda t: avg(t, K), x)]
                t_ours_b, t_ref_b, t_avg_b = paired_times(fns, repeat, warmup)
                row: list[object] = [
                    name, f"{d}-d", lname, f"{t_ours * 1e3:.1f}", t_ours / t_ref, t_ours_b / t_ref_b,
                    t_ours / t_avg if smooth else "", t_ours_b / t_avg_b if smooth else "",
                ]
                rows.append(row)
                print(" | ".join(str(v if not isinstance(v, float) else f"{v:.2f}") for v in row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, few repeats (a smoke run)")
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", nargs="*", default=None, help="op name prefixes")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=11, help="timed rounds per op (median taken)")
    ap.add_argument("--shift-robust", action="store_true", help="also the shift-robust table (blurpool, maxblur, aps)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n")
    rows = run(args.dims, args.quick, args.only, args.repeat)
    header = ["op", "dims", "layout", "poolkit fwd ms", "fwd / ref", "fwd+bwd / ref", "fwd / avg_pool",
              "fwd+bwd / avg_pool"]
    print("\n" + table(header, rows))
    if args.shift_robust:
        import shift_robust

        print()
        shift_robust.main(quick=args.quick)


if __name__ == "__main__":
    main()

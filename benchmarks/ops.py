"""Every poolkit op beside torch's native op of the same statistic (or the plain formula).

Run:  .venv/bin/python benchmarks/ops.py [--quick] [--dims 1 2 3] [--only max avg ...] [--device cuda]

For each op, input size and memory layout it first checks that poolkit's output is
the same tensor as the reference's (same shape and strides; values equal, or equal
to float32 rounding for the plain formulas) and that poolkit with its fast kernels
on gives the same output and input gradient as with them off
(``poolkit.fast_paths(False)``). It then prints the time ratios poolkit / reference
and fast on / fast off for the forward pass (under ``torch.no_grad``) and for
forward + backward, and, for the smooth statistics, the ratio to torch's avg_pool on
the same input and layout. Timing is ``torch.utils.benchmark`` (``Timer``,
``blocked_autorange``; CUDA is synchronised by the timer): every variant of a row
runs round by round, the order rotating, so load from other processes on a shared
machine falls on all alike; each variant's rounds are merged into one
``Measurement`` (median taken). ``--compare`` also prints ``benchmark.Compare``'s
tables of the times. A ratio below 1 means poolkit (or the fast kernel) is faster;
a ratio counts only where the check column reads ``same``. Strides are compared with the reference
where it is torch's op (max, min, range as native max pooling, avg, lp); for the other statistics poolkit's
contract is its own reference formula's layout (the input's), so there fast on and off must agree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poolkit
import poolkit.functional as PF
from _timing import fwd_bwd, interleaved, machine, table

Fn = Callable[[torch.Tensor], torch.Tensor]

SHAPES = {1: (32, 64, 3136), 2: (32, 64, 56, 56), 3: (8, 64, 16, 28, 28)}
QUICK_SHAPES = {1: (8, 32, 1024), 2: (8, 32, 32, 32), 3: (2, 16, 8, 16, 16)}
K = 2
# rows whose reference is torch's op (or native max pooling): poolkit must return its strides too. The other
# statistics return their own reference formula's layout (the input's), which the benchmark's formula built
# from avg_pool need not share (avg_pool3d turns channels_last_3d input into contiguous output)
TORCH_LAYOUT = ("max", "min", "avg", "lp", "range")

__all__ = ["cases", "check", "main", "run"]


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


def _fast(fn: Fn, on: bool) -> Fn:
    def run(x: torch.Tensor) -> torch.Tensor:
        with poolkit.fast_paths(on):
            return fn(x)

    return run


def _no_grad(fn: Fn, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return fn(x)

    return run


def _differ(a: torch.Tensor, b: torch.Tensor, exact: bool, strides: bool = True) -> str:
    """'' when ``a`` and ``b`` are the same tensor (shape, dtype, strides, values), else what differs."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape/dtype {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
    if strides and a.stride() != b.stride():
        return f"strides {a.stride()} vs {b.stride()}"
    if exact and torch.equal(a, b):
        return ""
    eps = torch.finfo(a.dtype).eps  # exact: a few ulp (8), as tests/test_fast_equivalence.py
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    tol = dict(rtol=8 * eps, atol=8 * eps * scale) if exact else dict(rtol=1e-5, atol=1e-6)
    if not torch.allclose(a, b, **tol):  # type: ignore[arg-type]
        return f"values (max abs diff {(a - b).abs().max().item():.2e})"
    return ""


def check(ours: Fn, ref: Fn, x: torch.Tensor, ref_layout: bool = True) -> str:
    """``same`` when poolkit (fast on and off) returns the reference's tensor, in no_grad and with grad, and
    fast on/off give the same output and input gradient (strides equal; values bit for bit or within 8 ulp;
    against the reference, within rtol 1e-5); else what differs first.

    ``ref_layout=False``: the reference's strides are not poolkit's contract (a formula of this benchmark, not
    torch's op), so only values are compared with it; fast on/off still must agree.
    """
    on, off = _fast(ours, True), _fast(ours, False)
    with torch.no_grad():
        r = ref(x)
        for tag, f in (("no_grad fast", on), ("no_grad ref-formula", off)):
            why = _differ(f(x), r, exact=False, strides=ref_layout)
            if why:
                return f"{tag} vs reference: {why}"
        why = _differ(on(x), off(x), exact=True)
        if why:
            return f"no_grad fast on vs off: {why}"
    outs, grads = [], []
    for f in (on, off):
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        y = f(leaf)
        y.backward(torch.ones_like(y))
        outs.append(y.detach())
        grads.append(leaf.grad)
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    why = _differ(outs[0], ref(leaf).detach(), exact=False, strides=ref_layout)
    if why:
        return f"grad vs reference: {why}"
    for tag, a, b in (("output", *outs), ("input grad", *grads)):
        why = _differ(a, b, exact=True)
        if why:
            return f"grad fast on vs off, {tag}: {why}"
    return "same"


def layouts(d: int) -> list[tuple[str, torch.memory_format]]:
    if d == 1:
        return [("NCL", torch.contiguous_format)]
    cl = torch.channels_last if d == 2 else torch.channels_last_3d
    return [("contiguous", torch.contiguous_format), ("channels_last", cl)]


def run(dims: list[int], quick: bool, only: list[str] | None, rounds: int = 5, min_run_time: float = 0.05,
        device: str = "cpu", measurements: list[benchmark.Measurement] | None = None) -> list[list[object]]:
    rows: list[list[object]] = []
    if quick:
        rounds, min_run_time = 2, 0.01
    torch.manual_seed(0)
    for d in dims:
        shape = (QUICK_SHAPES if quick else SHAPES)[d]
        base = torch.rand(shape, device=device) + 0.1  # positive: fair to lp, gem and stochastic's formula
        for lname, fmt in layouts(d):
            x = base.contiguous(memory_format=fmt)
            avg = _nat("avg_pool", d)
            for name, (ours, ref, smooth) in cases(d).items():
                if only and not any(name.startswith(o) for o in only):
                    continue
                verdict = check(ours, ref, x, ref_layout=name.split()[0] in TORCH_LAYOUT)
                variants: list[tuple[str, Fn]] = [("poolkit", _fast(ours, True)),
                                                  ("poolkit fast off", _fast(ours, False)), ("reference", ref)]
                if smooth:
                    variants.append(("avg_pool", lambda t: avg(t, K)))
                sub = f"{name} {d}-d {lname}"
                t: dict[str, dict[str, float]] = {}
                for pas, wrap in (("fwd", _no_grad), ("fwd+bwd", fwd_bwd)):
                    ms = interleaved([wrap(f, x) for _, f in variants], rounds=rounds, min_run_time=min_run_time,
                                     labels=[(f"ops.py {pas}", sub, v) for v, _ in variants])
                    if measurements is not None:
                        measurements.extend(ms)
                    t[pas] = {v: m.median for (v, _), m in zip(variants, ms)}
                f, b = t["fwd"], t["fwd+bwd"]
                row: list[object] = [
                    name, f"{d}-d", lname, f"{f['poolkit'] * 1e3:.1f}",
                    f["poolkit"] / f["reference"], b["poolkit"] / b["reference"],
                    f["poolkit"] / f["poolkit fast off"], b["poolkit"] / b["poolkit fast off"],
                    f["poolkit"] / f["avg_pool"] if smooth else "", b["poolkit"] / b["avg_pool"] if smooth else "",
                    verdict,
                ]
                rows.append(row)
                print(" | ".join(str(v if not isinstance(v, float) else f"{v:.2f}") for v in row), flush=True)
    return rows


HEADER = ["op", "dims", "layout", "poolkit fwd ms", "fwd / ref", "fwd+bwd / ref", "fwd on / off",
          "fwd+bwd on / off", "fwd / avg_pool", "fwd+bwd / avg_pool", "check"]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, few rounds (a smoke run)")
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", nargs="*", default=None, help="op name prefixes")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (merged, median taken)")
    ap.add_argument("--min-run-time", type=float, default=0.05, help="seconds of blocked_autorange per round")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--compare", action="store_true", help="also print torch.utils.benchmark.Compare tables")
    ap.add_argument("--shift-robust", action="store_true", help="also the shift-robust table (blurpool, maxblur, aps)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine(args.device)}, device {args.device}\n")
    ms: list[benchmark.Measurement] = []
    rows = run(args.dims, args.quick, args.only, args.rounds, args.min_run_time, args.device, ms)
    print("\n" + table(HEADER, rows))
    if args.compare:
        cmp = benchmark.Compare(ms)
        print()
        cmp.print()
    if args.shift_robust:
        import shift_robust

        print()
        shift_robust.main(quick=args.quick)


if __name__ == "__main__":
    main()

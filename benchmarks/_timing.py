"""Shared timing helpers for the benchmark scripts, on ``torch.utils.benchmark``.

``torch.utils.benchmark.Timer`` synchronises CUDA around each timed block, sets the
thread count it is given, and ``blocked_autorange`` picks how many calls make one
measurement. On a shared machine the load moves during a run, so :func:`interleaved`
times several functions round by round (one short ``blocked_autorange`` each per
round, the order rotating) and merges each function's rounds into one
``Measurement``: load then falls on every function alike.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence

import torch
from torch.utils import benchmark

__all__ = ["fwd_bwd", "interleaved", "machine", "median_time", "table", "timer"]


def timer(fn: Callable[[], object], *, label: str = "", sub_label: str = "", description: str = "",
          num_threads: int | None = None) -> benchmark.Timer:
    """A ``Timer`` running ``fn()`` (labels feed ``benchmark.Compare``)."""
    return benchmark.Timer(
        stmt="fn()", globals={"fn": fn}, label=label, sub_label=sub_label, description=description,
        num_threads=num_threads if num_threads is not None else torch.get_num_threads(),
    )


def interleaved(fns: Sequence[Callable[[], object]], *, rounds: int = 5, min_run_time: float = 0.05,
                warmup: int = 2, labels: Sequence[tuple[str, str, str]] | None = None,
                ) -> list[benchmark.Measurement]:
    """One merged ``Measurement`` per function of ``fns``, timed round by round.

    Each round runs ``blocked_autorange(min_run_time)`` once per function, the order
    rotating from round to round (and reversed every other cycle), so each function
    takes every slot equally often. ``labels`` gives (label, sub_label, description)
    per function, for ``benchmark.Compare``.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    labels = labels or [("", "", str(i)) for i in range(len(fns))]
    timers = [timer(fn, label=a, sub_label=b, description=c) for fn, (a, b, c) in zip(fns, labels)]
    runs: list[list[benchmark.Measurement]] = [[] for _ in fns]
    m = len(fns)
    for r in range(rounds):
        order = [(i + r) % m for i in range(m)]
        for i in order if (r // m) % 2 == 0 else list(reversed(order)):
            runs[i].append(timers[i].blocked_autorange(min_run_time=min_run_time))
    merged = []
    for ms in runs:
        out = benchmark.Measurement.merge(ms)
        merged.append(out[0])
    return merged


def median_time(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 15, min_time: float = 0.0) -> float:
    """Median seconds of one call of ``fn()`` after ``warmup`` calls (``blocked_autorange`` blocks)."""
    for _ in range(warmup):
        fn()
    t = timer(fn)
    m = t.blocked_autorange(min_run_time=max(min_time, 1e-9))
    while len(m.times) < repeat:
        m = benchmark.Measurement.merge([m, t.blocked_autorange(min_run_time=max(min_time, 1e-9))])[0]
    return m.median


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    """A closure running forward and backward of ``fn`` on a leaf copy of ``x`` (grad buffer reused)."""
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)

    def run() -> None:
        leaf.grad = None
        fn(leaf).sum().backward()

    return run


def machine(device: str = "cpu") -> str:
    threads = torch.get_num_threads()
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
    else:
        dev = platform.processor() or platform.machine()
    return f"{dev}, torch {torch.__version__}, {threads} threads"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(out)

"""Shared timing helpers for the benchmark scripts: warm-up, then the median of many runs."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch


def median_time(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 15, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    """A closure running forward and backward of ``fn`` on a leaf copy of ``x`` (grad buffer reused)."""
    leaf = x.detach().clone().requires_grad_(True)

    def run() -> None:
        leaf.grad = None
        fn(leaf).sum().backward()

    return run


def machine() -> str:
    threads = torch.get_num_threads()
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    return f"{dev}, torch {torch.__version__}, {threads} threads"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(out)

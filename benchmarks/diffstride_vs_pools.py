"""DiffStride against max and blurpool at the same starting strides.

One network per pool: ``blocks`` x (conv + ReLU + pool with stride 2 per axis), then a global
max and a linear head (the head accepts any size, as DiffStride's changing output needs).
``max`` and ``blurpool`` keep stride 2; ``diffstride`` starts at 2 and learns its stride per
axis with the weights (same Adam, same learning rate). Trained by the lab's loop
(:func:`poolkit.lab.train.train_model`); prints test accuracy (mean ± std over seeds),
the learned strides and the wall time. Finished trials are appended to ``--out``; a rerun
skips them.

    python benchmarks/diffstride_vs_pools.py --dataset mnist1d
    python benchmarks/diffstride_vs_pools.py --dataset digits-shift --padding circular --steps 600 --channels 16
    python benchmarks/diffstride_vs_pools.py --table bench-diffstride.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import poolkit
from poolkit.lab.data import load_dataset
from poolkit.lab.models import build_pool
from poolkit.lab.train import TrainConfig, _accuracy, _predict, train_model
from poolkit.nn.spectral import _DiffStridePoolNd

POOLS = ("max", "blurpool", "diffstride", "diffstride:smoothness=1")


class Net(nn.Module):
    def __init__(self, ds, pool: str, channels: int, blocks: int, padding: str, stride: int = 2) -> None:
        super().__init__()
        dim = ds.dim
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dim]
        k = 5 if dim == 1 else 3
        layers: list[nn.Module] = []
        c = ds.channels
        for _ in range(blocks):
            if pool.startswith("diffstride"):  # learnable here: the global head takes any size
                pooler = poolkit.create_pool(pool, dim=dim, kernel_size=float(stride))
            else:
                pooler = build_pool(pool, dim, (stride,) * dim, channels, None, padding)
            layers += [conv(c, channels, k, padding=k // 2, padding_mode=padding), nn.ReLU(), pooler]
            c = channels
        self.body = nn.Sequential(*layers)
        self.glob = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d}[dim](1)
        self.head = nn.Linear(channels, ds.num_classes)

    def forward(self, x):
        return self.head(self.glob(self.body(x)).flatten(1))


def table(rows: list[dict]) -> str:
    out = ["| dataset | pool | test acc (%) | train acc (%) | learned strides (block 1; block 2) | wall (s) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for key in sorted({(r["dataset"], r["padding"]) for r in rows}):
        for pool in POOLS:
            rs = [r for r in rows if (r["dataset"], r["padding"]) == key and r["pool"] == pool]
            if not rs:
                continue
            a = [100 * r["test_acc"] for r in rs]
            t = [100 * r["train_acc"] for r in rs]
            sd = statistics.stdev(a) if len(a) > 1 else 0.0
            strides = "–"
            if rs[0]["strides"]:
                per_block = list(zip(*[r["strides"] for r in rs]))
                strides = "; ".join(
                    ", ".join(f"{statistics.mean(v):.2f}" for v in zip(*blk)) for blk in per_block
                )
            out.append(f"| {key[0]} ({key[1]}) | {pool} | {statistics.mean(a):.1f} ± {sd:.1f} | "
                       f"{statistics.mean(t):.1f} | {strides} | {statistics.mean(r['wall_s'] for r in rs):.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--padding", default="zeros")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--pools", default=",".join(POOLS))
    ap.add_argument("--out", default="bench-diffstride.jsonl")
    ap.add_argument("--table", default=None)
    args = ap.parse_args(argv)
    if args.table:
        print(table([json.loads(ln) for ln in Path(args.table).read_text().splitlines() if ln.strip()]))
        return
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset, seed=0)
    cfg = TrainConfig(steps=args.steps, channels=args.channels, padding=args.padding)
    out = Path(args.out)
    done = set()
    if out.exists():  # resume: skip the trials already measured
        done = {(r["dataset"], r["padding"], r["pool"], r["seed"])
                for r in map(json.loads, out.read_text().splitlines()) if r}
    for seed in range(args.seeds):
        for pool in args.pools.split(","):
            if (args.dataset, args.padding, pool, seed) in done:
                continue
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            net = Net(ds, pool, args.channels, cfg.blocks, args.padding)
            train_model(net, ds, cfg, seed)
            row = {
                "dataset": args.dataset, "padding": args.padding, "pool": pool, "seed": seed, "steps": args.steps,
                "test_acc": _accuracy(_predict(net, ds.X_test), ds.y_test),
                "train_acc": _accuracy(_predict(net, ds.X_train), ds.y_train),
                "strides": [m.strides() for m in net.modules() if isinstance(m, _DiffStridePoolNd)],
                "wall_s": time.perf_counter() - t0,
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(pool, seed, f"{row['test_acc']:.3f}", row["strides"], f"{row['wall_s']:.0f}s", file=sys.stderr,
                  flush=True)
    print(table([json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()]))


if __name__ == "__main__":
    main()

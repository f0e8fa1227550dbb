"""Wall time of a learned-λ trial against one fixed-λ trial, interleaved so both see the same machine load.

Per seed: one fixed-λ trial (``--lever``), then one learned trial per ``--learn`` spec; prints each
learned trial's wall time over the fixed trial's of the same seed, and the learned λ and accuracy.

    python benchmarks/learned_lever_walltime.py --dataset mnist1d --lever 1 --learn "learn;learn:commit=1,warmup=0"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

import torch

from poolkit.lab.data import load_dataset
from poolkit.lab.learn import parse_learn, run_learned_trial
from poolkit.lab.train import TrainConfig, run_trial


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--padding", default="zeros")
    ap.add_argument("--lever", type=float, default=1.0)
    ap.add_argument("--learn", default="learn", help="learned-mode specs, separated by semicolons")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--pool", default="max")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset, seed=0)
    cfg = TrainConfig(steps=args.steps, channels=args.channels, padding=args.padding)
    specs = args.learn.split(";")
    res: dict[str, list[tuple[float, float, float]]] = {s: [] for s in specs}
    fixed = []
    # one short untimed pass of each kind first: the first trial of a process pays its warm-up
    run_trial(ds, args.pool, args.lever, 0, dataclasses.replace(cfg, steps=20))
    run_learned_trial(ds, args.pool, 0, dataclasses.replace(cfg, steps=20), parse_learn(specs[0]))
    for seed in range(args.seeds):
        f = run_trial(ds, args.pool, args.lever, seed, cfg)
        fixed.append((f["wall_s"], f["test_acc"]))
        for spec in specs:
            m = run_learned_trial(ds, args.pool, seed, cfg, parse_learn(spec))
            res[spec].append((m["wall_s"] / f["wall_s"], m["learned_lever"], m["test_acc"]))
            print(json.dumps({"seed": seed, "spec": spec, "fixed_wall_s": f["wall_s"], "wall_s": m["wall_s"],
                              "learned_lever": m["learned_lever"], "test_acc": m["test_acc"],
                              "fixed_test_acc": f["test_acc"]}), file=sys.stderr, flush=True)
    wall = statistics.mean(w for w, _ in fixed)
    print(f"{args.dataset} ({args.padding}), fixed λ = {args.lever:g}: wall {wall:.0f} s, "
          f"test acc {100 * statistics.mean(a for _, a in fixed):.1f} %")
    print("| learned mode | wall / fixed-λ trial (same seed) | learned λ | test acc (%) |")
    print("| --- | --- | --- | --- |")
    for spec, rows in res.items():
        r = [x[0] for x in rows]
        lam = [x[1] for x in rows]
        acc = [100 * x[2] for x in rows]
        sd = statistics.stdev if len(rows) > 1 else (lambda v: 0.0)
        print(f"| `{spec}` | {statistics.mean(r):.2f}× ({min(r):.2f}–{max(r):.2f}) | {statistics.mean(lam):.3f} ± "
              f"{sd(lam):.3f} | {statistics.mean(acc):.1f} ± {sd(acc):.1f} |")


if __name__ == "__main__":
    main()

"""Learned λ against the grid: does one run find the grid's best amount of pooling?

For each dataset: the grid (statistic max, λ over ``--levers``, ``--seeds`` seeds) and
the learned-λ trials (:mod:`poolkit.lab.learn`) with both objectives, α on a held-out
split of the training set (``val``) and on the training loss (``train``). Prints, per
dataset, the grid's accuracy per λ, its best λ, the learned λ (mean ± std over seeds),
its test accuracy, and its wall time over one fixed-λ trial's (measured in the same
process, so under the same machine load). Every finished trial is appended to
``--out`` (JSON lines), so a run cut short keeps what it measured; ``--resume``
skips trials already there.

    python benchmarks/learned_lever.py --dataset mnist1d --out bench-learn.jsonl
    python benchmarks/learned_lever.py --dataset digits-where --padding circular --steps 600 --channels 16
    python benchmarks/learned_lever.py --table bench-learn.jsonl   # the tables only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

import torch

from poolkit.lab.data import load_dataset
from poolkit.lab.learn import LearnConfig, parse_learn, run_learned_trial
from poolkit.lab.train import TrainConfig, run_trial


def _ms(vals: list[float]) -> str:
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}"


def _pct(vals: list[float]) -> str:
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * statistics.mean(vals):.1f} ± {100 * sd:.1f}"


def table(rows: list[dict]) -> str:
    out = []
    for key in sorted({(r["dataset"], r["padding"]) for r in rows}):
        rs = [r for r in rows if (r["dataset"], r["padding"]) == key]
        grid = [r for r in rs if r["kind"] == "grid"]
        levers = sorted({r["lever"] for r in grid})
        acc = {lv: [r["test_acc"] for r in grid if r["lever"] == lv] for lv in levers}
        wall = {lv: [r["wall_s"] for r in grid if r["lever"] == lv] for lv in levers}
        out.append(f"\n### {key[0]}, {key[1]} padding\n")
        out.append("| λ | " + " | ".join(f"{lv:g}" for lv in levers) + " |")
        out.append("| --- |" + " --- |" * len(levers))
        out.append("| grid test acc (%) | " + " | ".join(_pct(acc[lv]) for lv in levers) + " |")
        out.append("| grid wall (s) | " + " | ".join(f"{statistics.mean(wall[lv]):.0f}" for lv in levers) + " |")
        if not levers:
            continue
        best = max(levers, key=lambda lv: statistics.mean(acc[lv]))
        i = levers.index(best) if levers else 0
        lo, hi = (levers[max(0, i - 1)], levers[min(len(levers) - 1, i + 1)]) if levers else (math.nan, math.nan)
        out.append("")
        out.append(f"| mode | objective | learned λ | in [{lo:g}, {hi:g}] | test acc (%) | Δ vs grid best (pts) "
                   "| wall (s) | wall / fixed-λ trial at best λ | wall / mean fixed-λ trial |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        best_acc = statistics.mean(acc[best]) if levers else math.nan
        mean_wall = statistics.mean(r["wall_s"] for r in grid) if grid else math.nan
        modes = sorted({(r.get("learn", "learn"), r["objective"]) for r in rs if r["kind"] == "learn"},
                       key=lambda m: (m[1] != "val", m[0]))
        for spec, obj in modes:
            lr = [r for r in rs if r["kind"] == "learn" and (r.get("learn", "learn"), r["objective"]) == (spec, obj)]
            if not lr:
                continue
            lam = [r["learned_lever"] for r in lr]
            inside = sum(lo <= v <= hi for v in lam)
            a = [r["test_acc"] for r in lr]
            w = statistics.mean(r["wall_s"] for r in lr)
            delta = 100 * (statistics.mean(a) - best_acc)
            out.append(
                f"| `{spec}` | {obj} | {_ms(lam)} | {inside}/{len(lam)} | {_pct(a)} | {delta:+.1f} "
                f"| {w:.0f} | {w / statistics.mean(wall[best]):.2f}× | {w / mean_wall:.2f}× |"
            )
        out.append(f"\ngrid best λ = {best:g} ({100 * best_acc:.1f} %); seeds: "
                   f"{sorted({r['seed'] for r in rs})}; trials: {len(rs)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--padding", default="zeros")
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--levers", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--pool", default="max")
    ap.add_argument("--objectives", default="val,train")
    ap.add_argument("--learn", default="learn", help="learned-mode options, e.g. learn:arch_every=8 (objective "
                    "comes from --objectives)")
    ap.add_argument("--no-grid", action="store_true", help="only the learned trials")
    ap.add_argument("--out", default="bench-learned-lever.jsonl")
    ap.add_argument("--table", default=None, help="only print the tables of this JSON-lines file")
    args = ap.parse_args(argv)
    if args.table:
        rows = [json.loads(ln) for ln in Path(args.table).read_text().splitlines() if ln.strip()]
        print(table(rows))
        return
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset, train_size=args.train_size, seed=0)
    cfg = TrainConfig(steps=args.steps, channels=args.channels, padding=args.padding)
    out = Path(args.out)
    done = set()
    if out.exists():
        for ln in out.read_text().splitlines():
            r = json.loads(ln)
            done.add((r["dataset"], r["padding"], r["kind"], r.get("objective"), r.get("lever"), r["seed"]))
    levers = [float(v) for v in args.levers.split(",")]
    base = {"learn": args.learn, "dataset": args.dataset, "padding": args.padding, "steps": args.steps,
            "channels": args.channels, "pool": args.pool, "train_size": len(ds.y_train)}
    # the learned trials with the held-out objective first, then the grid, then the training-loss objective
    jobs = [("learn", "val", None, s) for s in range(args.seeds)]
    jobs += [] if args.no_grid else [("grid", None, lv, s) for s in range(args.seeds) for lv in levers]
    jobs += [("learn", "train", None, s) for s in range(args.seeds)]
    objectives = set(args.objectives.split(","))
    jobs = [(kind, obj, lv, seed) for kind, obj, lv, seed in jobs
            if (kind != "learn" or obj in objectives) and (args.dataset, args.padding, kind, obj, lv, seed) not in done]
    if jobs:  # one short untimed pass of each kind first: the first trial of a process pays its warm-up
        warm = dataclasses.replace(cfg, steps=20)
        run_learned_trial(ds, args.pool, 0, warm, parse_learn(args.learn) or LearnConfig())
        if not args.no_grid:
            run_trial(ds, args.pool, levers[-1], 0, warm)
    for kind, obj, lv, seed in jobs:
        if kind == "grid":
            m = run_trial(ds, "none" if lv == 0 else args.pool, lv, seed, cfg)
        else:
            opts = parse_learn(args.learn) or LearnConfig()
            m = run_learned_trial(ds, args.pool, seed, cfg, dataclasses.replace(opts, objective=obj))
        row = {**base, "kind": kind, "objective": obj, "lever": lv, "seed": seed,
               **{k: v for k, v in m.items() if k in ("test_acc", "train_acc", "wall_s", "learned_lever",
                                                       "lever_trajectory", "lever_weights")}}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(kind, obj, lv, seed, f"acc {m['test_acc']:.3f}", f"λ {m.get('learned_lever', lv)}",
              f"{m['wall_s']:.0f}s", flush=True, file=sys.stderr)
    rows = [json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()

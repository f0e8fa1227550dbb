"""Where a learned-λ trial's time goes: one training step of each phase against one fixed-λ step.

Times, with ``torch.utils.benchmark`` (interleaved rounds, one thread by default), one optimizer
step on a batch of the dataset's shape for:

- the grid's ``LeverNet`` at every λ of the candidates (what one fixed-λ trial pays per step);
- the learned network before the commit (every head trained) and α's held-out forward pass (every
  ``arch_every`` steps);
- the learned network after the commit with the kept heads given by ``--kept``, on the
  full-resolution conv stack and regridded (``regrid=True``: the grid's pools between the blocks).

It then prints what a trial with ``commit`` = ``--commit`` costs per step on average, relative to the
fixed-λ step at ``--lever``, and the floor under that ratio however cheap the steps after the commit
get (they cost at least the fixed-λ network's step): ``commit × (pre-commit step + held-out pass /
arch_every) + (1 − commit) × fixed step``, over the fixed step. Evaluation and data loading are left
out (the same for both kinds of trial, so trial-level ratios sit a little closer to 1).

    python benchmarks/learned_lever_steps.py --dataset digits-where --padding circular --channels 16 \
        --lever 0.75 --kept 2,3
    python benchmarks/learned_lever_steps.py --dataset mnist1d --channels 32 --lever 1 --kept 4
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from _timing import interleaved, machine, table
from poolkit.lab.data import load_dataset
from poolkit.lab.learn import LearnConfig, LearnedLeverNet
from poolkit.lab.models import LeverNet


def _step(model: torch.nn.Module, params: list[torch.nn.Parameter], x: torch.Tensor, y: torch.Tensor,
          heads: list[int] | None = None):
    opt = torch.optim.Adam(params, lr=1e-3)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        if isinstance(model, LearnedLeverNet):
            loss = sum(F.cross_entropy(h, y) for h in model.head_logits(x, heads))
        else:
            loss = F.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[union-attr]
        opt.step()

    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--padding", default="zeros")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--pool", default="max")
    ap.add_argument("--lever", type=float, default=1.0, help="the fixed-λ trial to compare with")
    ap.add_argument("--kept", default="4", help="indices of the heads kept after the commit, comma-separated")
    ap.add_argument("--commit", type=float, default=LearnConfig().commit)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = load_dataset(args.dataset, seed=0)
    x, y = ds.X_train[: args.batch], ds.y_train[: args.batch]
    learn = LearnConfig()
    kept = [int(k) for k in args.kept.split(",")]
    if args.lever not in learn.levers:
        raise SystemExit(f"--lever must be one of the candidates {learn.levers}, got {args.lever}")
    fns, names = [], []
    for lever in learn.levers:
        net = LeverNet(ds.channels, ds.num_classes, ds.spatial, lever, args.pool, args.padding, args.channels,
                       args.blocks)
        fns.append(_step(net, list(net.parameters()), x, y))
        names.append(f"fixed λ = {lever:g}")

    def learned() -> LearnedLeverNet:
        torch.manual_seed(0)
        return LearnedLeverNet(ds.channels, ds.num_classes, ds.spatial, args.pool, learn.levers, args.padding,
                               args.channels, args.blocks)

    pre = learned()
    fns.append(_step(pre, pre.weight_parameters(), x, y))
    names.append("learned, before the commit (every head)")

    def held_out() -> None:
        with torch.no_grad():
            pre.head_logits(x)

    fns.append(held_out)
    names.append("learned, α's held-out forward pass")
    for regrid in (False, True):
        post = learned()
        with torch.no_grad():
            post.alpha.fill_(-30.0)
            post.alpha[kept] = 0.0
        post.commit(learn.prune, regrid=regrid)
        fns.append(_step(post, post.weight_parameters(), x, y))
        names.append(f"learned, after the commit, heads {kept}" + (", regridded" if regrid else ""))
    ms = interleaved(fns, rounds=args.rounds, min_run_time=0.2)
    t = {n: m.median * 1e3 for n, m in zip(names, ms)}
    fixed = t[f"fixed λ = {args.lever:g}"]
    print(f"{args.dataset} ({args.padding}), {args.channels} channels, batch {args.batch}; {machine()}")
    print(table(["step", "ms", f"/ fixed λ = {args.lever:g}"], [(n, v, v / fixed) for n, v in t.items()]))
    pre_ms = t[names[len(learn.levers)]] + t[names[len(learn.levers) + 1]] / learn.arch_every
    for regrid, name in ((False, names[-2]), (True, names[-1])):
        mean = args.commit * pre_ms + (1 - args.commit) * t[name]
        print(f"commit at {args.commit:g}{', regridded' if regrid else ''}: a learned step costs {mean:.1f} ms on "
              f"average, {mean / fixed:.2f}× the fixed-λ step")
    # however cheap the steps after the commit get, they cost at least the fixed-λ network's own step
    floor = args.commit * pre_ms + (1 - args.commit) * fixed
    mean_fixed = sum(t[n] for n in names[: len(learn.levers)]) / len(learn.levers)
    print(f"floor (steps before the commit as measured, every step after it at the fixed λ = {args.lever:g} "
          f"step's cost): {floor / fixed:.2f}× the fixed λ = {args.lever:g} step, {floor / mean_fixed:.2f}× the mean "
          f"fixed-λ step ({mean_fixed:.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())

"""Does surgery keep what a trained model knows? Accuracy on digits-shift before and after.

Trains a narrow torchvision-layout ResNet-18 (tests/zoo.py) on ``digits-shift`` with the
lab's loop, then measures test accuracy and circular-shift consistency as trained,
after ``antialias``, after ``make_shift_invariant`` (APS with tied and untied phases,
LPS), each without fine-tuning and after a short fine-tune. The model as trained is
fine-tuned for the same steps too, so the gain of fine-tuning is not read as the
surgery's. A third variant only re-estimates the batch-norm statistics on the training
images (no labels, no gradient step). Prints a Markdown table.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/surgery_accuracy.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from poolkit.convert import antialias, make_shift_invariant
from poolkit.lab import TrainConfig, load_dataset
from poolkit.lab.train import train_model
from poolkit.measure import consistency
from zoo import resnet18

KINDS = ("as trained", "antialias", "aps tied", "aps untied", "lps tied", "lps untied")


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 250]).argmax(1) for i in range(0, len(x), 250)])
    return float((pred == y).float().mean())


@torch.no_grad()
def invariance_error(model: torch.nn.Module, x: torch.Tensor, shifts: int = 10) -> float:
    """Largest change of the logits (float64) over ``shifts`` random circular shifts of 8 test images."""
    net = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(0)
    x = x[:8].double()
    ref = net(x)
    worst = 0.0
    for _ in range(shifts):
        s = tuple(int(v) for v in torch.randint(1, x.shape[-1], (2,), generator=gen))
        worst = max(worst, float((net(x.roll(s, (2, 3))) - ref).abs().max()))
    return worst


@torch.no_grad()
def recalibrate(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Batch-norm statistics re-estimated on the training images (no labels, no gradient step)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for i in range(0, len(x), 250):
        model(x[i : i + 250])
    for m in norms:
        m.momentum = 0.1
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1500, help="training steps of the original model")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--surgeries", default=",".join(KINDS), help=f"comma-separated, from {', '.join(KINDS)}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("digits-shift", seed=args.seed)
    torch.manual_seed(args.seed)
    model = resnet18(width=args.width, num_classes=ds.num_classes, in_channels=ds.channels)
    t0 = time.perf_counter()
    train_model(model, ds, TrainConfig(steps=args.steps, lr=3e-3), seed=args.seed)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    def surgery(kind: str) -> torch.nn.Module:
        net = copy.deepcopy(model)
        if kind == "antialias":
            antialias(net, filt=3)
        elif kind == "aps tied":
            make_shift_invariant(net, "aps")
        elif kind == "aps untied":
            make_shift_invariant(net, "aps", tie_phases=False)
        elif kind.startswith("lps"):
            torch.manual_seed(args.seed)
            make_shift_invariant(net, "lps", tie_phases=kind == "lps tied")
        return net.eval()

    rows = []
    tune = TrainConfig(steps=args.finetune_steps, lr=1e-3)
    kinds = [k.strip() for k in args.surgeries.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"--surgeries: unknown {', '.join(unknown)}; accepted: {', '.join(KINDS)}")
    for kind in kinds:
        for after in ("none", "bn", "tune"):
            if kind == "as trained" and after == "bn":
                continue
            net = surgery(kind)
            if after == "tune":
                train_model(net, ds, tune, seed=args.seed + 1)
            elif after == "bn":
                recalibrate(net, ds.X_train)
            cons = consistency(net, ds.X_test, max_shift=8, mode="circular", seed=0)
            label = {"none": "0", "bn": "0, BN re-estimated", "tune": str(args.finetune_steps)}[after]
            rows.append((kind, label, accuracy(net, ds.X_test, ds.y_test), cons.consistency,
                         invariance_error(net, ds.X_test)))
            print(f"{rows[-1]}", file=sys.stderr)
    print(f"digits-shift (canvas 24, {len(ds.y_train)} train / {len(ds.y_test)} test), ResNet-18 layout at width "
          f"{args.width}, {args.steps} Adam steps (lr 3e-3); fine-tune {args.finetune_steps} steps (lr 1e-3)\n")
    print("| surgery | fine-tune steps | test accuracy | consistency (circular, ≤ 8 px) | max logit change, 10 "
          "circular shifts (float64) |")
    print("|---|---:|---:|---:|---:|")
    for kind, steps, acc, cons_, err in rows:
        print(f"| {kind} | {steps} | {acc:.3f} | {cons_:.3f} | {err:.1e} |")


if __name__ == "__main__":
    main()

"""MNIST-1D with summary-statistic pools: test accuracy of a small Conv1d net per pooling statistic.

Data: ``mnist1d.data.make_dataset(get_dataset_args())`` (generated offline, seed fixed by mnist1d),
the first ``--train`` training samples, the full 1000-sample test set. Net: three Conv1d(k, 32)+ReLU
blocks, the pool under test (kernel 2) after the first two, global average and a linear head. Adam,
fixed number of epochs. ``adaptive_mle`` trains with its soft mix for the first half, is calibrated
(:func:`poolkit.nn.stats.calibrate`) on the training data, and trains on with the hard choice.

Usage::

    .venv/bin/python benchmarks/mnist1d_stats.py --seeds 3

Prints a Markdown table: test accuracy mean ± std over seeds per pool, and the wall time per run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import poolkit
from poolkit.nn.stats import calibrate

POOLS = ("max", "avg", "mle:dist=gamma", "adaptive_mle:score_kernel_size=8", "multistat:stats=max+range")


def load(n_train: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    x = torch.tensor(data["x"][:n_train], dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data["y"][:n_train], dtype=torch.long)
    xt = torch.tensor(data["x_test"], dtype=torch.float32).unsqueeze(1)
    yt = torch.tensor(data["y_test"], dtype=torch.long)
    mu, sd = x.mean(), x.std()
    return (x - mu) / sd, y, (xt - mu) / sd, yt


class Net(nn.Module):
    def __init__(self, pool: str, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, k in enumerate((5, 3, 3)):
            layers += [nn.Conv1d(cin, width, k, padding=k // 2), nn.ReLU()]
            cin = width
            if i < 2:
                p = poolkit.create_pool(pool, dim=1, kernel_size=2, channels=width)
                layers.append(p)
                with torch.no_grad():  # multistat and several-param mle widen the channels
                    cin = p(torch.rand(1, width, 8)).shape[1]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(-1))


def run(pool: str, seed: int, data, epochs: int, batch: int, lr: float) -> float:
    x, y, xt, yt = data
    torch.manual_seed(seed)
    net = Net(pool)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if pool.startswith("adaptive_mle") and epoch == epochs // 2:
            calibrate(net, [x[i:i + 250] for i in range(0, len(x), 250)])
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return (net(xt).argmax(-1) == yt).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pools", nargs="+", default=list(POOLS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.train)
    print(f"MNIST-1D: {len(data[0])} train, {len(data[2])} test; {args.epochs} epochs, batch {args.batch}, "
          f"Adam lr {args.lr}, seeds 0..{args.seeds - 1}, torch {torch.__version__}, {args.threads} thread(s)\n")
    print("| pool | test accuracy (mean ± std) | seconds per run |")
    print("| --- | --- | --- |")
    for pool in args.pools:
        accs, secs = [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            accs.append(run(pool, seed, data, args.epochs, args.batch, args.lr))
            secs.append(time.perf_counter() - t0)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| `{pool}` | {100 * statistics.mean(accs):.1f} ± {100 * sd:.1f} | {statistics.mean(secs):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()

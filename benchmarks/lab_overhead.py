"""Per-trial overhead of the lab's generic path (the user's model by surgery) against today's LeverNet path.

Both sides train the same network on the same data with the same budget: a two-block Conv1d
net (32 channels, kernel 5, zero padding), the lever's pool, a linear head, on mnist1d (1000
training samples). The generic side gets it as a user's factory, ``levernet_like(in_channels,
num_classes)``, that ends in ``nn.AdaptiveMaxPool1d(1)`` and ``nn.Linear``; poolkit applies
the λ rule to it. At λ = 1 (statistic max) the two sides build the same layers with the same
weights, so their trials must give identical measurements: the script checks that before
printing a ratio. At λ = 0 the generic side re-initialises its resized head, so its
measurements differ; that ratio is printed as well, marked.

Each timed unit is a whole study of ``--seeds`` trials at one λ (``run_study`` on a fresh
SQLite file: data loading, the model check, surgery, training, measurement, compute and
storage), timed with ``torch.utils.benchmark.Timer`` and divided by the trials; the two
sides alternate (ABBA) over ``--repeats`` rounds. The table gives the median and the
minimum per side; on a busy machine the minimum is the steadier figure.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/lab_overhead.py --steps 300 --repeats 3
    python benchmarks/lab_overhead.py --device cuda --steps 1000     # on a GPU machine
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine, table
from poolkit.lab.storage import trials_frame
from poolkit.lab.study import StudyConfig, run_study
from poolkit.lab.train import TrainConfig

SKIP = {"wall_s", "forward_ms_per_sample", "trial", "datetime_start", "device"}


def levernet_like(in_channels: int, num_classes: int) -> nn.Module:
    """LeverNet at λ = 1 with 32 channels and 2 blocks, written as a user would."""
    return nn.Sequential(
        nn.Conv1d(in_channels, 32, 5, padding=2), nn.ReLU(),
        nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def one_study(lever: float, generic: bool, steps: int, device: str | None, seeds: int = 1) -> dict:
    """Run a fresh study; return its seed-0 trial's attributes."""
    cfg = StudyConfig("mnist1d", pools=["max"], levers=[lever], seeds=seeds,
                      train=TrainConfig(steps=steps, device=device),
                      model=levernet_like if generic else None)
    with tempfile.TemporaryDirectory() as tmp:
        url, name = run_study(cfg, out=tmp)
        frame = trials_frame(url, name)
        row = frame[frame["seed"] == 0].iloc[0].to_dict()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2, help="trials per timed study")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    rows = []
    for lever in (1.0, 0.0):
        rec = {False: one_study(lever, False, args.steps, args.device),
               True: one_study(lever, True, args.steps, args.device)}
        same = all(
            (isinstance(rec[False][k], float) and math.isnan(rec[False][k]) and math.isnan(rec[True][k]))
            or rec[False][k] == rec[True][k]
            for k in rec[False] if k not in SKIP and k in rec[True]
        )
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.repeats):
            for generic in ((False, True) if r % 2 == 0 else (True, False)):
                run = lambda g=generic: one_study(lever, g, args.steps, args.device, args.seeds)
                times[generic].append(Timer("f()", globals={"f": run}).timeit(1).mean / args.seeds)
        lev, gen = statistics.median(times[False]), statistics.median(times[True])
        lev_min, gen_min = min(times[False]), min(times[True])
        note = "identical" if same else "differ (head re-initialised)"
        rows.append((f"{lever:g}", args.steps, f"{lev:.2f} / {lev_min:.2f}", f"{gen:.2f} / {gen_min:.2f}",
                     f"{gen / lev:.3f} / {gen_min / lev_min:.3f}", note,
                     f"{rec[False]['flops_per_sample']:.0f} / {rec[True]['flops_per_sample']:.0f}",
                     f"{1000 * rec[False]['forward_ms_per_sample']:.1f} / "
                     f"{1000 * rec[True]['forward_ms_per_sample']:.1f}"))
    print(f"machine: {machine()}; device {args.device or 'default'}")
    print(table(["λ", "steps", "LeverNet s/trial (median / min)", "generic s/trial (median / min)",
                 "generic / LeverNet (median / min)", "measurements",
                 "FLOPs/sample (L / g)", "µs/sample fwd (L / g)"], rows))


if __name__ == "__main__":
    main()

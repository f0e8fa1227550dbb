"""One trial: build the lever's model, train it, measure it.

A trial is (dataset, statistic, λ, seed, training config), and optionally the
user's model factory (:mod:`poolkit.lab.custom`) and training function. Training
is Adam with a fixed budget of steps over seeded mini-batches, so a trial is
deterministic given its seed on the CPU (on one machine, with the same thread
count); on CUDA, cuDNN's kernel choice may differ between runs. Data stay on the
CPU and go to the device batch by batch. The measured values come back as one
flat dict of numbers, ready to store as trial attributes.

>>> from poolkit.lab.data import load_dataset
>>> ds = load_dataset("digits-shift", train_size=40, test_size=20)
>>> m = run_trial(ds, "max", 0.5, seed=0, config=TrainConfig(steps=2, channels=4))
>>> sorted(k for k in m if k.endswith("acc"))
['shifted_acc', 'test_acc', 'train_acc']
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .compute import trial_compute
from .custom import BuiltModel, ModelSpec, build_model_for
from .data import Dataset
from .lever import check_lever
from .models import NORMS, PADDING_MODES, LeverNet

__all__ = [
    "TrainConfig", "TrainFn", "build_model", "build_trial_model", "train_model", "evaluate", "run_trial",
    "resolve_device", "show_progress", "lr_scheduler", "LR_SCHEDULES",
]

#: The learning-rate schedules :class:`TrainConfig` accepts.
LR_SCHEDULES = ("constant", "cosine")

#: ``train_fn(model, dataset, config, seed)``: trains ``model`` (already on ``config.device``) in place.
TrainFn = Callable[[torch.nn.Module, Dataset, "TrainConfig", int], Any]


def show_progress() -> bool:
    """Progress bars only when stderr is a terminal."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@dataclass
class TrainConfig:
    """Everything about a trial except the dataset, statistic, λ and seed.

    Args:
        steps: Adam steps (the fixed training budget).
        batch_size: mini-batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_schedule: ``"constant"`` (the learning rate stays ``lr``) or ``"cosine"`` (it follows half a
            cosine from ``lr`` at the first step to 0 after the last).
        channels: conv width of the reference CNN.
        blocks: conv blocks.
        kernel_size: conv kernel; None = 5 in 1-D, 3 in 2-D and 3-D.
        padding: conv padding mode, ``"zeros"`` or ``"circular"``.
        norm: ``"none"`` or ``"batch"``: a BatchNorm after each conv of the reference CNN.
        class_weight: ``"auto"`` (balanced for binary tasks, none otherwise), ``"balanced"`` or ``"none"``.
        max_shift: largest shift for shifted accuracy and consistency; None = 1/8 of the smallest axis.
        threads: torch intra-op threads while the trial runs.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; None = CUDA when available, else the CPU
            (see :func:`resolve_device`). Not part of a study's identity: a study may resume elsewhere.
        amp: mixed precision (autocast: float16 with gradient scaling on CUDA, bfloat16 on the CPU)
            for training and prediction; the instruments run in float32.
    """

    steps: int = 2000
    batch_size: int = 100
    lr: float = 1e-2
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    channels: int = 32
    blocks: int = 2
    kernel_size: int | None = None
    padding: str = "zeros"
    norm: str = "none"
    class_weight: str = "auto"
    max_shift: int | None = None
    threads: int = 1
    device: str | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "channels", "blocks", "threads"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.weight_decay, bool) or not (isinstance(self.weight_decay, (int, float))
                                                        and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        k = self.kernel_size
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"kernel_size must be an odd positive int or None, got {k!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {self.padding!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.class_weight not in ("auto", "balanced", "none"):
            raise ValueError(f"class_weight must be 'auto', 'balanced' or 'none', got {self.class_weight!r}")
        if self.max_shift is not None and (not isinstance(self.max_shift, int) or self.max_shift < 1):
            raise ValueError(f"max_shift must be a positive int or None, got {self.max_shift!r}")
        if self.device is not None:
            self.device = check_device(self.device)
        if not isinstance(self.amp, bool):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
        return cls(**d)


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: object) -> str:
    """``device`` as a string, or ValueError unless it is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    text = str(device) if isinstance(device, torch.device) else device
    if not isinstance(text, str) or not _DEVICE.match(text.strip().lower()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return text.strip().lower()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a trial runs on: ``None`` -> ``cuda`` when available, else ``cpu``; ``"cuda"`` -> the current GPU.

    Raises:
        ValueError: a malformed name, CUDA asked for where there is none, or ``cuda:N`` beyond the GPUs present.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(check_device(device))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here "
                             f"(torch {torch.__version__}); use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= n:
            raise ValueError(f"device {str(device)!r} asked for, but there {'is' if n == 1 else 'are'} only {n} "
                             f"CUDA GPU(s): cuda:0 to cuda:{n - 1}")
    return dev


def build_model(ds: Dataset, pool: str, lever: float, config: TrainConfig) -> LeverNet:
    """The reference CNN for ``ds`` at ``lever`` with statistic ``pool``."""
    return LeverNet(
        ds.channels,
        ds.num_classes,
        ds.spatial,
        lever,
        pool=pool,
        padding_mode=config.padding,
        channels=config.channels,
        blocks=config.blocks,
        kernel_size=config.kernel_size,
        norm=config.norm,
    )


def build_trial_model(
    ds: Dataset, pool: str, lever: float, config: TrainConfig, model: ModelSpec | None = None
) -> BuiltModel:
    """The one place a grid point's model is built (on the CPU; seed torch first).

    ``model=None`` builds the reference :class:`LeverNet`; a factory spec or callable builds the
    user's model for this point (:func:`poolkit.lab.custom.build_model_for`).
    """
    if model is None:
        net = build_model(ds, pool, lever, config)
        return BuiltModel(net, net.head[1], net.head_size, feature_fn=net.features)  # type: ignore[arg-type]
    return build_model_for(model, ds.channels, ds.num_classes, ds.spatial, pool, lever, ds.X_train[:2])


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _autocast(dev: torch.device, amp: bool) -> Any:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16)


def optimizer_step(loss: Tensor, opt: torch.optim.Optimizer, scaler: Any = None, sched: Any = None) -> None:
    """One step on ``loss``: gradients cleared, then backward and step, through ``scaler`` when given (amp),
    then the learning-rate schedule ``sched`` (see :func:`lr_scheduler`) when given."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    if sched is not None:
        sched.step()


def _class_weights(ds: Dataset, config: TrainConfig) -> Tensor | None:
    mode = config.class_weight
    if mode == "none" or (mode == "auto" and ds.num_classes != 2):
        return None
    counts = torch.bincount(ds.y_train, minlength=ds.num_classes).clamp_min(1).float()
    return counts.sum() / (ds.num_classes * counts)


def lr_scheduler(
    opt: torch.optim.Optimizer, config: TrainConfig, warmup: float = 0.0
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The schedule ``config.lr_schedule`` asks for, stepped once per training step (None: constant).

    ``warmup`` (a fraction of ``config.steps``, 0 = none) ramps the learning rate linearly up to the
    schedule's over the first steps (the learned lever's shared conv stack needs it, :mod:`.learn`).
    """
    steps = config.steps
    ramp = max(1, round(warmup * steps)) if warmup > 0 else 0
    if config.lr_schedule == "constant" and not ramp:
        return None

    def factor(i: int) -> float:
        f = min(1.0, (i + 1) / ramp) if ramp else 1.0
        if config.lr_schedule == "cosine":
            f *= 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps))
        return f

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_model(model: torch.nn.Module, ds: Dataset, config: TrainConfig, seed: int, progress: bool = False) -> None:
    """Adam for ``config.steps`` steps over seeded, reshuffled-every-epoch mini-batches.

    Batches go to the model's device one at a time; with ``config.amp`` the forward runs under autocast
    (float16 with a gradient scaler on CUDA, bfloat16 on the CPU).
    """
    dev = _device_of(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = lr_scheduler(opt, config)
    gen = torch.Generator().manual_seed(seed)
    weight = _class_weights(ds, config)
    if weight is not None:
        weight = weight.to(dev)
    scaler = torch.amp.GradScaler(dev.type) if config.amp and dev.type == "cuda" else None
    n = len(ds.y_train)
    bs = min(config.batch_size, n)
    order = torch.randperm(n, generator=gen)
    pos = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="steps", leave=False, unit="step")
    model.train()
    for _ in range(config.steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        xb = ds.X_train[idx].to(dev, non_blocking=True)
        yb = ds.y_train[idx].to(dev, non_blocking=True)
        with _autocast(dev, config.amp):
            loss = F.cross_entropy(model(xb), yb, weight=weight)
        optimizer_step(loss, opt, scaler, sched)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    model.eval()


@torch.no_grad()
def _predict(model: torch.nn.Module, x: Tensor, batch: int = 500, amp: bool = False) -> Tensor:
    """Logits of ``x`` (on the CPU, float32), computed batch by batch on the model's device."""
    if not len(x):
        return x.new_zeros(0)
    dev = _device_of(model)
    out = []
    for i in range(0, len(x), batch):
        with _autocast(dev, amp):
            out.append(model(x[i : i + batch].to(dev, non_blocking=True)).float())
    return torch.cat(out).cpu()


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def _shift_list(spatial: tuple[int, ...], max_shift: int, seed: int, count: int = 4) -> list[tuple[int, ...]]:
    # Random non-zero shifts of up to max_shift per axis, fixed by the seed.
    rng = np.random.default_rng(seed)
    out: list[tuple[int, ...]] = []
    while len(out) < count:
        s = tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, len(spatial)))
        if any(s):
            out.append(s)
    return out


def _binary(logits: Tensor, y: Tensor) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    pred = logits.argmax(1).numpy()
    yt = y.numpy()
    score = torch.softmax(logits, 1)[:, 1].numpy()
    neg = yt == 0
    return {
        "recall": float(recall_score(yt, pred, zero_division=0)),
        "precision": float(precision_score(yt, pred, zero_division=0)),
        "f1": float(f1_score(yt, pred, zero_division=0)),
        "fpr": float((pred[neg] == 1).mean()) if neg.any() else math.nan,
        "pr_auc": float(average_precision_score(yt, score)) if (yt == 1).any() else math.nan,
    }


def _instruments(
    model: torch.nn.Module, ds: Dataset, max_shift: int, seed: int, features: Callable[[Tensor], Tensor] | None
) -> dict[str, float]:
    """Consistency (circular, crop) and the head input's invariance, from :mod:`poolkit.measure`."""
    out = {k: math.nan for k in ("consistency_circular", "consistency_crop", "head_invariance")}
    try:
        from poolkit.measure import consistency, invariance
    except ImportError:  # the instruments are an optional part of the install
        return out
    x = ds.X_test[:512].to(_device_of(model))
    with torch.no_grad():
        out["consistency_circular"] = float(
            consistency(model, x, max_shift=max_shift, mode="circular", seed=seed).consistency
        )
        pad = [max_shift, max_shift] * ds.dim
        xp = F.pad(x, pad)
        out["consistency_crop"] = float(
            consistency(model, xp, max_shift=max_shift, mode="crop", crop_size=ds.spatial, seed=seed).consistency
        )
        if features is not None:
            shifts = _shift_list(ds.spatial, max_shift, seed + 1)
            out["head_invariance"] = float(invariance(features, x[:256], shifts, mode="circular"))
    return out


def evaluate(
    model: torch.nn.Module | BuiltModel, ds: Dataset, config: TrainConfig, seed: int = 0
) -> dict[str, float]:
    """Accuracy (train, test, shifted test), gap, consistency, head invariance; binary metrics when K = 2.

    ``model`` is a :class:`LeverNet`, any module with a ``features`` method (the head's input), or a
    :class:`~poolkit.lab.custom.BuiltModel`; head invariance is NaN when the head's input is unknown.
    """
    if isinstance(model, BuiltModel):
        features: Callable[[Tensor], Tensor] | None = model.features if model.head is not None else None
        model = model.module
    else:
        features = getattr(model, "features", None)
    max_shift = config.max_shift or max(1, min(ds.spatial) // 8)
    train_logits = _predict(model, ds.X_train, amp=config.amp)
    test_logits = _predict(model, ds.X_test, amp=config.amp)
    m: dict[str, float] = {
        "train_acc": _accuracy(train_logits, ds.y_train),
        "test_acc": _accuracy(test_logits, ds.y_test),
    }
    m["gap"] = m["train_acc"] - m["test_acc"]
    dims = tuple(range(2, 2 + ds.dim))
    shifted = [
        _accuracy(_predict(model, torch.roll(ds.X_test, s, dims), amp=config.amp), ds.y_test)
        for s in _shift_list(ds.spatial, max_shift, seed)
    ]
    m["shifted_acc"] = float(np.mean(shifted))
    m["max_shift"] = float(max_shift)
    m.update(_instruments(model, ds, max_shift, seed, features))
    if ds.num_classes == 2:
        m.update(_binary(test_logits, ds.y_test))
    return m


def run_trial(
    ds: Dataset,
    pool: str,
    lever: float,
    seed: int,
    config: TrainConfig | None = None,
    progress: bool = False,
    *,
    model: ModelSpec | None = None,
    train_fn: TrainFn | None = None,
    holdout: tuple[Tensor, Tensor] | None = None,
) -> dict[str, float]:
    """Train and measure one (statistic, λ, seed) on ``ds``.

    Args:
        ds: a validated dataset.
        pool: a registry spec; ignored (recorded as ``"none"``) at λ = 0.
        lever: λ in [0, 1].
        seed: seeds the weights and the batch order.
        config: training configuration (default :class:`TrainConfig`); ``config.device`` picks the device.
        progress: show a progress bar over steps.
        model: None (the reference :class:`LeverNet`) or the user's factory, ``"file.py:FUNC"``,
            ``"module:FUNC"`` or a callable (see :mod:`poolkit.lab.custom` for the λ rule).
        train_fn: ``train_fn(model, ds, config, seed)`` trains the model in place instead of the built-in
            Adam loop; ``model`` is on ``config.device`` (resolved) in train mode, ``ds`` on the CPU.
        holdout: ``(X, y)`` held out of the training set: adds ``val_acc`` (and ``val_pr_auc`` for two
            classes) measured on it (:func:`poolkit.lab.search.validation_metrics`).

    Returns:
        Flat dict: ``train_acc``, ``test_acc``, ``gap``, ``shifted_acc``, ``consistency_circular``,
        ``consistency_crop``, ``head_invariance`` (mean normalized distance of the head's input under
        circular shifts; 0 = invariant), ``head_params``, ``params``, ``head_positions``, ``wall_s``,
        the compute (:func:`poolkit.lab.compute.trial_compute`): ``flops_per_sample``,
        ``pool_flops_per_sample``, ``pool_flops_share``, ``forward_ms_per_sample``; and for binary tasks
        ``recall``, ``precision``, ``f1``, ``fpr``, ``pr_auc``.
    """
    config = config or TrainConfig()
    lever = check_lever(lever)
    dev = resolve_device(config.device)
    config = replace(config, device=str(dev))
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        built = build_trial_model(ds, pool, lever, config, model)
        net = built.module.to(dev)
        if train_fn is None:
            train_model(net, ds, config, seed, progress)
        else:
            net.train()
            train_fn(net, ds, config, seed)
            net.to(dev).eval()
        m = evaluate(built, ds, config, seed)
        if holdout is not None:
            from .search import validation_metrics

            m.update(validation_metrics(net, *holdout, amp=config.amp))
        m.update(trial_compute(net, ds.X_test[:256].to(dev), amp=config.amp))
    finally:
        torch.set_num_threads(threads)
    m["head_params"] = float(built.head_parameters())
    m["params"] = float(built.num_parameters())
    m["head_positions"] = float(math.prod(built.head_size)) if built.head_size is not None else math.nan
    m["wall_s"] = time.perf_counter() - t0
    return m

"""A learned lever: the network learns how much it pools, in one training run.

Mechanism (a relaxed choice among heads, as DARTS relaxes a choice among
operations): the lab's conv stack runs at full resolution, and after it sit
``K`` heads, one per candidate λ (default 0, 0.25, 0.5, 0.75, 1). Head ``k``
pools the maps to about ``L ** (1 - λ_k)`` positions per axis with the study's
statistic (one non-overlapping pool, or a global one at λ = 1) and classifies
with its own linear layer, trained on its own loss (the weights minimize the
heads' losses weighted by the current, detached mixture weights; ``head_loss="mean"``
weighs them equally). The network predicts with the mixture
``Σ_k p_k · softmax(head_k)``, ``p = softmax(α)``; the ``K`` logits ``α`` are the
lever, and the learned λ is the mixture's expected λ, ``Σ_k p_k λ_k``, in the
grid's units. Because each head is a classifier in its own right, a head cannot
buy weight by scaling its logits: ``p`` moves to the heads whose predictions
score best on α's objective.

Objective (``objective=``):

- ``"val"`` (default): the weights train on the training loss of a part of the
  training set; α is updated on the loss of the held-out rest (``holdout``, a
  split of the TRAINING set, never the test set), first-order, as DARTS updates
  its architecture weights. Each α step costs one forward pass of a held-out
  batch (no backward through the conv stack).
- ``"train"``: α is learned with the weights on the training loss. Pooling pays
  off on held-out data, not on the training loss, so expect this one to choose
  too little pooling; it is here to be measured against ``"val"``.

Schedule (``warmup=``, ``commit=``, ``prune=``): the weights' learning rate ramps up linearly over
the first 10 % of the steps, since at full rate the heads with many positions kill most ReLUs of the
shared conv stack in the first steps; at 30 % of the steps the lever is fixed
(:meth:`LearnedLeverNet.commit`): α freezes, the heads under 5 % weight are dropped, and the held-out
split rejoins the weights' training batches, so the rest of the run trains the chosen network alone,
on the whole training set, at about the cost of a fixed-λ network with a full-resolution conv stack.
Before the commit every head trains every step (``sample_heads=0``); ``sample_heads=2`` trains two
heads drawn at random per step, cheaper, but measured to misplace the lever on digits-where.
With ``regrid=True`` the commit also moves the kept heads onto the grid's own architecture at
their λ (the conv blocks with :class:`~poolkit.lab.models.LeverNet`'s pools between them), so a λ that
pools early runs its later blocks at the lower resolution for the rest of the run, as a grid trial
does: measured cheaper on digits-where (about a quarter off a trial) but 4.5 points less accurate than
the default there (the grid's architecture at λ = 0.75 scores lower than one pool after the last
block), so it is off by default.

An optional compute term (``compute=``, off by default) adds
``compute · Σ_k p_k · positions_k / positions_0`` to α's loss, the analogue of
DiffStride's complexity regularizer: it pushes towards fewer head positions.

Limits: every candidate pools once, after the last conv block, whereas a grid
model at the same λ spreads its pools over the blocks, so the conv stack here
always runs at full resolution (the cost of the λ = 0 and λ = 1 grid models) and
the learned λ is read on a slightly different architecture than the grid's, and a trial costs
more than a grid model at a λ that pools early (λ = 0.5 to 0.75 pool after the first block): on
digits-where the steps before the commit alone cost more than 1.5 trials at λ = 0.75
(``benchmarks/learned_lever_steps.py``), regridded or not;
the lever is read at the commit step and cannot follow what training does after it;
the trained network is the mixture of heads (a small ensemble), whose test
accuracy is what a trial reports; the learned λ is an expectation over the
candidates, so it lies in [min λ_k, max λ_k] and cannot leave the candidates'
range.

>>> from poolkit.lab.data import load_dataset
>>> from poolkit.lab.train import TrainConfig
>>> ds = load_dataset("digits-shift", train_size=40, test_size=20)
>>> m = run_learned_trial(ds, "max", 0, TrainConfig(steps=3, channels=4), LearnConfig())
>>> 0.0 <= m["learned_lever"] <= 1.0, len(m["lever_trajectory"]) > 1
(True, True)
"""

from __future__ import annotations

import json
import math
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Dataset
from .lever import check_lever, pool_schedule
from .models import LeverNet, _first, _probe, build_pool

__all__ = ["LearnConfig", "LearnedLeverNet", "parse_learn", "run_learned_trial", "learn_key", "OBJECTIVES"]

OBJECTIVES = ("val", "train")
# options newer than the storage keys, with the default that leaves a key as it was
_LATER: dict[str, object] = {"sample_heads": 0, "regrid": False}


@dataclass(frozen=True)
class LearnConfig:
    """Options of the learned-λ mode (``levers="learn"`` or ``"learn:objective=train,heads=3"``).

    Args:
        objective: ``"val"`` (α on a held-out split of the training set, first-order) or ``"train"``.
        heads: number of candidate λ, evenly spaced over [0, 1] (5: 0, 0.25, 0.5, 0.75, 1).
        holdout: fraction of the training set held out for α when ``objective="val"``.
        arch_lr: Adam learning rate of α.
        compute: weight of the compute term on α's loss (0 = off).
        arch_every: steps between α updates (each costs one forward pass of a held-out batch).
        head_loss: ``"weighted"`` (default: the heads' losses weighted by the current mixture weights,
            detached, so the shared conv stack serves the heads α prefers) or ``"mean"`` (every head's
            loss counts the same; measured lower accuracy, BENCHMARKS.md).
        warmup: fraction of the steps over which the weights' learning rate ramps up linearly (0 = none).
            Without it the heads with many positions kill most ReLUs of the shared conv stack in the
            first steps at the lab's lr of 1e-2 (12 of 16 channels on digits-shift, BENCHMARKS.md).
        commit: fraction of the steps after which the lever is fixed (1 = α learns to the last step).
            At that step α freezes, the heads whose weight is under ``prune`` are dropped (no longer
            computed), and with ``objective="val"`` the held-out part rejoins the weights' training
            batches: the rest of the run trains the chosen network alone, on the whole training set.
        prune: mixture weight under which a head is dropped at the commit (0 = keep every head).
        sample_heads: before the commit, train only this many heads per step, drawn uniformly at random
            (seeded) among the kept ones, their losses scaled so that the weights' loss stays an unbiased
            estimate of the all-heads loss (0 = every head every step). α's held-out step still sees
            every head. Cuts the cost of the steps before the commit, whose max-pool backwards dominate.
        regrid: at the commit, move the kept heads onto the grid's own architecture at their λ (the
            conv blocks with LeverNet's pools between them, :meth:`LearnedLeverNet.commit`), so the rest
            of the run costs what a grid trial at that λ costs instead of a full-resolution conv stack.
    """

    objective: str = "val"
    heads: int = 5
    holdout: float = 0.2
    arch_lr: float = 0.05
    compute: float = 0.0
    arch_every: int = 2
    head_loss: str = "weighted"
    warmup: float = 0.1
    commit: float = 0.3
    prune: float = 0.05
    sample_heads: int = 0
    regrid: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 2:
            raise ValueError(f"heads (candidate λ values) must be an int >= 2, got {self.heads!r}")
        if not isinstance(self.holdout, (int, float)) or not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be a fraction in (0, 1), got {self.holdout!r}")
        if not isinstance(self.arch_lr, (int, float)) or not self.arch_lr > 0:
            raise ValueError(f"arch_lr must be a positive number, got {self.arch_lr!r}")
        if self.head_loss not in ("mean", "weighted"):
            raise ValueError(f"head_loss must be 'mean' or 'weighted', got {self.head_loss!r}")
        if isinstance(self.arch_every, bool) or not isinstance(self.arch_every, int) or self.arch_every < 1:
            raise ValueError(f"arch_every must be a positive int, got {self.arch_every!r}")
        if not isinstance(self.compute, (int, float)) or not self.compute >= 0:
            raise ValueError(f"compute must be a number >= 0, got {self.compute!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup!r}")
        if isinstance(self.commit, bool) or not isinstance(self.commit, (int, float)) or not 0 < self.commit <= 1:
            raise ValueError(f"commit must be a fraction of the steps in (0, 1] (1 = never), got {self.commit!r}")
        if isinstance(self.prune, bool) or not isinstance(self.prune, (int, float)) or not 0 <= self.prune < 1:
            raise ValueError(f"prune must be a mixture weight in [0, 1), got {self.prune!r}")
        if isinstance(self.sample_heads, bool) or not isinstance(self.sample_heads, int) or self.sample_heads < 0:
            raise ValueError(f"sample_heads must be an int >= 0 (0 = every head), got {self.sample_heads!r}")
        if not isinstance(self.regrid, bool):
            raise ValueError(f"regrid must be true or false, got {self.regrid!r}")

    @property
    def levers(self) -> tuple[float, ...]:
        """The candidate λ values."""
        return tuple(i / (self.heads - 1) for i in range(self.heads))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_learn(levers: object) -> LearnConfig | None:
    """``"learn"`` / ``"learn:objective=train,heads=3"`` -> a :class:`LearnConfig`; anything else -> None.

    Example:
        >>> parse_learn("learn:objective=train").objective
        'train'
        >>> parse_learn([0, 0.5]) is None
        True
    """
    if not isinstance(levers, str) or levers.strip().split(":")[0].strip().lower() != "learn":
        return None
    from poolkit.registry import parse_spec

    _, params = parse_spec(levers)
    names = {f.name for f in fields(LearnConfig)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"learned-lever option(s) {', '.join(unknown)} unknown; accepted: {', '.join(sorted(names))}")
    return LearnConfig(**params)


def learn_key(config: LearnConfig) -> float:
    """The stand-in λ that keys a learned trial in a study's storage (never a real λ).

    In (-2, -1) for objective ``val`` and in (-3, -2) for ``train``: -1 or -2 less a fraction drawn
    from a checksum of the other options, so a rerun with other options (or a release whose options
    gained a field) trains new trials beside the stored ones instead of taking those as done. (The
    exact keys -1 and -2 held the default learned trials of releases before ``warmup``/``commit``.)

    Example:
        >>> -2.0 < learn_key(LearnConfig()) < -1.0, -3.0 < learn_key(LearnConfig(objective="train")) < -2.0
        (True, True)
        >>> learn_key(LearnConfig(heads=3)) != learn_key(LearnConfig())
        True
    """
    base = -1.0 - OBJECTIVES.index(config.objective)
    # options added after a release enter the checksum only when set, so stored keys stay valid
    opts = {k: v for k, v in config.to_dict().items() if k != "objective" and not (k in _LATER and v == _LATER[k])}
    digest = zlib.crc32(json.dumps(opts, sort_keys=True).encode())
    return base - (1 + digest % 999_998) / 1_000_000  # six decimals: the storage key's rounding


class LearnedLeverNet(nn.Module):
    """The lab's conv stack at full resolution, then one pooled head per candidate λ, mixed by softmax(α).

    Args:
        in_channels: input channels.
        num_classes: classes.
        spatial: input size per spatial axis (1 or 2 axes).
        pool: registry spec of the statistic every head pools with.
        levers: candidate λ values.
        padding_mode, channels, blocks, kernel_size, norm: as :class:`poolkit.lab.models.LeverNet`.

    Example:
        >>> net = LearnedLeverNet(1, 10, (40,), "max")
        >>> net(torch.rand(2, 1, 40)).shape, round(net.learned_lever(), 3)
        (torch.Size([2, 10]), 0.5)
    """

    _lever_values: Tensor
    _positions: Tensor
    kept: Tensor

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial: tuple[int, ...],
        pool: str = "max",
        levers: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
        padding_mode: str = "zeros",
        channels: int = 32,
        blocks: int = 2,
        kernel_size: int | None = None,
        norm: str = "none",
    ) -> None:
        super().__init__()
        spatial = tuple(int(s) for s in spatial)
        self.levers = tuple(check_lever(v) for v in levers)
        if len(self.levers) < 2:
            raise ValueError(f"levers must hold at least two candidate values, got {levers!r}")
        # the λ = 0 LeverNet is the conv stack with no pools: reuse it, drop its head
        base = LeverNet(in_channels, num_classes, spatial, 0.0, pool, padding_mode, channels, blocks, kernel_size,
                        norm)
        self.body = base.body
        self._per_block = len(base.body) // blocks  # conv, (batch norm,) ReLU
        self.pool_spec = pool
        self.input_size = spatial
        dim = len(spatial)
        pools, heads, sizes = [], [], []
        for lever in self.levers:
            sched = pool_schedule(spatial, lever, blocks=1)
            kern = None if sched.global_pool else sched.kernels[0]
            p = nn.Identity() if lever == 0 else build_pool(pool, dim, kern, channels, spatial, padding_mode)
            c, *rest = _probe(p, (channels, *spatial))
            pools.append(p)
            sizes.append(tuple(rest))
            heads.append(nn.Sequential(nn.Flatten(), nn.Linear(c * math.prod(rest), num_classes)))
        self.pools = nn.ModuleList(pools)
        self.heads = nn.ModuleList(heads)
        self.head_sizes = sizes
        # each candidate's pools as the grid's LeverNet at its λ spreads them over the blocks, used
        # after a regridding commit; None where that model pools once, after the last block, as the head
        self.blocks = blocks
        self.regrid_refused: dict[int, str] = {}
        paths: list[nn.Module] = []
        for k, lever in enumerate(self.levers):
            path, why = _grid_path(pool, dim, spatial, lever, blocks, channels, padding_mode, sizes[k])
            paths.append(nn.Identity() if path is None else path)
            if why:
                self.regrid_refused[k] = why
        self.grid_pools = nn.ModuleList(paths)
        self.alpha = nn.Parameter(torch.zeros(len(self.levers)))
        self.register_buffer("_lever_values", torch.tensor(self.levers), persistent=False)
        self.register_buffer(
            "_positions", torch.tensor([float(math.prod(s)) for s in sizes]) / math.prod(sizes[0]), persistent=False
        )
        # which heads are still computed (all until :meth:`commit` drops some); saved in the state_dict
        self.register_buffer("kept", torch.ones(len(self.levers), dtype=torch.bool))
        # True once :meth:`commit` moved the kept heads onto the grid's architecture; saved in the state_dict
        self.register_buffer("regridded", torch.zeros((), dtype=torch.bool))
        self.active = list(range(len(self.levers)))
        self.is_regridded = False
        self.commit_step: int | None = None  # the training step at which train_learned fixed the lever
        self.register_load_state_dict_post_hook(lambda module, _keys: module._sync_active())

    def _sync_active(self) -> None:
        self.active = [k for k, keep in enumerate(self.kept.tolist()) if keep]
        self.is_regridded = bool(self.regridded)  # read once here, not in every forward (a host sync on CUDA)

    def commit(self, prune: float = 0.0, regrid: bool = False) -> list[int]:
        """Fix the lever: α stops learning and the heads whose weight is under ``prune`` are dropped.

        The kept heads' weights are renormalized among themselves; dropped heads are no longer computed.
        At least the most weighted head is kept. Returns the indices of the kept heads.

        With ``regrid=True`` each kept head then sees the maps of the grid's own model at its λ: the
        shared conv blocks with that model's pools between them (:class:`poolkit.lab.models.LeverNet`),
        so a λ that pools early runs its later blocks at the lower resolution, as a grid trial does.
        Where that architecture cannot be built for a kept head (:attr:`regrid_refused` says why: a
        statistic that changes the channel count, or whose pools have weights of their own, as gated, gem
        and lps) the heads stay as they are and a warning says so.

        Example:
            >>> net = LearnedLeverNet(1, 10, (40,), "max")
            >>> with torch.no_grad():
            ...     _ = net.alpha.copy_(torch.tensor([0.0, 0.0, 0.0, 3.0, 4.0]))
            >>> net.commit(prune=0.05), round(net.learned_lever(), 3)
            ([3, 4], 0.933)
        """
        w = self.weights().detach()
        keep = (w >= prune) & self.kept
        keep[int(w.argmax())] = True
        self.kept.copy_(keep)
        self._sync_active()
        self.alpha.requires_grad_(False)
        if regrid:
            refused = {k: self.regrid_refused[k] for k in self.active if k in self.regrid_refused}
            if refused:
                warnings.warn("learned lever: the kept heads stay on the full-resolution conv stack (no regrid): "
                              + "; ".join(f"λ = {self.levers[k]:g}: {why}" for k, why in refused.items()),
                              stacklevel=2)
            else:
                self.regridded.fill_(True)
                self.is_regridded = True
        return list(self.active)

    def _alpha(self) -> Tensor:
        """α with the dropped heads at -inf (weight 0)."""
        return self.alpha.masked_fill(~self.kept, -math.inf)

    def weights(self) -> Tensor:
        """The mixture weights ``softmax(α)`` over the candidate λ (0 for the heads :meth:`commit` dropped)."""
        return torch.softmax(self._alpha(), 0)

    def lever(self) -> Tensor:
        """The learned λ as a differentiable scalar tensor: ``Σ_k p_k λ_k``."""
        return (self.weights() * self._lever_values.to(self.alpha.dtype)).sum()

    def learned_lever(self) -> float:
        """The learned λ as a float (reads the device)."""
        return float(self.lever().detach())

    def expected_positions(self) -> Tensor:
        """Head positions relative to the λ = min candidate's, expected under the mixture (the compute term)."""
        return (self.weights() * self._positions.to(self.alpha.dtype)).sum()

    def head_logits(self, x: Tensor, heads: list[int] | None = None) -> Tensor:
        """``(K, N, num_classes)``: the logits for ``x`` of the ``K`` kept heads (:attr:`active`, in order),
        or of the listed ``heads`` only."""
        ks = self.active if heads is None else heads
        return torch.stack([self.heads[k](f) for k, f in zip(ks, self._pooled(x, ks))])

    def _pooled(self, x: Tensor, heads: list[int]) -> list[Tensor]:
        """The input of each listed head: the full-resolution conv stack and the head's pool, or after a
        regridding commit, the conv blocks with the grid's pools between them (block 1 computed once)."""
        if not self.is_regridded or all(isinstance(self.grid_pools[k], nn.Identity) for k in heads):
            f = self.body(x)
            return [_first(self.pools[k](f)) for k in heads]
        per = self._per_block
        first = self.body[:per](x)
        full: Tensor | None = None
        out = []
        for k in heads:
            path = self.grid_pools[k]
            if isinstance(path, nn.Identity):
                full = self.body[per:](first) if full is None else full
                out.append(_first(self.pools[k](full)))
                continue
            h = _first(path[0](first))  # type: ignore[index]
            for b in range(1, self.blocks):
                h = _first(path[b](self.body[b * per : (b + 1) * per](h)))  # type: ignore[index]
            out.append(h)
        return out

    def mix(self, logits: Tensor) -> Tensor:
        """Log-probabilities ``(N, C)`` of the mixture ``Σ_k p_k softmax(logits_k)`` of the kept heads' logits
        ``(K, N, C)`` (:meth:`head_logits`)."""
        log_p = torch.log_softmax(self._alpha(), 0)[self.active]
        return torch.logsumexp(log_p.reshape(-1, 1, 1) + torch.log_softmax(logits, -1), 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.mix(self.head_logits(x))

    def features(self, x: Tensor) -> Tensor:
        """The input of the most weighted head (what the lab's instruments measure)."""
        return self._pooled(x, [int(self._alpha().detach().argmax())])[0]

    @property
    def head_size(self) -> tuple[int, ...]:
        return self.head_sizes[int(self._alpha().detach().argmax())]

    def head_parameters(self) -> int:
        """Parameters of the most weighted head."""
        return sum(p.numel() for p in self.heads[int(self._alpha().detach().argmax())].parameters())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the lever α."""
        return [p for n, p in self.named_parameters() if n != "alpha"]


def _grid_path(
    pool: str, dim: int, spatial: tuple[int, ...], lever: float, blocks: int, channels: int, padding_mode: str,
    head_size: tuple[int, ...],
) -> tuple[nn.ModuleList | None, str]:
    """The pools the grid's LeverNet puts after each conv block at ``lever`` (None where it pools only
    after the last block, as the head does), and why it cannot serve the head instead ('' when it can)."""
    sched = pool_schedule(spatial, lever, blocks)
    if lever == 0 or sched.global_pool or all(all(v == 1 for v in kern) for kern in sched.kernels[:-1]):
        return None, ""
    pools, size = [], spatial
    for kern in sched.kernels:
        p = build_pool(pool, dim, kern, channels, size, padding_mode)
        c, *rest = _probe(p, (channels, *size))
        if c != channels:
            return None, f"{pool!r} turns {channels} channels into {c}, which the next conv block does not take"
        pools.append(p)
        size = tuple(rest)
    if size != head_size:
        return None, f"the grid's pools end at {size}, the head takes {head_size}"
    if any(p.state_dict() for p in pools):
        # such pools would sit in every learned net (its parameters, its state_dict) and start untrained
        return None, f"{pool!r} pools carry weights of their own, which would start untrained at the commit"
    return nn.ModuleList(pools), ""


def _split(n: int, holdout: float, seed: int) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_007 + seed))
    k = min(n - 1, max(1, round(n * holdout)))
    return perm[k:], perm[:k]


class _Batches:
    """Seeded mini-batches over ``idx``, reshuffled every epoch (as the lab's training loop)."""

    def __init__(self, idx: Tensor, batch: int, gen: torch.Generator) -> None:
        self.idx, self.bs, self.gen = idx, min(batch, len(idx)), gen
        self.order, self.pos = idx[torch.randperm(len(idx), generator=gen)], 0

    def next(self) -> Tensor:
        if self.pos + self.bs > len(self.idx):
            self.order, self.pos = self.idx[torch.randperm(len(self.idx), generator=self.gen)], 0
        out = self.order[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return out


def train_learned(
    model: LearnedLeverNet, ds: Dataset, config: Any, learn: LearnConfig, seed: int, progress: bool = False
) -> list[float]:
    """Train weights and lever together; return the learned λ's trajectory (about 50 points).

    The lever learns until ``learn.commit`` of the steps, then :meth:`LearnedLeverNet.commit` fixes it
    (and a held-out split rejoins the training batches); the step it happened at is ``model.commit_step``.
    """
    from .train import _autocast, _class_weights, _device_of, lr_scheduler, optimizer_step

    dev = _device_of(model)
    weight = _class_weights(ds, config)
    weight = None if weight is None else weight.to(dev)
    scaler = torch.amp.GradScaler(dev.type) if config.amp and dev.type == "cuda" else None
    n = len(ds.y_train)
    gen = torch.Generator().manual_seed(seed)
    if learn.objective == "val":
        fit_idx, held_idx = _split(n, learn.holdout, seed)
        held = _Batches(held_idx, config.batch_size, gen)
    else:
        fit_idx = torch.arange(n)
    fit = _Batches(fit_idx, config.batch_size, gen)
    head_gen = torch.Generator().manual_seed(20_011 + seed)  # its own stream: batches stay those of sample_heads=0
    opt = torch.optim.Adam(model.weight_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = lr_scheduler(opt, config, warmup=learn.warmup)
    arch = torch.optim.Adam([model.alpha], lr=learn.arch_lr, betas=(0.5, 0.999))
    commit_at = config.steps + 1 if learn.commit >= 1 else max(1, math.ceil(learn.commit * config.steps))
    model.commit_step = None
    every = max(1, config.steps // 50)
    trajectory = [model.learned_lever()]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="steps (learned λ)", leave=False, unit="step")
    model.train()
    for step in range(1, config.steps + 1):
        if step == commit_at:
            model.commit(learn.prune, regrid=learn.regrid)
            model.commit_step = step
            if learn.objective == "val":  # the split served α; the weights now train on all of it
                fit = _Batches(torch.arange(n), config.batch_size, gen)
        idx = fit.next()
        x, y = ds.X_train[idx].to(dev, non_blocking=True), ds.y_train[idx].to(dev, non_blocking=True)
        trained = model.active
        if step < commit_at and 0 < learn.sample_heads < len(model.active):
            pick = torch.randperm(len(model.active), generator=head_gen)[: learn.sample_heads]
            trained = [model.active[i] for i in sorted(pick.tolist())]
        with _autocast(dev, config.amp):
            logits = model.head_logits(x, trained).float()
        # every head learns as a classifier of its own (the mean of their losses), so a head's
        # weight in the mixture says how good it is, not how loud its logits are; a sample of
        # heads is scaled by len(active) / len(trained), an unbiased estimate of the full sum
        losses = torch.stack([F.cross_entropy(h, y, weight=weight) for h in logits])
        scale = len(model.active) / len(trained)
        if learn.head_loss == "weighted":
            loss = scale * (model.weights().detach()[trained] * losses).sum()
        else:
            loss = scale * losses.sum() / len(model.active)
        optimizer_step(loss, opt, scaler, sched)
        if step < commit_at and step % learn.arch_every == 0:
            if learn.objective == "val":
                # first-order: α's gradient on a held-out batch at the current weights; the conv
                # stack and heads run without autograd, so only the mixture is differentiated
                hidx = held.next()
                with torch.no_grad(), _autocast(dev, config.amp):
                    hl = model.head_logits(ds.X_train[hidx].to(dev, non_blocking=True)).float()
                hy = ds.y_train[hidx].to(dev, non_blocking=True)
            elif trained is model.active:
                hl, hy = logits.detach(), y
            else:  # the mixture needs every kept head: one more forward pass of the batch
                with torch.no_grad(), _autocast(dev, config.amp):
                    hl, hy = model.head_logits(x).float(), y
            arch.zero_grad(set_to_none=True)
            aloss = F.nll_loss(model.mix(hl), hy, weight=weight) + learn.compute * model.expected_positions()
            aloss.backward()
            arch.step()
        if step % every == 0 or step == config.steps:
            trajectory.append(model.learned_lever())
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    model.eval()
    return trajectory


def run_learned_trial(
    ds: Dataset, pool: str, seed: int, config: Any = None, learn: LearnConfig | None = None, progress: bool = False,
    holdout: tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """Train and measure one learned-λ network (statistic ``pool``, ``seed``) on ``ds``.

    Args:
        ds: a validated dataset.
        pool: registry spec every candidate head pools with.
        seed: seeds the weights, the held-out split and the batch order.
        config: a :class:`poolkit.lab.train.TrainConfig` (steps, batch size, lr, conv width, padding...).
        learn: the learned-λ options (default :class:`LearnConfig`).
        progress: show a progress bar over steps.
        holdout: ``(X, y)`` held out of the training set (a search's validation part): adds ``val_acc``.

    Returns:
        What :func:`poolkit.lab.train.run_trial` returns (accuracies, consistency, ... of the trained
        mixture), plus ``learned_lever`` (float, λ units), ``lever_trajectory`` (list of floats over
        training), ``lever_weights`` (the final mixture weights), ``lever_candidates``,
        ``learn_objective`` and ``head_positions`` (expected under the mixture).
    """
    from dataclasses import replace

    from .compute import trial_compute
    from .train import TrainConfig, evaluate, resolve_device

    config = config or TrainConfig()
    dev = resolve_device(config.device)
    config = replace(config, device=str(dev))
    learn = learn or LearnConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = LearnedLeverNet(
            ds.channels, ds.num_classes, ds.spatial, pool, learn.levers, config.padding, config.channels,
            config.blocks, config.kernel_size, config.norm,
        ).to(dev)
        trajectory = train_learned(model, ds, config, learn, seed, progress)
        m: dict[str, Any] = dict(evaluate(model, ds, config, seed))  # type: ignore[arg-type]
        model.eval()
        if holdout is not None:
            from .search import validation_metrics

            m.update(validation_metrics(model, *holdout, amp=config.amp))
        m.update(trial_compute(model, ds.X_test[:256].to(dev), amp=config.amp))
    finally:
        torch.set_num_threads(threads)
    w = model.weights().detach()
    m["learned_lever"] = model.learned_lever()
    m["lever_trajectory"] = [float(v) for v in trajectory]
    m["lever_weights"] = [float(v) for v in w.tolist()]
    m["lever_candidates"] = list(learn.levers)
    m["learn_objective"] = learn.objective
    m["lever_commit_step"] = math.nan if model.commit_step is None else float(model.commit_step)
    m["heads_kept"] = float(len(model.active))
    m["regridded"] = float(model.is_regridded)
    m["head_params"] = float(model.head_parameters())
    m["params"] = float(model.num_parameters())
    m["head_positions"] = float(sum(p * math.prod(s) for p, s in zip(w.tolist(), model.head_sizes)))
    m["wall_s"] = time.perf_counter() - t0
    return m

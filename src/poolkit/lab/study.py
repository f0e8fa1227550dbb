"""Studies: sweep the lever over an Optuna storage, resumable and shareable.

A study is one dataset + training config, stored under a study name in an
Optuna storage (a SQLite file by default, any database URL such as PostgreSQL
for many machines). Every trial's parameters (``lever``) and user attributes
(``pool``, ``seed``, every measured value) live in the storage; the report
reads them back from there.

Grid mode (default) runs every (statistic, λ, seed) once; λ = 0 has no pooling,
so it is one grid point per seed (statistic ``"none"``), not one per statistic.
TPE mode (``n_trials``) lets Optuna's TPE sampler search λ ∈ [0, 1] and the
statistic for the best test accuracy.

Resuming: re-running the same study skips finished grid points; trials left
RUNNING by a crash stop sending heartbeats and, after a grace period, are
marked failed and their grid point queued again; a grid point is never
COMPLETE twice. ``workers > 1`` runs that many local processes on one storage.

The model is the lab's :class:`~poolkit.lab.models.LeverNet` unless ``StudyConfig.model``
names the user's factory (``"file.py:FUNC"``, ``"module:FUNC"`` or a callable; the λ rule is
in :mod:`poolkit.lab.custom`). ``run_study(..., train_fn=...)`` replaces the built-in Adam
loop by the user's training function. The study stores ``model`` (its name) and ``device``
as study attributes, and ``lever_rule``, one sentence stating what λ does to that model; a study
stored under the same name with another model is refused.

Devices: ``StudyConfig.train.device`` (None = CUDA when available). With
``workers > 1`` and an unnumbered ``"cuda"`` on a machine with several GPUs, worker ``i``
runs on ``cuda:(i mod GPUs)``, one worker per device when ``workers`` equals the GPU count.

Default study name: ``"<dataset>-<padding>"`` (``"mnist1d-zeros"``), or
``"<dataset>-<FUNC>"`` for a user's model; default storage: ``sqlite:///<out>/poolkit.db``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import multiprocessing as mp
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import load_dataset
from .lever import check_levers
from .storage import GRACE_S, HEARTBEAT_S, _key, _retry, _trial_key, fail_stale, open_storage, trials_frame
from .train import TrainConfig, TrainFn, resolve_device, run_trial, show_progress

__all__ = [
    "StudyConfig",
    "grid_points",
    "open_storage",
    "run_study",
    "default_study_name",
    "worker_devices",
    "trials_frame",
    "fail_stale",
    "HEARTBEAT_S",
    "GRACE_S",
]

@dataclass
class StudyConfig:
    """What a study sweeps and how each trial trains.

    Args:
        dataset: dataset spec (see :func:`poolkit.lab.data.load_dataset`).
        pools: registry specs for the statistic axis (a list, or one comma-separated string). A spec
            may set the statistic's parameters (``"lp:p=4"``) but not its window (``kernel_size``,
            ``stride``, ``output_size``): the lever decides that.
        levers: λ values for the grid: a list of numbers in [0, 1], one number or a comma-separated
            string (``"0,0.5,1"``); a string starting with ``"learn"`` is kept as given (learned-λ mode).
        seeds: number of seeds (0..seeds-1) per grid point.
        train_size: training samples (None = the loader's default).
        data_options: passed to the loader.
        train: training configuration (its ``device`` and ``amp`` included).
        n_trials: when set, a TPE search over continuous λ (and the statistic) with this many trials.
        search_space: with ``n_trials``, the network's knobs the search also samples, and whether λ may be
            learned (``"arch"``, ``"channels=16..128,kernel_size=3|5|7,lr,learn"``; see
            :mod:`poolkit.lab.search`). Searched trials are then scored on a held-out 20 % of the
            training set (``val_acc``), never on the test set.
        search_folds: with ``search_space``, on how many of the training set's five stratified folds each
            searched configuration is trained and scored (1: one model on 80 %; 5: five-fold
            cross-validation, five times the cost, its ``val_acc`` over every training sample).
        model: None (the reference LeverNet) or the user's factory: ``"path/to/file.py:FUNC"``,
            ``"package.module:FUNC"`` or a callable ``FUNC(in_channels, num_classes)`` returning an
            ``nn.Module`` (a module-level function when ``workers > 1``); see :mod:`poolkit.lab.custom`.

    ``levers="learn"`` (or ``"learn:objective=train,heads=3"``) runs the learned-λ mode instead of a
    grid: one trial per (statistic, seed), whose network learns its λ (:mod:`poolkit.lab.learn`).
    """

    dataset: str = "mnist1d"
    pools: Sequence[str] = ("max", "avg")
    levers: Sequence[float] | float | str = (0.0, 0.5, 1.0)
    seeds: int = 2
    train_size: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000))
    n_trials: int | None = None
    model: Any = None
    search_space: Any = None
    search_folds: int = 1

    def __post_init__(self) -> None:
        from .learn import parse_learn

        self.learn = parse_learn(self.levers)  # learned-λ mode; the candidates stand in for the grid
        self.levers = self.learn.levers if self.learn else self.levers
        if self.learn and self.n_trials is not None:
            raise ValueError("levers='learn' learns λ in each trial; it does not combine with n_trials (TPE)")
        if self.learn and self.model is not None:
            raise ValueError("levers='learn' trains the lab's reference network; it does not take model= yet "
                             "(sweep your model's λ with a grid of levers instead)")
        self._check_search_space()
        if isinstance(self.pools, str):
            self.pools = split_specs(self.pools)
        self.pools = [str(p).strip() for p in self.pools]
        if not self.pools:
            raise ValueError("pools must name at least one statistic, e.g. 'max,avg'")
        self.levers = check_levers(self.levers)  # type: ignore[assignment]  # a "learn..." string passes untouched
        if not self.levers and self.n_trials is None:
            raise ValueError("levers must hold at least one value in [0, 1]")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be a positive int, got {self.seeds!r}")
        if self.n_trials is not None and (not isinstance(self.n_trials, int) or self.n_trials < 1):
            raise ValueError(f"n_trials must be a positive int, got {self.n_trials!r}")
        for p in self.pools:
            _check_pool_spec(p)
        if self.model is not None and self.train.norm != "none":
            raise ValueError(f"norm={self.train.norm!r} adds batch norm to the lab's reference network, not to a "
                             "model= factory; put the normalization in your factory")
        if self.model is not None:
            from .custom import model_name, resolve_factory

            resolve_factory(self.model)  # a missing file, module or function is refused here
            model_name(self.model)

    def _check_search_space(self) -> None:
        from .search import FOLDS, parse_search_space

        self.search_space = parse_search_space(self.search_space)
        space = self.search_space
        f = self.search_folds
        if isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= FOLDS:
            raise ValueError(f"search_folds must be an int from 1 to {FOLDS}, got {f!r}")
        if space is None:
            if f != 1:
                raise ValueError("search_folds scores a search_space search; give search_space too")
            return
        if self.n_trials is None:
            raise ValueError("search_space is sampled by the TPE search: give n_trials too "
                             "(--sampler tpe --n-trials N)")
        arch = sorted(set(space.knobs) & {"channels", "blocks", "kernel_size", "padding", "norm"})
        if self.model is not None and (arch or space.learn):
            raise ValueError(f"search_space: {', '.join(arch + (['learn'] if space.learn else []))} shape the lab's "
                             "reference network, not a model= factory; search lr, steps, weight_decay or "
                             "batch_size for your model")

    @property
    def model_name(self) -> str:
        """``"LeverNet"`` or the user's factory spec / callable name, as stored in the study."""
        from .custom import model_name

        return "LeverNet" if self.model is None else model_name(self.model)

    def identity(self, train_fn: TrainFn | None = None) -> dict[str, Any]:
        """What must match for a study to be resumed (the grid axes may grow; the device may change).

        Fields added after the first release appear only when set, so studies stored before them resume.
        """
        train = self.train.to_dict()
        train.pop("device", None)
        for key, plain in (("amp", False), ("lr_schedule", "constant"), ("norm", "none")):  # added later: only when set
            if train.get(key) == plain:
                train.pop(key, None)
        ident: dict[str, Any] = {
            "dataset": self.dataset,
            "train_size": self.train_size,
            "data_options": dict(sorted(self.data_options.items())),
            "train": train,
        }
        if self.model is not None:
            ident["model"] = self.model_name
        if self.search_space is not None:
            ident["search_space"] = self.search_space.describe()
            if self.search_folds != 1:
                ident["search_folds"] = self.search_folds
        if train_fn is not None:
            from .custom import model_name

            ident["train_fn"] = model_name(train_fn)
        return ident


#: Spec parameters the lab cannot honour: the lever decides every pooling window.
_WINDOW_KEYS = ("kernel_size", "stride", "output_size")


def split_specs(text: str) -> list[str]:
    """Comma-separated pool specs, a spec's own ``key=value`` parameters kept with it.

    Example:
        >>> split_specs("max,mixed:alpha=0.3,learnable=true,lp:p=4")
        ['max', 'mixed:alpha=0.3,learnable=true', 'lp:p=4']
    """
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part and specs and ":" in specs[-1]:
            specs[-1] += "," + part  # a further parameter of the spec before it
        else:
            specs.append(part)
    return specs


def _check_pool_spec(spec: str) -> None:
    """Refuse a ``pools`` entry the lab cannot build as written (unknown name or parameter, a window size)."""
    import poolkit

    try:
        _, params = poolkit.parse_spec(spec)
    except ValueError as err:
        raise ValueError(f"pools: {spec!r} is refused: {err}") from None
    fixed = sorted(k for k in params if k in _WINDOW_KEYS)
    if fixed:
        raise ValueError(
            f"pools: {spec!r} sets {', '.join(f'{k}={params[k]!r}' for k in fixed)}, but in a study the lever λ "
            "decides every pooling window (kernel_size, stride and output_size follow from λ and the map size); "
            "drop them and keep the statistic's own parameters only (e.g. 'lp:p=4')"
        )
    try:
        # The spec has no window of its own, so this check call's kernel_size contradicts nothing.
        poolkit.create_pool(spec, dim=1, kernel_size=2, channels=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"pools: {spec!r} is refused: {err}") from None


def default_study_name(dataset: str, padding: str, model: Any = None) -> str:
    """``"<dataset>-<padding>"`` (``"<dataset>-<FUNC>"`` for a user's model) with path-like characters made safe."""
    base = dataset.replace("\\", "/").rstrip("/").split("/")[-1]
    kind = dataset.split(":")[0]
    stem = f"{kind}-{base.split(':')[-1]}" if ":" in dataset else dataset
    if model is not None:
        from .custom import model_name

        padding = model_name(model).replace(":", ".").split(".")[-1]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{stem}-{padding}")


def grid_points(config: StudyConfig) -> list[tuple[str, float, int]]:
    """(statistic, λ, seed) triples; λ = 0 appears once per seed as ``"none"``."""
    if config.learn:  # one learned trial per (statistic, seed), keyed by a stand-in λ
        from .learn import learn_key

        return [(p, learn_key(config.learn), s) for p in config.pools for s in range(config.seeds)]
    pts = []
    for lever in config.levers:
        for pool in ["none"] if lever == 0 else config.pools:
            for seed in range(config.seeds):
                pts.append((pool, float(lever), seed))
    return pts


def _load_or_create(
    storage_url: str, name: str, config: StudyConfig, train_fn: TrainFn | None = None, seed: int = 0
) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    if config.search_space is not None:  # conditional parameters (λ or a learned lever): sample them jointly
        sampler: Any = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    elif config.n_trials:
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = _retry(
        lambda: optuna.create_study(
            study_name=name, storage=storage, direction="maximize", sampler=sampler, load_if_exists=True
        )
    )
    ident = json.dumps(config.identity(train_fn), sort_keys=True)
    have = study.user_attrs.get("identity")
    if have is None:
        study.set_user_attr("identity", ident)
        study.set_user_attr("dataset", config.dataset)
        study.set_user_attr("padding", config.train.padding)
        study.set_user_attr("model", config.model_name)
        from .custom import lever_rule

        study.set_user_attr("lever_rule", lever_rule(config.model))
        study.set_user_attr("device", str(resolve_device(config.train.device)))
    elif have != ident:
        stored_model = json.loads(have).get("model", "LeverNet")
        what = (f"another model ({stored_model})" if stored_model != config.model_name
                else "a different dataset or training config")
        raise ValueError(
            f"study {name!r} in {storage_url} was made with {what}:\n"
            f"  stored: {have}\n  asked:  {ident}\nuse another --study-name or --storage"
        )
    return study


def _enqueue_missing(study: Any, config: StudyConfig) -> tuple[int, int]:
    """Queue every grid point with no COMPLETE, RUNNING or WAITING trial; return (queued, pending)."""
    from optuna.trial import TrialState

    fail_stale(study)
    taken: dict[tuple[str, float, int], Any] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)):
        k = _trial_key(t)
        if k is not None:
            taken.setdefault(k, t.state)
    queued = 0
    for pool, lever, seed in grid_points(config):
        if _key(pool, lever, seed) not in taken:
            study.enqueue_trial({"lever": lever}, user_attrs={"pool": pool, "seed": seed, "lever": lever})
            queued += 1
    pending = sum(1 for k in grid_points(config) if taken.get(_key(*k)) != TrialState.COMPLETE)
    return queued, pending


class _NoGridPoint(Exception):
    """A worker asked for a trial after the queue ran dry (another worker took the last one)."""


def _claimed_elsewhere(trial: Any, key: tuple[str, float, int]) -> bool:
    """True when another trial already completed this grid point, or runs it with a lower number.

    Two machines that queue the same missing point at once both get a trial for it;
    the lower-numbered one runs, the other stops here, so no point completes twice.
    """
    from optuna.trial import TrialState

    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.number != trial.number and _trial_key(t) == key:
            if t.state == TrialState.COMPLETE or t.number < trial.number:
                return True
    return False


def _objective(ds: Any, config: StudyConfig, progress: bool, train_fn: TrainFn | None = None):
    import optuna

    from .learn import LearnConfig, learn_key

    space = config.search_space
    # searched trials train on 80 % of the training set and are scored on the rest, on search_folds folds
    splits = [] if space is None else [_fold(ds, f) for f in range(config.search_folds)]

    def objective(trial: optuna.Trial) -> float:
        train, learn = config.train, config.learn
        if config.n_trials:
            seed = 0
            if space is not None:
                train = space.suggest_train(trial, config.train)
                if space.learn and trial.suggest_categorical("lever_mode", ["fixed", "learn"]) == "learn":
                    learn = LearnConfig()
            if learn:
                lever = learn_key(learn)
                trial.set_user_attr("lever", lever)
                pool = trial.suggest_categorical("pool", list(config.pools))
            else:
                lever = trial.suggest_float("lever", 0.0, 1.0)
                pool = trial.suggest_categorical("pool", list(config.pools)) if lever > 0 else "none"
            trial.set_user_attr("pool", pool)
            trial.set_user_attr("seed", seed)
        else:
            if "pool" not in trial.user_attrs:
                raise _NoGridPoint()
            lever = trial.suggest_float("lever", 0.0, 1.0) if not config.learn else trial.user_attrs["lever"]
            pool, seed = trial.user_attrs["pool"], int(trial.user_attrs["seed"])
            if _claimed_elsewhere(trial, _key(pool, lever, seed)):
                trial.set_user_attr("duplicate_of_grid_point", True)
                raise _NoGridPoint()
        def one(data: Any, holdout: Any = None) -> dict[str, Any]:
            if learn:
                from .learn import run_learned_trial

                return run_learned_trial(data, pool, seed, train, learn, progress=progress, holdout=holdout)
            return run_trial(data, pool, lever, seed, train, progress=progress, model=config.model,
                             train_fn=train_fn, holdout=holdout)

        if splits:
            from .search import fold_mean

            m = fold_mean([one(fit, held) for fit, held in splits], [len(held[1]) for _, held in splits])
        else:
            m = one(ds)
        trial.set_user_attr("device", str(resolve_device(config.train.device)))
        for k, v in m.items():
            trial.set_user_attr(k, None if isinstance(v, float) and math.isnan(v) else v)
        # the value the search maximizes: PR-AUC on binary (rare-event) data, where accuracy misleads;
        # with a search space, on the held-out part of the training set
        pre = "val_" if splits else ""
        score = m.get(f"{pre}pr_auc", math.nan) if ds.num_classes == 2 else math.nan
        return m[f"{pre}acc" if pre else "test_acc"] if isinstance(score, float) and math.isnan(score) else score

    return objective


def _fold(ds: Any, fold: int) -> tuple[Any, tuple[Any, Any]]:
    from .search import holdout_split

    fit, x_held, y_held = holdout_split(ds, fold)
    return fit, (x_held, y_held)


def _waiting(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _work(
    storage_url: str, name: str, config: StudyConfig, progress: bool, bar_total: int = 0, shared: bool = False,
    train_fn: TrainFn | None = None,
    ds: Any = None,
    seed: int = 0,
) -> int:
    """Run queued grid points (or TPE trials) until none is left; return how many this process ran."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ds is None:
        ds = load_dataset(config.dataset, train_size=config.train_size, seed=0, **config.data_options)
    study = _load_or_create(storage_url, name, config, train_fn, seed=seed)
    objective = _objective(ds, config, progress, train_fn)
    bar = None
    if progress and bar_total:
        from tqdm.auto import tqdm

        bar = tqdm(total=bar_total, desc=f"trials ({name})", unit="trial")
    ran = 0
    while True:
        if config.n_trials:
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)))
            if done >= config.n_trials:
                break
        elif _waiting(study) == 0:
            break
        if shared:
            time.sleep(random.random() * 0.2)  # de-synchronize workers that would pop the queue together
        try:
            study.optimize(objective, n_trials=1, catch=(_NoGridPoint,))
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as err:
            # SQLite has no SELECT ... FOR UPDATE: two processes can pop the same queued trial at once. Both
            # train it; the first to finish records it and the other's tell is refused (a ValueError, or
            # UpdateFinishedTrialError when the storage refuses the state), so the grid point still
            # completes exactly once (PostgreSQL locks the row, so there it cannot happen).
            if isinstance(err, ValueError) and not str(err).startswith("Cannot tell a"):
                raise
        ran += 1
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return ran


def _worker_main(
    storage_url: str, name: str, config: StudyConfig, train_fn: TrainFn | None = None, seed: int = 0
) -> None:
    # each worker's sampler has its own seed, so parallel searches do not start with the same trials
    _work(storage_url, name, config, progress=False, shared=True, train_fn=train_fn, seed=seed)


def worker_devices(device: str | None, workers: int) -> list[str | None]:
    """The device of each of ``workers`` local workers: one GPU each, in turn, for an unnumbered ``"cuda"``.

    ``None`` (the default device) counts as ``"cuda"`` where CUDA is available. An explicit ``"cpu"``
    or ``"cuda:N"`` puts every worker there.

    Example:
        >>> worker_devices("cpu", 2)
        ['cpu', 'cpu']
    """
    import torch

    wants_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    n = torch.cuda.device_count() if wants_cuda else 0
    if n > 1:
        return [f"cuda:{i % n}" for i in range(workers)]
    return [device] * workers


def _check_model(config: StudyConfig, ds: Any) -> None:
    """Build each (statistic, λ) of the user's model once, so a bad factory fails before any training."""
    if config.model is None:
        return
    from .custom import check_model

    levers = config.levers if not config.n_trials else [0.0, 0.5, 1.0]
    points = sorted({(p if lv > 0 else "none", float(lv)) for lv in levers for p in config.pools})
    check_model(config.model, ds, points)


def run_study(
    config: StudyConfig,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | Path = "poolkit-out",
    workers: int = 1,
    wait_for_running: bool = True,
    train_fn: TrainFn | None = None,
) -> tuple[str, str]:
    """Run (or resume) a study and return ``(storage_url, study_name)``.

    Args:
        config: what to sweep.
        storage: Optuna storage URL; default ``sqlite:///<out>/poolkit.db``.
        study_name: default :func:`default_study_name` of the dataset and padding (or model).
        out: folder for the default SQLite file (and, in the CLI, the report).
        workers: local processes sharing the storage; with several GPUs and ``device`` ``"cuda"`` (or the
            default), one per GPU in turn (:func:`worker_devices`).
        wait_for_running: when trials are RUNNING elsewhere (another worker, or a crashed one whose
            heartbeat has not gone stale yet), wait for them to finish or go stale, then rerun the stale ones.
        train_fn: ``train_fn(model, dataset, config, seed)`` replaces the built-in Adam loop: it trains
            ``model`` in place (already on ``config.device``, in train mode; ``dataset`` is the
            :class:`~poolkit.lab.data.Dataset` on the CPU, ``config`` the study's
            :class:`~poolkit.lab.train.TrainConfig` with the device resolved, ``seed`` the trial's
            seed). poolkit still evaluates, measures, stores and reports every trial. It must be a
            module-level function when ``workers > 1`` (it is pickled to the worker processes), and
            its qualified name is part of the study's identity.

    Example:
        >>> cfg = StudyConfig("digits-shift", pools=["max"], levers=[0, 1], seeds=1, train_size=40,
        ...                   data_options={"test_size": 20}, train=TrainConfig(steps=2, channels=4))
        >>> url, name = run_study(cfg, out=tmp)  # doctest: +SKIP
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    out = Path(out)
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{out.resolve() / 'poolkit.db'}"
    if train_fn is not None and not callable(train_fn):
        raise TypeError(f"train_fn must be a callable train_fn(model, dataset, config, seed), got "
                        f"{type(train_fn).__name__}")
    if train_fn is not None and (config.learn or (config.search_space is not None and config.search_space.learn)):
        raise ValueError("train_fn does not combine with levers='learn' (the learned-λ mode trains its own "
                         "mixture of heads)")
    if workers > 1:
        _check_picklable(config.model, "model")
        _check_picklable(train_fn, "train_fn")
    name = study_name or default_study_name(config.dataset, config.train.padding, config.model)
    # Refuse bad data, a bad device or model factory (and a mismatched study) before anything is queued or trained.
    devices = worker_devices(config.train.device, workers)
    for dev in set(devices):
        resolve_device(dev)
    ds = load_dataset(config.dataset, train_size=config.train_size, seed=0, **config.data_options)
    _check_model(config, ds)
    study = _load_or_create(storage, name, config, train_fn)
    if config.search_space is not None and not study.get_trials(deepcopy=False):
        # a new search starts from the base configuration at λ = 1
        default_kernel = 5 if len(ds.spatial) == 1 else 3
        study.enqueue_trial(config.search_space.start_params(config.train, config.pools[0], default_kernel))
    progress = show_progress()
    while True:
        if config.n_trials:

            fail_stale(study)
            pending = config.n_trials
        else:
            _, pending = _enqueue_missing(study, config)
        if workers == 1:
            _work(storage, name, config, progress, bar_total=_waiting(study) if not config.n_trials else pending,
                  train_fn=train_fn, ds=ds)
        else:
            ctx = mp.get_context("spawn")
            procs = [
                ctx.Process(target=_worker_main, args=(storage, name, _on(config, dev), train_fn, i))
                for i, dev in enumerate(devices)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            bad = [p.exitcode for p in procs if p.exitcode != 0]
            if bad:
                raise RuntimeError(f"{len(bad)} worker(s) failed with exit codes {bad}; see their output above")
        if config.n_trials or not wait_for_running:
            break
        _, pending = _enqueue_missing(study, config)
        if pending == 0:
            break
        if _waiting(study) == 0:
            time.sleep(HEARTBEAT_S)  # trials RUNNING elsewhere: wait for them to finish or go stale
    return storage, name


def _check_picklable(obj: Any, what: str) -> None:
    if obj is None or isinstance(obj, str):
        return
    import pickle

    try:
        pickle.dumps(obj)
    except Exception as err:  # pickling raises several types
        raise TypeError(f"{what} must be a module-level function when workers > 1 (it is sent to the worker "
                        f"processes), got {obj!r}: {err}") from None


def _on(config: StudyConfig, device: str | None) -> StudyConfig:
    """``config`` with its training moved to ``device`` (the identity does not include the device)."""
    if device == config.train.device:
        return config
    moved = copy.copy(config)  # not dataclasses.replace: __post_init__ would parse the learned-λ levers again
    moved.train = dataclasses.replace(config.train, device=device)
    return moved

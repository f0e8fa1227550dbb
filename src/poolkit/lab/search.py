"""Searching the architecture with the lever: ``--sampler tpe --search-space ...``.

A TPE study normally samples λ and the statistic. With a search space it also
samples the lab network's knobs (conv width, blocks, kernel size, learning rate,
steps, weight decay, learning-rate schedule, batch size, padding, batch norm) and, when ``learn`` is in the space,
whether λ is fixed or learned (:mod:`poolkit.lab.learn`).

The first trial is the base configuration (the study's own training options,
clipped into the space) at λ = 1 with the first statistic, so the search starts
from the lab's default network rather than from a random draw.

Honest selection: a searched trial trains on 80 % of the training set and is
scored on the held-out 20 % (``val_acc``, or ``val_pr_auc`` on binary data),
one stratified split shared by every trial; the test set plays no part in the
choice. Each trial still records its test accuracy, on the model trained on
80 % of the data. The figure to report is the best configuration retrained
from scratch on the whole training set with fresh seeds
(:func:`retrain_best`, ``--retrain-seeds``), stored as a grid study of its
own, ``<study>-best-t<N>``, and reproducible with the command it prints.

Space syntax: comma-separated knob names, each with its default range, or
``name=lo..hi`` (a numeric range) or ``name=a|b|c`` (choices); ``arch`` stands
for channels, blocks, kernel_size, lr and steps, ``all`` for every knob.

>>> space = parse_search_space("channels=16..64,kernel_size=3|5,lr,learn")
>>> sorted(space.knobs), space.learn
(['channels', 'kernel_size', 'lr'], True)
>>> space.describe()
'channels=16..64,kernel_size=3|5,lr=0.001..0.03,learn'
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from .data import Dataset
from .models import NORMS

__all__ = ["Knob", "KNOBS", "SearchSpace", "parse_search_space", "holdout_split", "validation_metrics",
           "retrain_best", "best_command", "search_summary", "fold_mean", "HOLDOUT", "FOLDS"]

#: Folds of the training set's stratified partition: a searched trial is scored on one (20 %) or several.
FOLDS = 5
#: Fraction of the training set one fold holds.
HOLDOUT = 1 / FOLDS


@dataclass(frozen=True)
class Knob:
    """One searchable training option: an int or float range (``log`` scale or not), or choices."""

    kind: str  # "int", "float" or "cat"
    low: float = 0
    high: float = 0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def text(self) -> str:
        if self.kind == "cat":
            return "|".join(str(c) for c in self.choices)
        return f"{self.low:g}..{self.high:g}"

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "cat":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


#: The knobs and their default ranges (names as in :class:`poolkit.lab.train.TrainConfig`).
KNOBS: dict[str, Knob] = {
    "channels": Knob("int", 16, 128, log=True),
    "blocks": Knob("int", 1, 4),
    "kernel_size": Knob("cat", choices=(3, 5, 7, 9)),
    "lr": Knob("float", 1e-3, 3e-2, log=True),
    "steps": Knob("int", 500, 4000, log=True),
    "weight_decay": Knob("float", 1e-6, 1e-2, log=True),
    "lr_schedule": Knob("cat", choices=("constant", "cosine")),
    "batch_size": Knob("cat", choices=(32, 64, 100, 200)),
    "padding": Knob("cat", choices=("zeros", "circular")),
    "norm": Knob("cat", choices=NORMS),
}
_GROUPS = {"arch": ("channels", "blocks", "kernel_size", "lr", "steps"), "all": tuple(KNOBS)}
_POSITIVE_INT = ("channels", "blocks", "steps", "batch_size")
_TEXT = ("padding", "lr_schedule", "norm")  # knobs whose choices are words


@dataclass(frozen=True)
class SearchSpace:
    """The knobs a TPE study samples besides λ and the statistic, and whether λ may be learned."""

    knobs: dict[str, Knob] = field(default_factory=dict)
    learn: bool = False

    def describe(self) -> str:
        """The space in the syntax :func:`parse_search_space` reads (every range written out)."""
        parts = [f"{n}={k.text()}" for n, k in self.knobs.items()]
        return ",".join(parts + (["learn"] if self.learn else []))

    def start_params(self, base: Any, pool: str, kernel_size: int) -> dict[str, Any]:
        """The search's first trial: ``base``'s own values (a :class:`~poolkit.lab.train.TrainConfig`,
        clipped into the space; ``kernel_size`` stands for its default), fixed λ = 1 and ``pool``.

        Example:
            >>> from poolkit.lab.train import TrainConfig
            >>> parse_search_space("channels=64..128,lr,learn").start_params(TrainConfig(), "max", 5)
            {'channels': 64, 'lr': 0.01, 'lever_mode': 'fixed', 'lever': 1.0, 'pool': 'max'}
        """
        params: dict[str, Any] = {}
        for n, k in self.knobs.items():
            value = getattr(base, n)
            value = kernel_size if value is None else value
            if k.kind == "cat":
                params[n] = value if value in k.choices else k.choices[0]
            else:
                clipped = min(max(value, k.low), k.high)
                params[n] = round(clipped) if k.kind == "int" else float(clipped)
        return {**params, **({"lever_mode": "fixed"} if self.learn else {}), "lever": 1.0, "pool": pool}

    def suggest_train(self, trial: Any, base: Any) -> Any:
        """``base`` (a :class:`~poolkit.lab.train.TrainConfig`) with every knob sampled by ``trial``."""
        return replace(base, **{n: k.suggest(trial, n) for n, k in self.knobs.items()})


def _number(text: str, name: str, kind: str) -> float:
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"search space: {name} takes {'integers' if kind == 'int' else 'numbers'}, "
                         f"got {text!r}") from None


def _parse_knob(name: str, text: str) -> Knob:
    default = KNOBS[name]
    if ".." in text and default.kind == "cat":
        raise ValueError(f"search space: {name} takes choices 'a|b', not a range, e.g. {name}={default.text()}")
    if "|" in text or default.kind == "cat":
        kind = "str" if name in _TEXT else "float" if default.kind == "float" else "int"
        choices = tuple(c.strip() if kind == "str" else _number(c.strip(), name, kind)
                        for c in text.split("|") if c.strip())
        if not choices:
            raise ValueError(f"search space: {name}= needs at least one choice, e.g. {name}={default.text()}")
        return _checked(name, Knob("cat", choices=choices))
    lo, sep, hi = text.partition("..")
    if not sep:
        raise ValueError(f"search space: {name}={text!r} is neither a range 'lo..hi' nor choices 'a|b|c'")
    low, high = _number(lo.strip(), name, default.kind), _number(hi.strip(), name, default.kind)
    if low > high:
        raise ValueError(f"search space: {name}={text!r} has its low end above its high end")
    return _checked(name, Knob(default.kind, low, high, log=default.log))


def _checked(name: str, knob: Knob) -> Knob:
    values = knob.choices if knob.kind == "cat" else (knob.low, knob.high)
    if name in _TEXT:
        bad = [v for v in values if v not in KNOBS[name].choices]
        if bad:
            raise ValueError(f"search space: {name} accepts {KNOBS[name].text()}, got {bad}")
    elif name == "kernel_size" and any(not isinstance(v, int) or v < 1 or v % 2 == 0 for v in values):
        raise ValueError(f"search space: kernel_size takes odd positive ints (3|5|7), got {knob.text()}")
    elif name in _POSITIVE_INT and any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"search space: {name} takes positive ints, got {knob.text()}")
    elif name == "lr" and any(v <= 0 for v in values):
        raise ValueError(f"search space: lr takes positive numbers, got {knob.text()}")
    elif name == "weight_decay" and any(v < 0 for v in values):
        raise ValueError(f"search space: weight_decay takes numbers >= 0, got {knob.text()}")
    if knob.kind != "cat" and knob.log and knob.low <= 0:
        knob = replace(knob, log=False)  # a log scale cannot start at 0
    return knob


def parse_search_space(text: str | SearchSpace | None) -> SearchSpace | None:
    """``"channels,blocks=1..3,kernel_size=3|5,learn"`` -> a :class:`SearchSpace` (None stays None).

    Raises:
        ValueError: an unknown knob (naming the accepted ones), a malformed range or choice, a knob twice.

    Example:
        >>> parse_search_space("arch").describe()
        'channels=16..128,blocks=1..4,kernel_size=3|5|7|9,lr=0.001..0.03,steps=500..4000'
    """
    if text is None or isinstance(text, SearchSpace):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"search space must be a non-empty string such as 'arch' or 'channels,lr', got {text!r}")
    knobs: dict[str, Knob] = {}
    direct: set[str] = set()
    learn = False
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, value = (s.strip() for s in part.partition("="))
        name = name.lower().replace("-", "_")
        if name == "learn" and not eq:
            learn = True
            continue
        names = _GROUPS.get(name, (name,)) if not eq else (name,)
        for n in names:
            if n not in KNOBS:
                raise ValueError(f"search space: unknown knob {n!r}; accepted: {', '.join(KNOBS)}, learn "
                                 f"(λ fixed or learned), arch ({', '.join(_GROUPS['arch'])}) and all")
            if name not in _GROUPS:  # named directly: once only
                if n in direct:
                    raise ValueError(f"search space: {n} is given twice")
                direct.add(n)
                knobs[n] = _parse_knob(n, value) if eq else KNOBS[n]
            elif n not in direct:  # a group adds default ranges; a knob named directly keeps its own
                knobs[n] = KNOBS[n]
    if not knobs and not learn:
        raise ValueError(f"search space {text!r} names no knob")
    return SearchSpace(knobs, learn)


def holdout_split(ds: Dataset, fold: int = 0, folds: int = FOLDS, seed: int = 0) -> tuple[Dataset, Tensor, Tensor]:
    """``ds`` with fold ``fold`` of a stratified ``folds``-fold partition of its training set moved out.

    Returns ``(fit_ds, X_held, y_held)``. Each class's samples are shuffled (seeded) and dealt to the folds
    in turn, so every fold holds about ``1 / folds`` of each class (a class with fewer samples than folds
    is missing from some folds; one with a single sample always trains). The folds are disjoint and
    together cover the training set; the test set is untouched.

    Example:
        >>> from poolkit.lab.data import load_dataset
        >>> ds = load_dataset("digits-shift", train_size=50, test_size=10)
        >>> fit, xh, yh = holdout_split(ds)
        >>> len(fit.y_train), len(yh)
        (40, 10)
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"fold must be an int in [0, {folds}), got {fold!r}")
    gen = torch.Generator().manual_seed(20_011 + seed)
    held: list[Tensor] = []
    for c in torch.unique(ds.y_train):
        idx = torch.nonzero(ds.y_train == c).flatten()
        if len(idx) >= 2:
            held.append(idx[torch.randperm(len(idx), generator=gen)][fold::folds])
    held_idx = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.long)
    if len(held_idx) == 0:
        raise ValueError(f"the training set is too small to hold out fold {fold} of {folds}")
    keep = torch.ones(len(ds.y_train), dtype=torch.bool)
    keep[held_idx] = False
    fit = replace(ds, X_train=ds.X_train[keep], y_train=ds.y_train[keep],
                  info={**ds.info, "holdout": f"fold {fold} of {folds}"})
    return fit, ds.X_train[held_idx], ds.y_train[held_idx]


def fold_mean(results: list[dict[str, Any]], held: list[int]) -> dict[str, Any]:
    """One trial's metrics over its folds: numbers averaged (the ``val_*`` ones weighted by each fold's
    held-out size, so ``val_acc`` is the accuracy over every held-out sample), others from the first fold.

    Example:
        >>> fold_mean([{"val_acc": 1.0, "test_acc": 0.8}, {"val_acc": 0.5, "test_acc": 0.6}], [3, 1])
        {'val_acc': 0.875, 'test_acc': 0.7, 'folds': 2}
    """
    out: dict[str, Any] = {}
    for key, first in results[0].items():
        vals = [r.get(key) for r in results]
        if isinstance(first, bool) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = first
            continue
        w = held if key.startswith("val_") else [1] * len(vals)
        pairs = [(float(v), wi) for v, wi in zip(vals, w) if not math.isnan(float(v))]
        out[key] = sum(v * wi for v, wi in pairs) / sum(wi for _, wi in pairs) if pairs else math.nan
    out["folds"] = len(results)
    return out


def validation_metrics(model: torch.nn.Module, x: Tensor, y: Tensor, amp: bool = False) -> dict[str, float]:
    """``val_acc`` of ``model`` on ``(x, y)``, and ``val_pr_auc`` for two classes."""
    from .train import _predict

    logits = _predict(model, x, amp=amp)
    out = {"val_acc": float((logits.argmax(1) == y).float().mean())}
    if logits.shape[1] == 2:
        from sklearn.metrics import average_precision_score

        score = torch.softmax(logits, 1)[:, 1].numpy()
        out["val_pr_auc"] = float(average_precision_score(y.numpy(), score)) if (y == 1).any() else math.nan
    return out


# ----------------------------------------------------------------------------- the best, retrained


def _best_trial(study: Any) -> Any:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None
            and not math.isnan(t.value)]
    if not done:
        raise ValueError(f"study {study.study_name!r} has no COMPLETE trial to retrain")
    return max(done, key=lambda t: (t.value, -t.number))


def _best_config(study: Any, seeds: int, device: str | None = None, model: Any = None) -> tuple[Any, Any]:
    """The grid :class:`~poolkit.lab.study.StudyConfig` that retrains the best trial, and that trial."""
    from .study import StudyConfig
    from .train import TrainConfig

    ident = json.loads(study.user_attrs["identity"])
    stored = ident.get("model")
    if model is None and stored is not None:
        if ":" not in stored:  # a callable's name: it cannot be imported back from the storage
            raise ValueError(f"study {study.study_name!r} searched the model {stored!r}; pass the same factory "
                             "as model= to retrain it")
        model = stored
    t = _best_trial(study)
    train = TrainConfig.from_dict({**ident["train"], **{k: v for k, v in t.params.items() if k in KNOBS},
                                   "device": device})
    learned = t.params.get("lever_mode") == "learn"
    levers: Any = "learn" if learned else [float(t.params.get("lever", 0.0))]
    pool = t.user_attrs.get("pool", "max")
    cfg = StudyConfig(dataset=ident["dataset"], pools=[pool if pool != "none" else "max"], levers=levers,
                      seeds=seeds, train_size=ident["train_size"], data_options=ident["data_options"], train=train,
                      model=model)
    return cfg, t


def best_command(cfg: Any, study_name: str, storage: str | None = None, train_fn: Any = None) -> str:
    """The ``poolkit study`` command that runs ``cfg`` (a grid config of one setting) as ``study_name``.

    Options the command line does not take (``class_weight``, ``max_shift``, a callable model) are named
    in a trailing shell comment: such a study reruns from Python with the same
    :class:`~poolkit.lab.study.StudyConfig`.
    """
    from .train import TrainConfig

    tr, default = cfg.train, TrainConfig()
    lever = "learn" if cfg.learn else ",".join(repr(float(v)) for v in cfg.levers)
    args = ["poolkit", "study", "--dataset", cfg.dataset, "--pools", ",".join(cfg.pools), "--levers", lever,
            "--seeds", str(cfg.seeds)]
    if cfg.train_size is not None:
        args += ["--train-size", str(cfg.train_size)]
    for key, val in cfg.data_options.items():
        args += ["--data-option", f"{key}={val}"]
    args += ["--steps", str(tr.steps), "--channels", str(tr.channels), "--blocks", str(tr.blocks)]
    if tr.kernel_size is not None:
        args += ["--kernel-size", str(tr.kernel_size)]
    args += ["--lr", repr(float(tr.lr)), "--weight-decay", repr(float(tr.weight_decay)), "--batch-size",
             str(tr.batch_size), "--padding", tr.padding]
    if tr.lr_schedule != default.lr_schedule:
        args += ["--lr-schedule", tr.lr_schedule]
    if tr.norm != default.norm:
        args += ["--norm", tr.norm]
    if tr.threads != default.threads:
        args += ["--threads", str(tr.threads)]
    if tr.amp:
        args += ["--amp"]
    not_cli = [f"{k}={getattr(tr, k)!r}" for k in ("class_weight", "max_shift")
               if getattr(tr, k) != getattr(default, k)]
    if train_fn is not None:
        from .custom import model_name

        not_cli.append(f"train_fn={model_name(train_fn)}")
    if isinstance(cfg.model, str):
        args += ["--model", cfg.model]
    elif cfg.model is not None:
        not_cli.append(f"model={cfg.model_name}")
    args += ["--study-name", study_name]
    if storage is not None:
        args += ["--storage", storage]
    note = f"  # also {', '.join(not_cli)}: not command-line options, set them in StudyConfig" if not_cli else ""
    return shlex.join(args) + note


def retrain_best(storage: str, study_name: str, seeds: int = 3, workers: int = 1, device: str | None = None,
                 model: Any = None, train_fn: Any = None) -> dict[str, Any]:
    """Retrain a search's best trial from scratch on the whole training set with ``seeds`` seeds.

    The runs are a grid study ``<study_name>-best-t<N>`` (N: the best trial's number) in the same storage
    (resumable, reported like any study); the summary is also stored on the search study as the user
    attribute ``best_retrained``.
    ``model`` and ``train_fn`` are those the search ran with (a model given as a spec string is read back
    from the storage).

    Returns:
        ``{"study", "command", "trial", "params", "val_score", "test_acc", "test_acc_mean", "test_acc_std",
        "seeds"}`` with ``test_acc`` the per-seed list.
    """
    import optuna

    from .storage import open_storage, trials_frame
    from .study import run_study

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    ident = json.loads(study.user_attrs.get("identity", "{}"))
    if "search_space" not in ident:
        raise ValueError(f"study {study_name!r} is not a search (it was not run with a search space)")
    if ident.get("train_fn") and train_fn is None:
        raise ValueError(f"study {study_name!r} searched with train_fn={ident['train_fn']}; pass the same "
                         "train_fn= to retrain it")
    cfg, t = _best_config(study, seeds, device, model)
    name = f"{study_name}-best-t{t.number}"  # one study per best trial: a resumed search's new best gets its own
    run_study(cfg, storage=storage, study_name=name, workers=workers, train_fn=train_fn)
    frame = trials_frame(storage, name)
    accs = [float(a) for a in frame.sort_values("seed")["test_acc"]]
    out = {
        "study": name, "command": best_command(cfg, name, train_fn=train_fn), "trial": int(t.number),
        "params": {"pool": t.user_attrs.get("pool"), **dict(t.params)}, "val_score": float(t.value),
        "test_acc": accs, "test_acc_mean": float(sum(accs) / len(accs)),
        "test_acc_std": float(torch.tensor(accs).std()) if len(accs) > 1 else math.nan, "seeds": len(accs),
    }
    study.set_user_attr("best_retrained", json.dumps(out))
    return out


# ----------------------------------------------------------------------------- in the report


def _setting_text(row: Any) -> str:
    lever = row.get("learned_lever")
    if lever is not None and not (isinstance(lever, float) and math.isnan(lever)):
        return f"{row['pool']}, learned λ = {lever:.2f}"
    return f"{row['pool']}, λ = {float(row['lever']):.3g}"


def search_summary(frame: Any, attrs: dict[str, Any], top: int = 10) -> dict[str, Any] | None:
    """The report's view of a search: its finding and its ``top`` trials by held-out score (None otherwise).

    The finding names the best configuration by its held-out score (the search's own value, never the
    test accuracy) and, when :func:`retrain_best` has run, its test accuracy retrained with fresh seeds.

    Returns:
        ``{"finding": str, "columns": [...], "rows": [[...], ...]}``.
    """
    try:
        ident = json.loads(attrs.get("identity") or "{}")
    except (TypeError, ValueError):
        return None
    if "search_space" not in ident or frame.empty:
        return None
    metric = "val_pr_auc" if "val_pr_auc" in frame and frame["val_pr_auc"].notna().any() else "val_acc"
    label = "held-out PR-AUC" if metric == "val_pr_auc" else "held-out accuracy"
    ranked = frame[frame[metric].notna()].sort_values([metric, "trial"], ascending=[False, True])
    if ranked.empty:
        return None
    knobs = [k for k in KNOBS if k in frame.columns]
    columns = ["trial", "setting", *knobs, label, "test accuracy (80 % fit)"]
    rows = [[str(int(r["trial"])), _setting_text(r), *(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                                          for k in knobs),
             f"{100 * r[metric]:.1f} %", f"{100 * r['test_acc']:.1f} %"] for _, r in ranked.head(top).iterrows()]
    best = ranked.iloc[0]
    where = f"On {attrs.get('dataset', ident.get('dataset'))}"
    folds = int(ident.get("search_folds", 1))
    scored = (f"each scored on a held-out {100 * HOLDOUT:.0f} % of the training set" if folds == 1 else
              f"each scored on {folds} held-out folds of {100 * HOLDOUT:.0f} % of the training set "
              "(one model per fold)")
    text = (f"{where} this search sampled {len(frame)} configurations of {ident['search_space']} with the "
            f"statistic and λ, {scored}. The best, trial "
            f"{int(best['trial'])} ({_setting_text(best)}; "
            + ", ".join(f"{k} = {best[k]:.3g}" if isinstance(best[k], float) else f"{k} = {best[k]}" for k in knobs)
            + f"), scored {100 * best[metric]:.1f} % {label}. ")
    try:
        retrained = json.loads(attrs.get("best_retrained") or "null")
    except (TypeError, ValueError):
        retrained = None
    if retrained:
        sd = retrained.get("test_acc_std", math.nan)
        sd_text = f" ± {100 * sd:.1f}" if isinstance(sd, float) and not math.isnan(sd) else ""
        stale = "" if retrained.get("trial") == int(best["trial"]) else (
            f" (that was trial {retrained.get('trial')}, the best when it was retrained; the search has gone on since)")
        text += (f"Retrained from scratch on the whole training set with {retrained['seeds']} fresh seeds it reaches "
                 f"{100 * retrained['test_acc_mean']:.1f}{sd_text} % test accuracy{stale}: study "
                 f"{retrained['study']}, rerun with `{retrained['command']}`.")
    else:
        text += ("It has not been retrained yet (poolkit.lab.search.retrain_best, or --retrain-seeds): the test "
                 "accuracies below come from single models trained on 80 % of the training set.")
    return {"finding": text, "columns": columns, "rows": rows}

"""The study's storage: opening it, heartbeats and stale trials, and reading the trials back.

A study lives in an Optuna RDB storage (a SQLite file or a database URL). Every trial's grid point is
``(pool, λ, seed)``; a learned-λ trial stands at the key :func:`poolkit.lab.learn.learn_key` gives.
:func:`trials_frame` is what the report and the user read: one row per COMPLETE trial.
"""

from __future__ import annotations

import datetime
import math
import random
import time
import warnings
from typing import Any

__all__ = ["open_storage", "trials_frame", "fail_stale", "HEARTBEAT_S", "GRACE_S"]

#: Seconds between heartbeats of a running trial, and how long a silent one is trusted.
HEARTBEAT_S = 2
GRACE_S = 8


def open_storage(url: str) -> Any:
    """An Optuna RDB storage with heartbeats; SQLite waits for locks instead of failing."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 120}
    return _retry(
        lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
        )
    )


def _retry(make: Any, attempts: int = 6) -> Any:
    """Call ``make``; on a database integrity error (machines creating one schema or study at once) try again."""
    from sqlalchemy.exc import IntegrityError

    for i in range(attempts):
        try:
            return make()
        except IntegrityError:
            if i == attempts - 1:
                raise
            time.sleep(0.3 * (i + 1) + random.random() * 0.5)
    raise AssertionError("unreachable")


def _key(pool: str, lever: float, seed: int) -> tuple[str, float, int]:
    return (pool, round(float(lever), 6), int(seed))


def _trial_key(t: Any) -> tuple[str, float, int] | None:
    # A WAITING trial has no params yet: its grid point is in its user attributes.
    lever = t.params.get("lever", t.user_attrs.get("lever"))
    if "pool" not in t.user_attrs or lever is None:
        return None
    return _key(t.user_attrs["pool"], lever, t.user_attrs["seed"])


def fail_stale(study: Any) -> list[int]:
    """Fail the trials of ``study`` that a dead process left RUNNING; return their numbers.

    Optuna fails a RUNNING trial whose heartbeat went silent for ``GRACE_S``, but skips one with no
    heartbeat at all: a process killed between popping a queued trial and its first heartbeat leaves
    such a trial, and a resume would wait for it forever. Those are failed here too, once they have
    been RUNNING for longer than the grace period (a live trial records its first heartbeat at once).
    """
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    failed: list[int] = []
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return failed
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    now = datetime.datetime.now()  # Optuna stamps datetime_start with the local clock
    with _create_scoped_session(storage.scoped_session) as session:
        silent = [
            (int(t.trial_id), int(t.number))
            for t in session.query(models.TrialModel)
            .filter(models.TrialModel.state == TrialState.RUNNING, models.TrialModel.study_id == study._study_id)
            .all()
            if not t.heartbeats and t.datetime_start is not None
            and (now - t.datetime_start).total_seconds() > GRACE_S
        ]
    for trial_id, number in silent:
        if study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            failed.append(number)
    return failed


def _searched(params: dict[str, Any]) -> dict[str, Any]:
    """The knobs a search sampled (and whether λ was learned), as columns of the trials table."""
    from .search import KNOBS

    return {k: v for k, v in params.items() if k in KNOBS or k == "lever_mode"}


def trials_frame(storage: str, study_name: str) -> Any:
    """All COMPLETE trials of a study as a pandas DataFrame, one row per trial, read from the storage."""
    import optuna
    import pandas as pd
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError as err:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        raise ValueError(f"no study {study_name!r} in {storage}; studies there: {names}") from err
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if _trial_key(t) is None:
            continue
        # a learned trial has no λ parameter: its λ is the user attribute learned_lever
        row = {"trial": t.number, **t.user_attrs, **_searched(t.params),
               "lever": float(t.params.get("lever", math.nan))}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update({k: v for k, v in study.user_attrs.items() if isinstance(v, str)})
    frame.attrs["study_name"] = study_name
    return frame

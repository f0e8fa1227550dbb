"""Rare-event time series for the lab: a multivariate CSV with a binary label becomes Conv1D windows.

``load_csv`` turns a table of sensor readings (one row per time step, one column per
sensor, plus a 0/1 label column such as "a sheet break happened here") into lookback
windows ``(N, features, lookback)`` whose label is the label ``horizon`` steps after the
window's last row. The split is by time (the test part is the end of the series, never
shuffled in) and standardization is fitted on the training rows only, so nothing from the
future leaks into training.

``make_example_csv`` writes a synthetic file of that kind: a correlated multivariate
process with rare faults, each preceded by a precursor pattern at a random lead time, so
the cue sits anywhere inside the window and shift invariance is what helps.

Example:
    >>> import tempfile, pathlib
    >>> path = make_example_csv(pathlib.Path(tempfile.mkdtemp()) / "mill.csv", n_steps=2000)
    >>> ds = load_csv(path, lookback=32, horizon=1)
    >>> ds.X_train.shape[1:], ds.num_classes
    (torch.Size([6, 32]), 2)
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Dataset

__all__ = ["TIME_COLUMNS", "load_csv", "make_example_csv"]

#: column names taken as the time column when ``time_column`` is not given (case-insensitive)
TIME_COLUMNS = ("time", "timestamp", "date", "datetime")

_OPTIONS = (
    "label", "lookback", "horizon", "target", "step", "test_fraction", "time_column", "features", "standardize"
)
_TARGETS = ("at", "within")


def _as_int(name: str, value: Any, low: int) -> int:
    # Options may arrive as strings from the command line (--data-option lookback=64).
    try:
        out = int(value)
        if isinstance(value, float) and out != value:
            raise ValueError
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer >= {low}, got {value!r}") from None
    if out < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return out


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    elif isinstance(value, (bool, int)):
        return bool(value)
    raise TypeError(f"{name} must be a boolean (true/false), got {value!r}")


def _numeric_column(frame: Any, column: str) -> np.ndarray:
    import pandas as pd

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"column {column!r} has a non-numeric value {raw.iloc[row]!r} at data row {row + 1}; "
            "feature and label columns must be numbers (name other columns in time_column or leave them out "
            "with features=...)"
        )
    if values.isna().any():
        rows = np.flatnonzero(values.isna().to_numpy())
        raise ValueError(
            f"column {column!r} has {len(rows)} missing value(s), first at data row {int(rows[0]) + 1}; "
            "fill or drop them before loading"
        )
    return values.to_numpy(dtype=np.float64)


def _check_time(frame: Any, column: str) -> tuple[str, str]:
    import pandas as pd

    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        stamps = pd.Series(raw.to_numpy(dtype=np.float64))
    else:
        stamps = pd.to_datetime(raw, errors="coerce", format="mixed")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ValueError(f"time column {column!r} has an unreadable timestamp {raw.iloc[row]!r} at data row {row + 1}")
    order = stamps.to_numpy()
    back = np.flatnonzero(order[1:] <= order[:-1])
    if len(back):
        row = int(back[0]) + 1
        raise ValueError(
            f"timestamps out of order in column {column!r}: data row {row + 1} ({raw.iloc[row]!r}) does not come "
            f"after data row {row} ({raw.iloc[row - 1]!r}); sort the file by time (rows must be strictly increasing)"
        )
    return str(raw.iloc[0]), str(raw.iloc[-1])


def _windows(
    values: np.ndarray, labels: np.ndarray, lookback: int, horizon: int, step: int, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``values`` (T, F) ending at row t, labelled from rows after t (see ``load_csv``)."""
    last = np.arange(lookback - 1, len(values) - horizon, step)
    view = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)  # (T - L + 1, F, L), no copy
    x = np.ascontiguousarray(view[last - lookback + 1], dtype=np.float32)
    if target == "at" or horizon == 0:
        y = labels[last + horizon]
    else:  # any positive among rows t+1 .. t+horizon: a running count over the labels
        count = np.concatenate([[0.0], np.cumsum(labels)])
        y = (count[last + horizon + 1] - count[last + 1]) > 0
    return x, y.astype(np.int64)


def load_csv(path: str | Path, *, seed: int = 0, **options: Any) -> Dataset:
    """Load a multivariate time-series CSV with a binary label as lookback windows.

    Window ``i`` covers rows ``t - lookback + 1 .. t`` and, with ``target="at"``, is
    labelled with the label of row ``t + horizon``: ``horizon=0`` asks "is the last row an
    event", ``horizon=k`` asks "is there an event exactly ``k`` steps after what the model
    sees". With ``target="within"`` the label is 1 when any of rows ``t + 1 .. t + horizon``
    is an event (an early warning: "an event within the next ``horizon`` steps"). The first
    ``1 - test_fraction`` of the rows are the training part, the rest the test part;
    windows never straddle the split. Features are standardized with the mean and
    standard deviation of the training rows (constant columns get a scale of 1).

    Args:
        path: a CSV file with a header row.
        seed: accepted for the lab's loader signature; the split is by time, so loading
            is deterministic and the seed is unused.
        **options: any of
            ``label`` (str, default ``"label"``): the 0/1 label column;
            ``lookback`` (int, default 64): window length in rows;
            ``horizon`` (int >= 0, default 1): how many rows ahead the label is;
            ``target`` (``"at"`` or ``"within"``, default ``"at"``): label of row ``t + horizon``,
            or whether any of the next ``horizon`` rows is positive;
            ``step`` (int >= 1, default 1): rows between the ends of consecutive windows;
            ``test_fraction`` (float in (0, 1), default 0.3): share of rows, at the end, for testing;
            ``time_column`` (str or None): a timestamp column, checked to be strictly
            increasing and not used as a feature; by default the first column named one
            of :data:`TIME_COLUMNS` (case-insensitive), if any; ``"none"`` for no time column;
            ``features`` (comma-separated str or list, default all other columns): feature columns;
            ``standardize`` (bool, default True).
            Values may be strings (as from ``--data-option lookback=64``).

    Returns:
        A :class:`~poolkit.lab.data.Dataset` with ``num_classes=2``; ``info`` holds the
        column names, options, split row, the training mean/std, the time range and the
        number of positive windows in each part (``info["task"] == "binary"``).

    Shape:
        - X_train, X_test: float32 ``(N, F, lookback)`` with ``F`` features
        - y_train, y_test: int64 ``(N,)`` in ``{0, 1}``

    Raises:
        ValueError: missing file or column, non-numeric or missing values, labels other
            than 0/1, timestamps out of order, too few rows for one window per part, or no
            positive window in the training part.
        TypeError: an unknown option or an option of the wrong type.

    Example:
        >>> ds = load_csv("mill.csv", lookback=64, horizon=2, step=4)  # doctest: +SKIP
        >>> ds.X_train.shape  # doctest: +SKIP
        torch.Size([3180, 61, 64])
    """
    import pandas as pd

    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown csv option(s) {', '.join(unknown)}; accepted: {', '.join(_OPTIONS)}")
    label = str(options.get("label", "label"))
    lookback = _as_int("lookback", options.get("lookback", 64), 1)
    horizon = _as_int("horizon", options.get("horizon", 1), 0)
    step = _as_int("step", options.get("step", 1), 1)
    target = str(options.get("target", "at")).strip().lower()
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {', '.join(_TARGETS)}, got {options.get('target')!r}")
    try:
        test_fraction = float(options.get("test_fraction", 0.3))
    except (TypeError, ValueError):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {options.get('test_fraction')!r}") from None
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    standardize = _as_bool("standardize", options.get("standardize", True))

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"csv path {str(path)!r} is not a file")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {str(path)!r} as a CSV with a header row: {err}") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if label not in columns:
        raise ValueError(f"label column {label!r} not found in {path.name}; columns are: {', '.join(columns)}")

    time_column = options.get("time_column")
    if isinstance(time_column, str) and time_column.strip().lower() in ("", "none", "null"):
        time_column = None
    elif time_column is None:
        time_column = next((c for c in columns if c.strip().lower() in TIME_COLUMNS), None)
    elif time_column not in columns:
        raise ValueError(f"time_column {time_column!r} not found in {path.name}; columns are: {', '.join(columns)}")
    time_range = _check_time(frame, time_column) if time_column is not None else None

    features = options.get("features")
    if features is None:
        features = [c for c in columns if c not in (label, time_column)]
    else:
        if isinstance(features, str):
            features = [f.strip() for f in features.split(",") if f.strip()]
        features = [str(f) for f in features]
        missing = [f for f in features if f not in columns]
        if missing:
            raise ValueError(f"features {missing} not found in {path.name}; columns are: {', '.join(columns)}")
        if label in features or (time_column is not None and time_column in features):
            raise ValueError("features must not include the label or the time column")
    if not features:
        raise ValueError(f"{path.name} has no feature columns besides the label {label!r}")

    labels = _numeric_column(frame, label)
    odd = np.flatnonzero((labels != 0) & (labels != 1))
    if len(odd):
        raise ValueError(
            f"label column {label!r} must hold 0 or 1, got {float(labels[odd[0]]):g} at data row {int(odd[0]) + 1}"
        )
    values = np.stack([_numeric_column(frame, c) for c in features], axis=1)  # (T, F)

    rows = len(values)
    split = round(rows * (1.0 - test_fraction))
    need = lookback + horizon
    if split < need or rows - split < need:
        raise ValueError(
            f"{path.name} has {rows} rows: with test_fraction={test_fraction} the parts have {split} and "
            f"{rows - split} rows, but each needs at least lookback + horizon = {need}"
        )
    mean = values[:split].mean(axis=0) if standardize else np.zeros(values.shape[1])
    std = values[:split].std(axis=0) if standardize else np.ones(values.shape[1])
    std = np.where(std > 1e-12, std, 1.0)
    values = (values - mean) / std

    x_tr, y_tr = _windows(values[:split], labels[:split], lookback, horizon, step, target)
    x_te, y_te = _windows(values[split:], labels[split:], lookback, horizon, step, target)
    pos_tr, pos_te = int(y_tr.sum()), int(y_te.sum())
    if pos_tr == 0:
        raise ValueError(
            f"no positive window in the training part of {path.name} (rows 1-{split}, "
            f"{int(labels[:split].sum())} positive rows, horizon={horizon}): a rare-event model needs at least one; "
            "lower test_fraction or check the label column"
        )
    info: dict[str, Any] = {
        "task": "binary",
        "source": str(path),
        "label": label,
        "features": features,
        "time_column": time_column,
        "time_range": time_range,
        "lookback": lookback,
        "horizon": horizon,
        "target": target,
        "step": step,
        "test_fraction": test_fraction,
        "split_row": split,
        "rows": rows,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "positives_train": pos_tr,
        "positives_test": pos_te,
        "positive_rate_train": pos_tr / len(y_tr),
    }
    return Dataset(
        name=f"csv:{path.name}",
        X_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        X_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        num_classes=2,
        info=info,
    )


def _precursor(length: int) -> np.ndarray:
    # A short windowed oscillation: easy to see, invisible to a mean over the window.
    t = np.arange(length)
    return np.sin(2 * math.pi * t / (length / 2)) * np.hanning(length)


def make_example_csv(
    path: str | Path,
    *,
    n_steps: int = 10000,
    n_features: int = 6,
    fault_rate: float = 0.004,
    seed: int = 0,
    min_lead: int = 24,
    max_lead: int = 48,
    precursor_length: int = 12,
    downtime: int = 8,
) -> Path:
    """Write a synthetic rare-event CSV: a multivariate process with rare faults and their precursors.

    Each feature is an AR(1) process mixed with a shared slow drift (so the sensors are
    correlated). About ``fault_rate * n_steps`` rows are faults (label 1, all others 0),
    spread over the whole series, each followed by ``downtime`` rows of standstill. Each
    fault is preceded by a precursor burst on the first two features (opposite signs)
    that starts a random ``min_lead .. max_lead`` rows before it; decoy bursts of another
    shape appear at random with no fault after them. So the cue sits at a different place
    before every fault, and a window must be searched for it wherever it is: shift
    invariance is what helps.

    The cleanest task this file poses is the early warning ``load_csv(path, lookback=64,
    target="within", horizon=min_lead - precursor_length + 1)`` (13 with the defaults):
    every positive window then holds the whole precursor, at a position that varies.

    Columns: ``time`` (ISO timestamps two minutes apart), ``x1 .. x{n_features}``, ``label``.

    Args:
        path: file to write (parent folders are created).
        n_steps: number of rows (>= 10 * max_lead).
        n_features: number of sensor columns (>= 2).
        fault_rate: share of rows that are faults, in (0, 0.1]; faults are kept at least
            ``max_lead`` rows apart, which caps their number.
        seed: random seed; the same seed writes the same file.
        min_lead: the smallest distance, in rows, from a precursor's start to its fault
            (> precursor_length).
        max_lead: the largest such distance (>= min_lead).
        precursor_length: length of a precursor burst in rows (>= 4).
        downtime: rows after each fault during which the machine stands still (every
            sensor at a low level), as after a sheet break; 0 for none.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> p = make_example_csv(pathlib.Path(tempfile.mkdtemp()) / "faults.csv", n_steps=1000, seed=1)
        >>> p.read_text().splitlines()[0]
        'time,x1,x2,x3,x4,x5,x6,label'
    """
    n_steps = _as_int("n_steps", n_steps, 1)
    n_features = _as_int("n_features", n_features, 2)
    precursor_length = _as_int("precursor_length", precursor_length, 4)
    min_lead = _as_int("min_lead", min_lead, 1)
    max_lead = _as_int("max_lead", max_lead, 1)
    downtime = _as_int("downtime", downtime, 0)
    if min_lead <= precursor_length:
        raise ValueError(f"min_lead must be > precursor_length ({precursor_length}), got {min_lead}")
    if max_lead < min_lead:
        raise ValueError(f"max_lead must be >= min_lead ({min_lead}), got {max_lead}")
    if n_steps < 10 * max_lead:
        raise ValueError(f"n_steps must be >= 10 * max_lead = {10 * max_lead}, got {n_steps}")
    if not 0.0 < float(fault_rate) <= 0.1:
        raise ValueError(f"fault_rate must be in (0, 0.1], got {fault_rate!r}")
    rng = np.random.default_rng(seed)

    # Correlated background: AR(1) noise per sensor plus a shared slow drift with per-sensor gains.
    noise = rng.normal(0.0, 0.5, size=(n_steps, n_features))
    ar = np.empty_like(noise)
    ar[0] = noise[0]
    for t in range(1, n_steps):
        ar[t] = 0.8 * ar[t - 1] + noise[t]
    drift = np.cumsum(rng.normal(0.0, 0.05, n_steps))
    drift = drift - np.convolve(drift, np.ones(200) / 200, mode="same")  # keep it bounded
    values = ar + np.outer(drift, rng.uniform(0.5, 1.5, n_features)) + rng.normal(0.0, 1.0, n_features) * 3

    # One fault per slot, slots spread evenly, so that no two precursors overlap.
    n_faults = max(2, round(n_steps * float(fault_rate)))
    slots = np.linspace(2 * max_lead, n_steps - 1, n_faults + 1).astype(int)
    labels = np.zeros(n_steps, dtype=np.int64)
    burst = _precursor(precursor_length)
    off = values.mean(0) - 3.0 * values.std(0)
    for a, b in itertools.pairwise(slots):
        lo, hi = a + max_lead, b
        if hi <= lo:
            continue
        fault = int(rng.integers(lo, hi))
        labels[fault] = 1
        start = fault - int(rng.integers(min_lead, max_lead + 1))
        values[start : start + precursor_length, 0] += 2.5 * burst
        values[start : start + precursor_length, 1] -= 2.5 * burst
        # The break itself: the machine stops for a few rows and every sensor falls to a low level.
        stop = slice(fault, min(fault + downtime, n_steps))
        values[stop] = values[stop] * 0.1 + off
    # Decoys: a one-signed bump of the same length on the same sensors, no fault after it.
    decoy = np.hanning(precursor_length)
    for start in rng.integers(0, n_steps - precursor_length, size=n_faults):
        values[start : start + precursor_length, 0] += 2.5 * decoy
        values[start : start + precursor_length, 1] += 2.5 * decoy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(n_steps) * np.timedelta64(2, "m")
    header = ",".join(["time", *(f"x{i + 1}" for i in range(n_features)), "label"])
    with path.open("w") as fh:
        fh.write(header + "\n")
        for t in range(n_steps):
            fh.write(
                f"{np.datetime_as_string(stamps[t])},{','.join(f'{v:.5f}' for v in values[t])},{labels[t]}\n"
            )
    return path


if __name__ == "__main__":  # python -m poolkit.lab.timeseries [PATH]: write the example file
    import sys

    print(make_example_csv(sys.argv[1] if len(sys.argv) > 1 else "faults.csv"))

"""One study across machines: two ``poolkit study`` workers share a PostgreSQL storage.

Needs a server: ``.ci/postgres.sh`` starts one on loopback and exports
``POOLKIT_TEST_POSTGRES_URL``; when it cannot, it exports
``POOLKIT_TEST_POSTGRES_SKIP`` with the reason, and this test skips with it.
Locally::

    eval "$(bash .ci/postgres.sh)"
    .venv/bin/python -m pytest tests/lab/test_postgres.py -q
    bash .ci/postgres.sh stop
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

URL = os.environ.get("POOLKIT_TEST_POSTGRES_URL")
# Two worker processes and a report: several trainings of a few steps each.
pytestmark = pytest.mark.slow

POOLS, LEVERS, SEEDS = ("max", "avg"), (0.0, 0.5, 1.0), 1


def _skip_reason() -> str | None:
    if not URL:
        why = os.environ.get("POOLKIT_TEST_POSTGRES_SKIP") or "POOLKIT_TEST_POSTGRES_URL is not set"
        return f"no PostgreSQL server for the many-machines test: {why} (start one: eval \"$(bash .ci/postgres.sh)\")"
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        return "no PostgreSQL driver: pip install 'psycopg[binary]' psycopg2-binary"
    return None


def _poolkit(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "poolkit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, what: str, timeout: float = 600) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout} s:\n{out}")
    assert proc.returncode == 0, f"{what} failed with exit code {proc.returncode}:\n{out}"
    return out


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import optuna
    from optuna.trial import TrialState

    from poolkit.lab.study import StudyConfig, grid_points
    from poolkit.lab.timeseries import make_example_csv

    csv = make_example_csv(tmp_path / "faults.csv", n_steps=2000, fault_rate=0.01, seed=0)
    name = f"poolkit-test-{uuid.uuid4().hex[:10]}"
    common = [
        "study", "--dataset", f"csv:{csv}", "--data-option", "lookback=64", "--data-option", "target=within",
        "--data-option", "horizon=13", "--pools", ",".join(POOLS), "--levers", ",".join(map(str, LEVERS)),
        "--seeds", str(SEEDS), "--steps", "5", "--channels", "8", "--storage", URL, "--study-name", name,
        "--no-report",
    ]
    try:
        # Two machines: two independent processes, each its own --out, started together on one study.
        workers = [_poolkit(*common, "--out", str(tmp_path / f"worker{i}"), cwd=tmp_path) for i in range(2)]
        outputs = [_finish(w, f"worker {i}") for i, w in enumerate(workers)]
        assert all(f"study {name!r} done" in out for out in outputs), outputs

        study = optuna.load_study(study_name=name, storage=URL)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        keys = sorted((t.user_attrs["pool"], round(t.params["lever"], 6), t.user_attrs["seed"]) for t in done)
        config = StudyConfig(dataset=f"csv:{csv}", pools=POOLS, levers=list(LEVERS), seeds=SEEDS)
        expected = sorted((p, round(v, 6), s) for p, v, s in grid_points(config))
        assert len(expected) == 1 + len(POOLS) * 2  # lever 0 has no pooling: one point per seed
        assert keys == expected, f"every grid point must run exactly once; got {keys}"
        left = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        assert not left, f"trials left behind: {[(t.number, t.state.name) for t in left]}"

        # The report reads every trial back from PostgreSQL.
        report = _finish(_poolkit("report", name, "--storage", URL, "--out", str(tmp_path / "report"), cwd=tmp_path),
                         "report")
        assert (tmp_path / "report" / "index.html").is_file(), report
        csvs = sorted((tmp_path / "report").glob("*.csv"))
        assert csvs, f"no CSV in the report: {sorted(p.name for p in (tmp_path / 'report').iterdir())}"
        import pandas as pd

        table = max((pd.read_csv(p) for p in csvs), key=len)
        assert len(table) == len(expected)
    finally:
        try:
            optuna.delete_study(study_name=name, storage=URL)
        except KeyError:
            pass

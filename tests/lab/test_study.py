import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from poolkit.lab.study import StudyConfig, default_study_name, grid_points, run_study, trials_frame
from poolkit.lab.train import TrainConfig

OPTS = {"test_size": 20}


def _cfg(**kw):
    base = dict(dataset="digits-shift", pools=["max", "avg"], levers=[0, 1], seeds=1, train_size=40,
                data_options=OPTS, train=TrainConfig(steps=2, channels=4))
    base.update(kw)
    return StudyConfig(**base)


def _complete_keys(url, name):
    study = optuna.load_study(study_name=name, storage=url)
    return [
        (t.user_attrs["pool"], t.params["lever"], t.user_attrs["seed"])
        for t in study.get_trials(states=(TrialState.COMPLETE,))
    ]


def test_grid_has_one_no_pool_point_per_seed():
    pts = grid_points(_cfg(levers=[0, 0.5, 1], seeds=2))
    assert sorted(pts) == sorted(
        [("none", 0.0, 0), ("none", 0.0, 1)] + [(p, lv, s) for p in ("max", "avg") for lv in (0.5, 1.0) for s in (0, 1)]
    )


def test_default_study_name():
    assert default_study_name("mnist1d", "zeros") == "mnist1d-zeros"
    assert default_study_name("npz:/data/my set.npz", "circular") == "npz-my_set.npz-circular"


def test_study_stores_everything_and_resumes(tmp_path):
    url, name = run_study(_cfg(), out=tmp_path)
    assert url == f"sqlite:///{(tmp_path / 'poolkit.db').resolve()}" and name == "digits-shift-zeros"
    keys = _complete_keys(url, name)
    assert sorted(keys) == sorted(grid_points(_cfg()))
    frame = trials_frame(url, name)
    assert {"test_acc", "head_invariance", "head_params", "wall_s"} <= set(frame.columns)
    # Rerun: nothing runs twice. A grown grid runs only the new points.
    run_study(_cfg(), out=tmp_path)
    assert len(_complete_keys(url, name)) == 3
    run_study(_cfg(seeds=2), out=tmp_path)
    keys = _complete_keys(url, name)
    assert len(keys) == len(set(keys)) == 6


def test_a_point_queued_twice_completes_once(tmp_path):
    # What two machines queueing the same missing point at once would leave behind.
    cfg = _cfg(levers=[1], pools=["max"])
    url, name = run_study(cfg, out=tmp_path)
    study = optuna.load_study(study_name=name, storage=url)
    study.enqueue_trial({"lever": 1.0}, user_attrs={"pool": "max", "seed": 0, "lever": 1.0})
    run_study(cfg, out=tmp_path)
    assert _complete_keys(url, name) == [("max", 1.0, 0)]
    dup = study.get_trials(states=(TrialState.FAIL,))
    assert len(dup) == 1 and dup[0].user_attrs["duplicate_of_grid_point"]


def test_changed_config_is_refused(tmp_path):
    run_study(_cfg(levers=[1], pools=["max"]), out=tmp_path)
    with pytest.raises(ValueError, match="different dataset or training config"):
        run_study(_cfg(levers=[1], pools=["max"], train=TrainConfig(steps=3, channels=4)), out=tmp_path)


def test_bad_study_config_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown pool"):
        _cfg(pools=["nosuch"])
    with pytest.raises(ValueError, match="lever"):
        _cfg(levers=[2])
    with pytest.raises(ValueError, match="unknown dataset"):
        run_study(_cfg(dataset="nosuch"), out=tmp_path)
    with pytest.raises(ValueError, match="workers"):
        run_study(_cfg(), out=tmp_path, workers=0)


ACCEPTED_LEVERS = (r"must be a list of numbers in \[0, 1\].*one number, a comma-separated string of numbers "
                   r"\('0,0.5,1'\), or 'learn'")


def test_levers_conveniences_and_refusals_name_the_argument():
    assert _cfg(levers="1, 0,0.5").levers == [0.0, 0.5, 1.0]
    assert _cfg(levers=0.5).levers == [0.5]
    assert _cfg(levers=1).levers == [1.0]
    assert _cfg(levers=(1, 0, 1)).levers == [0.0, 1.0]
    for bad, shown in [("lern", "got 'lern'"), ("0,x", "got '0,x'"), ([0, "x"], "bad value 'x'"),
                       ([0, 2], "bad value 2"), (None, "got NoneType None"), (True, "got bool True")]:
        with pytest.raises(ValueError, match="^levers " + ACCEPTED_LEVERS) as err:
            _cfg(levers=bad)
        assert shown in str(err.value)


def test_learn_levers_string_goes_to_the_learned_mode():
    # the learned-λ mode reads these strings itself: its candidates stand in for the grid's levers
    cfg = _cfg(levers="learn:heads=3")
    assert cfg.learn is not None and cfg.learn.heads == 3 and cfg.levers == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="accepted"):
        _cfg(levers="learn:steps=3")


def test_pool_spec_with_a_window_is_refused_naming_pools():
    assert _cfg(pools=["lp:p=4"]).pools == ["lp:p=4"]  # the statistic's own parameters are fine
    for spec, key in [("max:kernel_size=3", "kernel_size=3"), ("avg:stride=2", "stride=2"),
                      ("lp:p=2,output_size=4", "output_size=4")]:
        with pytest.raises(ValueError, match=r"^pools: " + repr(spec) + " sets " + key + r", but in a study the "
                           r"lever λ decides every pooling window") as err:
            _cfg(pools=[spec])
        assert "but the call passes" not in str(err.value)
    with pytest.raises(ValueError, match=r"^pools: 'max:foo=1' is refused: pool 'max' got unknown parameter"):
        _cfg(pools=["max:foo=1"])


def test_tpe_search_over_continuous_lever(tmp_path):
    url, name = run_study(_cfg(n_trials=3), out=tmp_path, study_name="search")
    frame = trials_frame(url, name)
    assert len(frame) == 3 and frame["lever"].between(0, 1).all()


@pytest.mark.slow
def test_two_workers_share_one_storage(tmp_path):
    cfg = _cfg(levers=[0, 0.5, 1], seeds=2)
    url, name = run_study(cfg, out=tmp_path, workers=2)
    keys = _complete_keys(url, name)
    assert sorted(keys) == sorted(grid_points(cfg))


@pytest.mark.slow
def test_sigkill_mid_study_then_rerun_completes_each_point_once(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "poolkit", "study", "--dataset", "digits-shift", "--pools", "max,avg",
           "--levers", "0,1", "--seeds", "2", "--steps", "60", "--channels", "4", "--train-size", "60",
           "--data-option", "test_size=30", "--out", str(out), "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url, name = f"sqlite:///{(out / 'poolkit.db').resolve()}", "digits-shift-zeros"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            done = len(_complete_keys(url, name))
        except Exception:  # database or study not created yet
            continue
        if done >= 1:
            break
    assert proc.poll() is None, f"study ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    assert done >= 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name=name, storage=url)
    states = [t.state for t in study.get_trials()]
    complete_before = states.count(TrialState.COMPLETE)
    assert complete_before < 6, "kill came too late to test resuming"
    killed_running = states.count(TrialState.RUNNING)
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    keys = _complete_keys(url, name)
    assert len(keys) == len(set(keys)) == 6
    assert sorted(keys) == sorted(grid_points(StudyConfig(pools=["max", "avg"], levers=[0, 1], seeds=2)))
    study = optuna.load_study(study_name=name, storage=url)
    # The trial killed while running was failed (stale heartbeat) and its point rerun.
    assert [t.state for t in study.get_trials()].count(TrialState.FAIL) == killed_running
    assert not [t for t in study.get_trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_csv_rare_event_study_records_binary_metrics(tmp_path):
    from poolkit.lab.timeseries import make_example_csv

    path = tmp_path / "plant.csv"
    make_example_csv(path, n_steps=3000, seed=0)
    cfg = StudyConfig(f"csv:{path}", pools=["max"], levers=[0.5], seeds=1, data_options={"lookback": 32},
                      train=TrainConfig(steps=5, channels=4))
    url, name = run_study(cfg, out=tmp_path)
    assert name == "csv-plant.csv-zeros"
    frame = trials_frame(url, name)
    assert {"recall", "precision", "f1", "fpr", "pr_auc"} <= set(frame.columns)


def test_a_trial_popped_twice_is_recorded_once(tmp_path, monkeypatch):
    """SQLite can hand one queued trial to two workers: the loser's refused tell must not stop the study."""
    real = optuna.Study.optimize
    calls = {"n": 0}

    def optimize_with_one_lost_race(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # as if another worker had recorded this trial first
            raise ValueError("Cannot tell a COMPLETE trial.")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "optimize", optimize_with_one_lost_race)
    cfg = _cfg(levers=[0, 1], seeds=1)
    url, name = run_study(cfg, out=tmp_path)
    assert sorted(_complete_keys(url, name)) == sorted(grid_points(cfg))

    monkeypatch.setattr(optuna.Study, "optimize", lambda self, *a, **k: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"):
        run_study(_cfg(levers=[0, 0.5], seeds=1), out=tmp_path / "b")


def test_a_trial_left_running_without_any_heartbeat_is_failed_and_rerun(tmp_path):
    """A process killed between popping a queued trial and its first heartbeat leaves a RUNNING trial that
    Optuna's stale check skips; resuming must fail it (after the grace period) instead of waiting forever."""
    import poolkit.lab.study as S

    cfg = StudyConfig("digits-shift", pools=["max"], levers=[0, 1], seeds=1, train_size=40,
                      data_options={"test_size": 20}, train=TrainConfig(steps=2, channels=4))
    url = f"sqlite:///{(tmp_path / 'poolkit.db').resolve()}"
    name = "stuck"
    plain = optuna.storages.RDBStorage(url)  # no heartbeat thread: ask() leaves a silent RUNNING trial
    study = optuna.create_study(study_name=name, storage=plain, direction="maximize")
    study.enqueue_trial({"lever": 1.0}, user_attrs={"pool": "max", "seed": 0, "lever": 1.0})
    stuck = study.ask()
    assert study.get_trials()[0].state == TrialState.RUNNING
    fresh = optuna.load_study(study_name=name, storage=S.open_storage(url))
    assert S.fail_stale(fresh) == []  # younger than the grace period: trusted
    # the resume runs the other point, waits out the grace period, fails the silent trial and reruns its point
    worker = threading.Thread(target=run_study, args=(cfg,), kwargs=dict(storage=url, study_name=name), daemon=True)
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), "the resume waited for a trial that no process runs"
    assert stuck.number == 0
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    assert sorted(t.user_attrs["lever"] for t in trials if t.state == TrialState.COMPLETE) == [0.0, 1.0]


def test_a_trial_with_a_live_heartbeat_is_not_failed(tmp_path, monkeypatch):
    import poolkit.lab.storage as storage_mod
    import poolkit.lab.study as S

    url = f"sqlite:///{(tmp_path / 'poolkit.db').resolve()}"
    storage = S.open_storage(url)
    study = optuna.create_study(study_name="live", storage=storage, direction="maximize")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    monkeypatch.setattr(storage_mod, "GRACE_S", 0)
    assert S.fail_stale(study) == []  # its heartbeat is what decides (Optuna's check, grace 8 s)
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_pools_string_keeps_each_specs_parameters():
    from poolkit.lab.study import StudyConfig

    cfg = StudyConfig("mnist1d", pools="max, mixed:alpha=0.3,learnable=true,lp:p=4")
    assert cfg.pools == ["max", "mixed:alpha=0.3,learnable=true", "lp:p=4"]

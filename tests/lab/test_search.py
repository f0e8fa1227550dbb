"""The architecture search (``--sampler tpe --search-space``): honest selection, retraining, the command."""

from __future__ import annotations

import json
import math
import shlex

import optuna
import pytest
import torch

from poolkit.lab import study as study_mod
from poolkit.lab.data import load_dataset
from poolkit.lab.search import (
    FOLDS,
    HOLDOUT,
    KNOBS,
    best_command,
    fold_mean,
    holdout_split,
    parse_search_space,
    retrain_best,
)
from poolkit.lab.study import StudyConfig, run_study, trials_frame
from poolkit.lab.train import TrainConfig

OPTS = {"test_size": 20}
SPACE = "channels=3..5,steps=2..4,kernel_size=3|5,learn"


def test_parse_search_space_groups_ranges_and_choices():
    space = parse_search_space("arch,weight_decay=0..0.01,padding=circular")
    assert list(space.knobs) == ["channels", "blocks", "kernel_size", "lr", "steps", "weight_decay", "padding"]
    assert space.knobs["weight_decay"].low == 0 and not space.knobs["weight_decay"].log  # no log scale from 0
    assert space.knobs["padding"].choices == ("circular",) and not space.learn
    assert set(parse_search_space("all").knobs) == set(KNOBS)
    again = parse_search_space(space.describe())
    assert again == space  # describe() writes what parse reads
    assert parse_search_space("learn").knobs == {} and parse_search_space(None) is None


@pytest.mark.parametrize("text,match", [
    ("chanels", "unknown knob 'chanels'; accepted: channels"),
    ("channels=8", "neither a range"),
    ("channels=64..16", "low end above"),
    ("channels=a..b", "channels takes integers"),
    ("kernel_size=3|4", "odd positive"),
    ("padding=reflect", "padding accepts zeros|circular"),
    ("lr=0..0.1", "lr takes positive"),
    ("channels,channels=8..16", "given twice"),
    (" , ", "names no knob"),
    ("", "non-empty"),
])
def test_parse_search_space_refusals_name_the_knob(text, match):
    with pytest.raises(ValueError, match=match):
        parse_search_space(text)


def test_holdout_split_folds_are_stratified_disjoint_and_cover_the_training_set():
    ds = load_dataset("digits-shift", train_size=100, **OPTS)
    held_all = []
    for fold in range(FOLDS):
        fit, xh, yh = holdout_split(ds, fold)
        assert len(fit.y_train) + len(yh) == 100 and fit.X_test is ds.X_test
        for c in torch.unique(ds.y_train):  # each class deals about 1/5 of its samples to every fold
            n = int((ds.y_train == c).sum())
            assert n // FOLDS <= int((yh == c).sum()) <= -(-n // FOLDS)
        # the fold's samples are out of the fitting part
        fit_rows = {tuple(r.tolist()) for r in fit.X_train.flatten(1)}
        assert not any(tuple(r.tolist()) in fit_rows for r in xh.flatten(1))
        held_all.append(xh.flatten(1))
        again = holdout_split(ds, fold)
        assert torch.equal(again[1], xh) and torch.equal(again[2], yh)  # one partition, shared by every trial
    rows = torch.cat(held_all)
    distinct = torch.unique(ds.X_train.flatten(1), dim=0).shape[0]
    assert len(rows) == 100 and torch.unique(rows, dim=0).shape[0] == distinct
    assert len(holdout_split(ds)[2]) == pytest.approx(HOLDOUT * 100, abs=ds.num_classes)
    with pytest.raises(ValueError, match="fold must be an int in"):
        holdout_split(ds, 5)
    with pytest.raises(ValueError, match="folds must be"):
        holdout_split(ds, 0, folds=1)


def test_fold_mean_weighs_the_held_out_scores_by_fold_size():
    m = fold_mean([{"val_acc": 1.0, "test_acc": 0.9, "lever_trajectory": [0.5, 0.6], "val_pr_auc": math.nan},
                   {"val_acc": 0.0, "test_acc": 0.7, "lever_trajectory": [0.5], "val_pr_auc": 0.4}], [3, 1])
    assert m["val_acc"] == 0.75 and m["test_acc"] == pytest.approx(0.8) and m["folds"] == 2
    assert m["lever_trajectory"] == [0.5, 0.6] and m["val_pr_auc"] == 0.4  # NaN folds are left out


def test_study_config_refusals():
    with pytest.raises(ValueError, match="n_trials"):
        StudyConfig("digits-shift", search_space="arch")
    with pytest.raises(ValueError, match="channels.*reference network"):
        StudyConfig("digits-shift", n_trials=2, search_space="channels,lr", model="tests/lab/user_models.py:cnn2d")
    with pytest.raises(ValueError, match="learn"):
        StudyConfig("digits-shift", n_trials=2, search_space="learn", model="tests/lab/user_models.py:cnn2d")
    with pytest.raises(ValueError, match="search_folds must be an int from 1 to 5"):
        StudyConfig("digits-shift", n_trials=2, search_space="lr", search_folds=6)
    with pytest.raises(ValueError, match="give search_space"):
        StudyConfig("digits-shift", n_trials=2, search_folds=2)


def test_a_cross_validated_search_trains_one_model_per_fold(tmp_path, monkeypatch):
    seen = []
    real = study_mod.run_trial

    def spy(ds, *a, holdout=None, **k):
        seen.append((len(ds.y_train), holdout[0][:1].clone()))
        return real(ds, *a, holdout=holdout, **k)

    monkeypatch.setattr(study_mod, "run_trial", spy)
    cfg = StudyConfig("digits-shift", pools=["max"], seeds=1, train_size=50, data_options=OPTS,
                      train=TrainConfig(steps=2, channels=3, batch_size=16), n_trials=1, search_space="lr",
                      search_folds=3)
    url, name = run_study(cfg, out=tmp_path)
    (t,) = optuna.load_study(study_name=name, storage=url).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(seen) == 3 and t.user_attrs["folds"] == 3
    assert not torch.equal(seen[0][1], seen[1][1]) and not torch.equal(seen[1][1], seen[2][1])  # other folds
    assert t.value == t.user_attrs["val_acc"]
    assert json.loads(optuna.load_study(study_name=name, storage=url).user_attrs["identity"])["search_folds"] == 3


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny search on digits-shift; records the training-set size every trial saw."""
    out = tmp_path_factory.mktemp("search")
    seen: list[tuple[int, int]] = []
    real_trial, real_learned = study_mod.run_trial, None
    from poolkit.lab import learn as learn_mod

    real_learned = learn_mod.run_learned_trial

    def spy_trial(ds, *a, holdout=None, **k):
        seen.append((len(ds.y_train), len(holdout[1])))
        return real_trial(ds, *a, holdout=holdout, **k)

    def spy_learned(ds, *a, holdout=None, **k):
        seen.append((len(ds.y_train), len(holdout[1])))
        return real_learned(ds, *a, holdout=holdout, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(study_mod, "run_trial", spy_trial)
    mp.setattr(learn_mod, "run_learned_trial", spy_learned)
    cfg = StudyConfig("digits-shift", pools=["max", "avg"], seeds=1, train_size=60, data_options=OPTS,
                      train=TrainConfig(steps=3, channels=4, batch_size=16), n_trials=6, search_space=SPACE)
    try:
        url, name = run_study(cfg, out=out)
    finally:
        mp.undo()
    return out, url, name, seen


def test_search_samples_the_knobs_and_scores_on_the_held_out_part(searched):
    _, url, name, seen = searched
    study = optuna.load_study(study_name=name, storage=url)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 6 and len(seen) == 6
    # 10 classes of 6 dealt to 5 folds: fold 0 holds 2 of each; the rest trains
    assert all(fit == 40 and held == 20 for fit, held in seen)
    first = min(done, key=lambda t: t.number)  # the search starts from the base configuration at λ = 1
    assert first.params == {"channels": 4, "steps": 3, "kernel_size": 3, "lever_mode": "fixed", "lever": 1.0,
                            "pool": "max"}
    modes = set()
    for t in done:
        assert 3 <= t.params["channels"] <= 5 and 2 <= t.params["steps"] <= 4 and t.params["kernel_size"] in (3, 5)
        assert t.value == t.user_attrs["val_acc"]  # the search's value is the held-out accuracy
        assert 0.0 <= t.user_attrs["test_acc"] <= 1.0  # recorded, not used
        modes.add(t.params["lever_mode"])
        if t.params["lever_mode"] == "learn":
            assert "lever" not in t.params and 0.0 <= t.user_attrs["learned_lever"] <= 1.0
    assert modes == {"fixed", "learn"}  # both branches ran (the sampler is seeded)
    assert json.loads(study.user_attrs["identity"])["search_space"] == parse_search_space(SPACE).describe()
    frame = trials_frame(url, name)
    assert {"channels", "steps", "kernel_size", "lever_mode", "val_acc"} <= set(frame.columns)
    assert len(frame) == 6


def _report_text(url, name, out):
    from poolkit.lab.report import write_report

    path = write_report(name, url, out)
    return (path / "summary.md").read_text(), (path / "index.html").read_text()


def test_report_of_a_search_names_the_held_out_choice(searched, tmp_path):
    _, url, name, _ = searched
    study = optuna.load_study(study_name=name, storage=url)
    if "best_retrained" in study.user_attrs:
        pytest.skip("the module's search was already retrained")
    best = max(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: (t.value, -t.number))
    md, html = _report_text(url, name, tmp_path)
    assert f"The best, trial {best.number} (" in md and "held-out accuracy" in md
    assert "has not been retrained yet" in md and "How sure" not in html  # no per-seed claims on one seed each
    assert "The search's best configurations" in html
    assert "★" not in html and "no row is starred" in html and "best row starred" not in md  # chosen held-out
    table = md.split("The search's best configurations, by held-out score:", 1)[1]
    assert table.splitlines()[4].startswith(f"| {best.number} | ")  # ranked by the held-out score


def test_a_search_stars_each_learned_trial_apart(searched, tmp_path):
    from poolkit.lab.report_stats import _learned

    _, url, name, _ = searched
    frame = trials_frame(url, name)
    learned = frame[frame["learned_lever"].notna()] if "learned_lever" in frame.columns else frame.iloc[:0]
    if len(learned) < 2:
        pytest.skip("the tiny search sampled fewer than two learned trials")
    per = _learned(frame, per_trial=True)
    assert len(per) == len(learned) and per["learned_lever_std"].isna().all()  # one star each, no mean
    assert sorted(per["learned_lever_mean"]) == pytest.approx(sorted(learned["learned_lever"]))
    assert len(_learned(frame)) == learned["pool"].nunique()  # a grid's summary averages per statistic
    _md, html = _report_text(url, name, tmp_path)
    assert "the λ each learned trial chose" in html and "mean ± std over seeds)." not in html


def test_retrain_best_and_its_command_reproduce(searched, tmp_path):
    _out, url, name, _ = searched
    best = retrain_best(url, name, seeds=2)
    study = optuna.load_study(study_name=name, storage=url)
    t = max(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: (t.value, -t.number))
    assert best["trial"] == t.number and best["val_score"] == t.value
    assert best["params"]["channels"] == t.params["channels"] and best["params"]["pool"] == t.user_attrs["pool"]
    assert best["study"] == f"{name}-best-t{t.number}"
    frame = trials_frame(url, best["study"])
    assert sorted(frame["seed"]) == [0, 1] and best["test_acc"] == [float(a) for a in frame["test_acc"]]
    # retrained on the whole training set, with the searched knobs
    ident = json.loads(optuna.load_study(study_name=best["study"], storage=url).user_attrs["identity"])
    assert ident["train"]["channels"] == t.params["channels"] and ident["train"]["steps"] == t.params["steps"]
    assert ident["train_size"] == 60 and "search_space" not in ident
    assert json.loads(study.user_attrs["best_retrained"])["test_acc"] == best["test_acc"]
    md, _ = _report_text(url, name, tmp_path / "report")
    mean = 100 * sum(best["test_acc"]) / 2
    assert f"with 2 fresh seeds it reaches {mean:.1f} ± " in md and best["command"] in md
    # the printed command, run elsewhere, gives the same test accuracies
    from typer.testing import CliRunner

    from poolkit.cli import app

    args = shlex.split(best["command"])
    assert args[:2] == ["poolkit", "study"] and "#" not in best["command"]
    res = CliRunner().invoke(app, [*args[1:], "--out", str(tmp_path), "--no-report"])
    assert res.exit_code == 0, res.output
    again = trials_frame(f"sqlite:///{(tmp_path / 'poolkit.db').resolve()}", best["study"])
    assert [float(a) for a in again.sort_values("seed")["test_acc"]] == best["test_acc"]
    assert json.loads(optuna.load_study(study_name=best["study"], storage=f"sqlite:///{tmp_path}/poolkit.db")
                      .user_attrs["identity"]) == ident


def test_retrain_best_refuses_a_study_that_is_not_a_search(tmp_path):
    cfg = StudyConfig("digits-shift", pools=["max"], levers=[1.0], seeds=1, train_size=40, data_options=OPTS,
                      train=TrainConfig(steps=2, channels=4))
    url, name = run_study(cfg, out=tmp_path)
    with pytest.raises(ValueError, match="not a search"):
        retrain_best(url, name)
    with pytest.raises(ValueError, match="seeds"):
        retrain_best(url, name, seeds=0)


def test_best_command_names_what_the_command_line_cannot_take():
    cfg = StudyConfig("digits-shift", pools=["max"], levers=[0.5], seeds=3,
                      train=TrainConfig(steps=7, lr=0.0123456789, class_weight="balanced"))
    cmd = best_command(cfg, "x-best")
    assert "--lr 0.0123456789" in cmd and "--levers 0.5 " in cmd and "--seeds 3" in cmd
    assert cmd.endswith("# also class_weight='balanced': not command-line options, set them in StudyConfig")
    assert "--lr-schedule" not in cmd
    cosine = best_command(StudyConfig("mnist1d", pools=["max"], levers=[1.0], train=TrainConfig(lr_schedule="cosine")),
                          "y-best")
    assert "--lr-schedule cosine" in cosine


def test_cli_search_refusals(tmp_path):
    from typer.testing import CliRunner

    from poolkit.cli import app

    base = ["study", "--dataset", "digits-shift", "--out", str(tmp_path), "--no-report"]
    res = CliRunner().invoke(app, [*base, "--search-space", "arch"])
    assert res.exit_code != 0 and "n_trials" in res.output
    res = CliRunner().invoke(app, [*base, "--sampler", "tpe", "--n-trials", "2", "--search-space", "depth"])
    assert res.exit_code != 0 and "unknown knob 'depth'" in res.output
    res = CliRunner().invoke(app, [*base, "--folds", "3"])
    assert res.exit_code != 0 and "--folds scores the configurations of a search: give --search-space" in res.output
    res = CliRunner().invoke(app, [*base, "--lr-schedule", "step"])
    assert res.exit_code != 0 and "lr_schedule must be one of ('constant', 'cosine'), got 'step'" in res.output


def test_search_space_groups_keep_a_range_given_directly_and_word_choices_parse():
    for text in ("channels=16..64,arch", "arch,channels=16..64"):
        assert parse_search_space(text).knobs["channels"].text() == "16..64", text
    space = parse_search_space("all")
    assert parse_search_space(space.describe()).describe() == space.describe()  # the stored form reads back
    assert parse_search_space("lr_schedule=cosine").knobs["lr_schedule"].choices == ("cosine",)
    with pytest.raises(ValueError, match=r"lr_schedule accepts constant\|cosine, got \['step'\]"):
        parse_search_space("lr_schedule=constant|step")
    with pytest.raises(ValueError, match="kernel_size takes choices 'a|b', not a range"):
        parse_search_space("kernel_size=3..7")
    with pytest.raises(ValueError, match="lr is given twice"):
        parse_search_space("lr,lr=0.001..0.01")


def test_start_params_cast_by_the_knob_kind():
    params = parse_search_space("lr,channels").start_params(TrainConfig(lr=1, channels=300), "max", 5)
    assert params["lr"] == 0.03 and isinstance(params["lr"], float) and params["channels"] == 128


def test_norm_is_a_search_knob_and_reaches_the_best_command():
    space = parse_search_space("norm")
    assert space.knobs["norm"].choices == ("none", "batch") and "norm" in parse_search_space("all").knobs
    with pytest.raises(ValueError, match=r"norm accepts none\|batch, got \['layer'\]"):
        parse_search_space("norm=none|layer")
    cmd = best_command(StudyConfig("mnist1d", pools=["max"], levers=[1.0], train=TrainConfig(norm="batch")), "z")
    assert "--norm batch" in cmd and "--norm" not in best_command(StudyConfig("mnist1d", levers=[1.0]), "z")
    with pytest.raises(ValueError, match="norm shape the lab's reference network"):
        StudyConfig("digits-shift", n_trials=2, search_space="norm,lr", model="tests/lab/user_models.py:cnn2d")

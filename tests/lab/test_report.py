import pandas as pd
import pytest

from poolkit.lab.report import best_setting, finding, summarize, write_report
from poolkit.lab.study import StudyConfig, run_study
from poolkit.lab.train import TrainConfig


def _frame():
    rows = []
    for seed in (0, 1):
        rows.append(dict(pool="none", lever=0.0, seed=seed, test_acc=0.60 + 0.01 * seed, train_acc=1.0))
        rows.append(dict(pool="max", lever=0.5, seed=seed, test_acc=0.80 + 0.01 * seed, train_acc=1.0))
        rows.append(dict(pool="max", lever=1.0, seed=seed, test_acc=0.50 + 0.01 * seed, train_acc=0.9))
        rows.append(dict(pool="avg", lever=1.0, seed=seed, test_acc=0.55 + 0.01 * seed, train_acc=0.9))
    return pd.DataFrame(rows)


def test_summary_and_best_setting_margins():
    s = summarize(_frame())
    assert set(s["n"]) == {2}
    b = best_setting(s)
    assert (b["pool"], b["lever"]) == ("max", 0.5)
    assert b["margin_over_0"] == pytest.approx(0.20)
    assert b["margin_over_1"] == pytest.approx(0.30)  # against the same statistic at λ = 1
    text = finding(s, {"dataset": "digits-where", "padding": "circular"})
    assert "digits-where" in text and "λ = 0.5" in text and "costs 30.0 points" in text and "20.0 points" in text


def test_finding_when_invariance_wins():
    f = _frame()
    f.loc[f["lever"] == 1.0, "test_acc"] = 0.95
    text = finding(summarize(f), {"dataset": "digits-shift", "padding": "zeros"})
    assert "λ = 1" in text and "Full invariance (global pooling) is the best" in text


def test_write_report_reads_back_from_storage(tmp_path):
    cfg = StudyConfig("digits-shift", pools=["max", "avg"], levers=[0, 0.5, 1], seeds=2, train_size=40,
                      data_options={"test_size": 20}, train=TrainConfig(steps=3, channels=4))
    url, name = run_study(cfg, out=tmp_path)
    out = write_report(name, url, tmp_path / "rep")
    for f in ("index.html", "summary.md", "trials.csv", "summary.csv", "test_acc.png", "gap.png",
              "shifted_acc.png", "invariance.png", "heatmap.png"):
        assert (out / f).stat().st_size > 0, f
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 10 and set(trials["pool"]) == {"none", "max", "avg"}
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "Finding:" in page and "digits-shift" in page
    assert "src=\"test_acc.png\"" not in page  # self-contained
    md = (out / "summary.md").read_text()
    assert "| max | 0.5 | 2 |" in md


def test_report_of_missing_study_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match="no study 'nope'"):
        write_report("nope", url, tmp_path / "r")


def test_binary_studies_are_ranked_by_pr_auc_not_accuracy():
    """On rare events the all-negative model has the best accuracy; the finding must rank by PR-AUC."""
    f = _frame()
    f["pr_auc"] = 0.5
    f.loc[f["pool"] == "none", "test_acc"] = 0.99  # predicts "no event" everywhere
    f.loc[f["pool"] == "none", "pr_auc"] = 0.1
    f.loc[(f["pool"] == "avg") & (f["lever"] == 1.0), "pr_auc"] = 0.8
    s = summarize(f)
    b = best_setting(s)
    assert (b["metric"], b["pool"], b["lever"]) == ("pr_auc", "avg", 1.0)
    assert "PR-AUC" in finding(s, {"dataset": "csv:faults.csv", "padding": "zeros"})

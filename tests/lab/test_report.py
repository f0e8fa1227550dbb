import json
import math
import re
from html import unescape

import numpy as np
import optuna
import pandas as pd
import pytest

from poolkit.lab.report import (
    _safe_url,
    best_setting,
    comparisons,
    finding,
    format_cell,
    paired_difference,
    summarize,
    write_report,
)
from poolkit.lab.study import StudyConfig, run_study
from poolkit.lab.train import TrainConfig

# ----------------------------------------------------------------------------- studies written straight to storage


def _metrics(acc: float, lever: float, rng: np.random.Generator, compute: bool) -> dict:
    """Plausible per-trial attributes: what run_trial stores, plus compute when asked."""
    positions = round(40 ** (1 - lever))
    m = {
        "train_acc": min(1.0, acc + 0.2), "test_acc": acc, "gap": min(1.0, acc + 0.2) - acc,
        "shifted_acc": acc - 0.1 * (1 - lever), "consistency_circular": 0.5 + 0.45 * lever,
        "consistency_crop": 0.6 + 0.35 * lever, "head_invariance": 1.2 * (1 - lever) + 0.01 * rng.random(),
        "head_params": float(320 * positions + 10), "params": float(5000 + 320 * positions),
        "head_positions": float(positions), "max_shift": 5.0, "wall_s": 2.0 + rng.random(),
    }
    if compute:
        m.update({"flops_per_sample": 1.2e6 + 2e4 * positions, "pool_flops_per_sample": 4e3 * (lever > 0),
                  "forward_ms_per_sample": 0.05 + 0.001 * positions})
        m["pool_flops_share"] = m["pool_flops_per_sample"] / m["flops_per_sample"]
    return m


def _trial(lever: float, value: float, attrs: dict, fixed: bool = True, pool_param: str | None = None):
    """A COMPLETE trial as run_study stores it: λ as the parameter, everything else as user attributes.

    Grid trials carry ``fixed_params`` (Optuna's mark of an enqueued trial); sampled ones do not.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    params, dists = {"lever": lever}, {"lever": FloatDistribution(0.0, 1.0)}
    if pool_param is not None:
        params["pool"], dists["pool"] = pool_param, CategoricalDistribution(["max", "avg"])
    return optuna.trial.create_trial(value=value, params=params, distributions=dists, user_attrs=attrs,
                                     system_attrs={"fixed_params": {"lever": lever}} if fixed else None)


def make_study(path, name="synthetic", *, accs=None, seeds=3, compute=True, learned=True, attrs=True,
               spread=0.004):
    """A grid study, optionally with learned-lever trials, written straight to SQLite; returns the URL.

    ``accs`` maps (pool, λ) to the mean test accuracy; each seed adds ``seed * spread`` plus a little noise.
    Learned-lever trials start at λ = 0.5 and carry ``learned_lever`` and ``lever_trajectory``.
    """
    url = f"sqlite:///{path / (name + '.db')}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    if attrs:
        for k, v in {"dataset": "digits-where", "padding": "circular", "model": "tests/nets.py:small",
                     "device": "cpu", "identity": json.dumps({"dataset": "digits-where"})}.items():
            study.set_user_attr(k, v)
    accs = {("none", 0.0): 0.52, ("max", 0.5): 0.84, ("max", 0.75): 0.887, ("max", 1.0): 0.45,
            ("avg", 0.5): 0.80, ("avg", 0.75): 0.85, ("avg", 1.0): 0.44} if accs is None else accs
    rng = np.random.default_rng(0)
    trials = []
    for (pool, lever), acc in accs.items():
        for seed in range(seeds):
            a = acc + seed * spread + 0.001 * rng.random()
            m = {"pool": pool, "seed": seed, "lever": lever, **_metrics(a, lever, rng, compute)}
            trials.append(_trial(lever, a, m))
    if learned:
        for seed in range(seeds):
            lam = 0.62 + 0.02 * seed
            a = 0.88 + 0.002 * seed
            m = {"pool": "max", "seed": seed, "lever": 0.5, **_metrics(a, lam, rng, compute), "learned_lever": lam,
                 "lever_trajectory": [0.5 + (lam - 0.5) * (i / 19) ** 0.5 for i in range(20)]}
            trials.append(_trial(0.5, a, m))
    study.add_trials(trials)
    return url


def make_search_study(path, name="search", n=12):
    """A TPE-like study: λ and the statistic sampled, one seed per trial (no fixed parameters)."""
    url = f"sqlite:///{path / (name + '.db')}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("dataset", "mnist1d")
    study.set_user_attr("padding", "zeros")
    rng = np.random.default_rng(1)
    trials = []
    for _ in range(n):
        lever = float(rng.random())
        pool = str(rng.choice(["max", "avg"]))
        acc = 0.6 + 0.3 * lever + 0.02 * rng.random()
        m = {"pool": pool, "seed": 0, **_metrics(acc, lever, rng, False)}
        trials.append(_trial(lever, acc, m, fixed=False, pool_param=pool))
    study.add_trials(trials)
    return url


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One report of a study with every optional attribute (compute, learned lever, model, device)."""
    d = tmp_path_factory.mktemp("full")
    url = make_study(d)
    return write_report("synthetic", url, d / "rep"), url


def _frame():
    rows = []
    for seed in (0, 1):
        rows.append(dict(pool="none", lever=0.0, seed=seed, test_acc=0.60 + 0.01 * seed, train_acc=1.0))
        rows.append(dict(pool="max", lever=0.5, seed=seed, test_acc=0.80 + 0.01 * seed, train_acc=1.0))
        rows.append(dict(pool="max", lever=1.0, seed=seed, test_acc=0.50 + 0.01 * seed, train_acc=0.9))
        rows.append(dict(pool="avg", lever=1.0, seed=seed, test_acc=0.55 + 0.01 * seed, train_acc=0.9))
    return pd.DataFrame(rows)


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# ----------------------------------------------------------------------------- numbers and words


def test_summary_and_best_setting_margins():
    s = summarize(_frame())
    assert set(s["n"]) == {2}
    b = best_setting(s)
    assert (b["pool"], b["lever"]) == ("max", 0.5)
    assert b["margin_over_0"] == pytest.approx(0.20)
    assert b["margin_over_1"] == pytest.approx(0.30)  # against the same statistic at λ = 1
    assert b["runner_up"] == ("none", 0.0)
    text = finding(s, {"dataset": "digits-where", "padding": "circular"})
    assert "digits-where" in text and "λ = 0.5" in text and "costs 30.0 points" in text and "20.0 points" in text


def test_one_seed_has_no_spread():
    f = _frame()
    s = summarize(f[f["seed"] == 0])
    assert s["test_acc_std"].isna().all()  # not a fake 0.0
    assert format_cell(s["test_acc_mean"][0], s["test_acc_std"][0], "pct") == "60.0"


def test_format_cell_units():
    assert format_cell(0.9553, 0.0161, "pct") == "95.5 ± 1.6"
    assert format_cell(0.307, 0.046, "pts") == "30.7 ± 4.6"
    assert format_cell(12810.0, 0.0, "int") == "12,810"
    assert format_cell(12810.0, math.nan, "int") == "12,810"
    assert format_cell(2.5e6, kind="si") == "2.5 M" and format_cell(1.234e9, 1e7, "si") == "1.23 G ± 10 M"
    assert format_cell(0.1654, 0.0021, "ratio") == "0.165 ± 0.002"
    assert format_cell(0.05612, 0.00031, "ms") == "0.0561 ± 0.0003" and format_cell(12.34, 0.5, "ms") == "12.3 ± 0.5"
    assert format_cell(math.nan, 0.1, "pct") == "–"


def test_paired_difference_interval_and_sign_test():
    rows = []
    for seed in range(5):
        rows.append(dict(pool="max", lever=0.75, seed=seed, test_acc=0.88 + 0.01 * seed))
        rows.append(dict(pool="avg", lever=0.75, seed=seed, test_acc=0.85 + 0.01 * seed + 0.002 * (seed % 2)))
        rows.append(dict(pool="lp", lever=0.75, seed=seed, test_acc=0.88 + 0.01 * seed + (0.01 if seed % 2 else
                                                                                            -0.012)))
    f = pd.DataFrame(rows)
    d = paired_difference(f, "test_acc", ("max", 0.75), ("avg", 0.75))
    assert d["n"] == 5 and d["wins"] == 5 and d["clear"]
    assert d["lo"] > 0 and d["lo"] < d["mean"] < d["hi"]
    assert d["sign_p"] == pytest.approx(2 * 0.5**5)
    # a setting that wins on some seeds and loses on others: the interval covers zero
    e = paired_difference(f, "test_acc", ("lp", 0.75), ("max", 0.75))
    assert e["wins"] == 2 and e["losses"] == 3 and e["lo"] < 0 < e["hi"] and not e["clear"]
    # only the seeds both settings ran are paired
    g = paired_difference(f[~((f["pool"] == "avg") & (f["seed"] >= 3))], "test_acc", ("max", 0.75), ("avg", 0.75))
    assert g["n"] == 3


def test_finding_says_no_clear_winner_when_the_spread_covers_the_margin():
    rows = []
    for seed, (a, b) in enumerate([(0.90, 0.86), (0.84, 0.88), (0.91, 0.89)]):  # a leads by 0.7 points on average
        rows += [dict(pool="max", lever=0.75, seed=seed, test_acc=a), dict(pool="avg", lever=0.75, seed=seed,
                                                                          test_acc=b),
                 dict(pool="none", lever=0.0, seed=seed, test_acc=0.5)]
    f = pd.DataFrame(rows)
    s = summarize(f)
    text = finding(s, {"dataset": "digits-where", "padding": "circular"}, f)
    assert "no clear winner" in text and "max at λ = 0.75" in text and "avg at λ = 0.75" in text
    assert "95 % interval" in text and "the best setting is" not in text
    # with a margin the seeds agree on, the best is named and the runner-up margin is stated
    f.loc[f["pool"] == "avg", "test_acc"] -= 0.10
    text = finding(summarize(f), {"dataset": "digits-where", "padding": "circular"}, f)
    assert "the best setting is λ = 0.75 with max" in text and "ahead of the runner-up, avg at λ = 0.75" in text
    assert "no clear winner" not in text


def test_comparisons_cover_lambda_0_lambda_1_and_the_runner_up():
    f = _frame()
    comps = comparisons(f, summarize(f))
    roles = {c["role"]: c for c in comps}
    assert set(roles) == {"λ = 0, runner-up", "λ = 1"}  # no pooling is also the runner-up here
    assert roles["λ = 1"]["other"] == ("max", 1.0) and roles["λ = 1"]["margin"] == pytest.approx(0.30)
    assert roles["λ = 1"]["n"] == 2 and roles["λ = 1"]["wins"] == 2


def test_finding_when_invariance_wins():
    f = _frame()
    f.loc[f["lever"] == 1.0, "test_acc"] = 0.95
    f.loc[(f["lever"] == 1.0) & (f["pool"] == "max"), "test_acc"] += 0.01
    text = finding(summarize(f), {"dataset": "digits-shift", "padding": "zeros"})
    assert "λ = 1" in text and "Full invariance (global pooling) is the best" in text


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


def test_storage_password_is_not_printed():
    assert "s3cret" not in _safe_url("postgresql://poolkit:s3cret@db.example/poolkit")
    assert _safe_url("sqlite:///poolkit-out/poolkit.db") == "sqlite:///poolkit-out/poolkit.db"


# ----------------------------------------------------------------------------- the report folder


def test_full_report_with_compute_and_learned_lever(full_report):
    out, _ = full_report
    for f in ("index.html", "summary.md", "trials.csv", "summary.csv", "learned.csv", "lever.png", "pareto.png",
              "compute.png", "heatmap.png", "trajectory.png"):
        assert (out / f).stat().st_size > 0, f
    assert not (out / "history.png").exists()  # a grid, not a search
    page = (out / "index.html").read_text()
    text = _text(page)
    # the learned λ is kept apart from the grid and stated beside the grid's best
    assert "The network chose λ = 0.64 ± 0.02 with max (3 seeds" in text
    assert "the grid's best is λ = 0.75 (max, 89.1 %)" in text
    assert "the best setting is λ = 0.75 with max" in text  # 4 points ahead of avg on every seed: clear
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 7 and set(summary["n"]) == {3}  # learned trials are not a grid point
    # study attributes and compute columns shown; counts as integers; accuracies in %, mean ± std in one cell
    for s in ("model: tests/nets.py:small", "device: cpu", "FLOPs / sample", "pool share %", "ms / sample",
              "head positions", "12,810", "1.22 M", "89.1 ± 0.4", "The learned lever", "learned λ"):
        assert s in text, s
    assert "12810.0" not in page and "0.887" not in text
    assert page.count('class="best"') == 2 and "★" in page  # one row in each summary table
    assert '<details id="trials">' in page and "21 + 3" not in page
    assert "0.50 → 0.64 (20 points)" in text  # the trajectory, summarized in the trials table
    assert "optuna-dashboard sqlite:///" in text
    assert '<details id="config">' in page and "dataset digits-where" in text  # the stored study identity
    assert page.count("data:image/png;base64,") == 5 and 'src="lever.png"' not in page
    md = (out / "summary.md").read_text()
    assert "**Finding:** On digits-where" in md and "| **max** ★ | 0.75 | 3 | 89.1 ± 0.4 |" in md
    assert "| λ = 1 | max at λ = 1 |" in md


def test_optuna_reads_the_optional_attributes_back(full_report):
    """What the report shows comes from user attributes that Optuna's API (and optuna-dashboard) reads too."""
    out, url = full_report
    study = optuna.load_study(study_name="synthetic", storage=url)
    assert study.user_attrs["model"] == "tests/nets.py:small" and study.user_attrs["device"] == "cpu"
    trials = pd.read_csv(out / "trials.csv")
    by_number = {t.number: t for t in study.trials}
    learned = [t for t in study.trials if "learned_lever" in t.user_attrs]
    assert len(learned) == 3 and all(len(t.user_attrs["lever_trajectory"]) == 20 for t in learned)
    for _, row in trials.iterrows():
        attrs = by_number[int(row["trial"])].user_attrs
        for col in ("flops_per_sample", "pool_flops_share", "forward_ms_per_sample", "head_positions", "test_acc"):
            assert attrs[col] == pytest.approx(row[col]), col


def test_report_without_optional_attributes_omits_them(tmp_path):
    url = make_study(tmp_path, "plain", compute=False, learned=False, attrs=False, seeds=2)
    out = write_report("plain", url, tmp_path / "rep")
    page = (out / "index.html").read_text()
    text = _text(page)
    for s in ("FLOPs", "pool share", "ms / sample", "learned", "model:", "device:", "trajectory", "None", "nan"):
        assert s not in text, s
    assert not (out / "trajectory.png").exists() and not (out / "learned.csv").exists()
    assert "head positions" in text and "Finding:" in text


def test_stale_figures_are_removed(tmp_path):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "trajectory.png").write_bytes(b"from an earlier report")
    url = make_study(tmp_path, "plain", accs={("none", 0.0): 0.5, ("max", 1.0): 0.9}, learned=False, seeds=2)
    write_report("plain", url, rep)
    assert not (rep / "trajectory.png").exists() and (rep / "lever.png").exists()


def test_search_study_shows_its_history(tmp_path):
    url = make_search_study(tmp_path)
    out = write_report("search", url, tmp_path / "rep")
    assert (out / "history.png").stat().st_size > 0 and not (out / "heatmap.png").exists()
    text = _text((out / "index.html").read_text())
    assert "Search history" in text and "mode: search" in text
    assert "one seed: unknown" in text and "the margin cannot be checked against the seeds' spread" in text


def test_learned_lever_only_study(tmp_path):
    url = make_study(tmp_path, "learned", accs={}, seeds=2)
    out = write_report("learned", url, tmp_path / "rep")
    text = _text((out / "index.html").read_text())
    assert "the network chose λ = 0.63 ± 0.01 with max" in text and "no grid to compare with" in text
    assert (out / "lever.png").exists() and (out / "trajectory.png").exists()


def test_page_escapes_stored_text(tmp_path):
    url = make_study(tmp_path, "x", accs={("none", 0.0): 0.5, ("max", 1.0): 0.9}, learned=False, seeds=1)
    st = optuna.load_study(study_name="x", storage=url)
    st.set_user_attr("dataset", "<script>alert(1)</script>")
    page = (write_report("x", url, tmp_path / "rep") / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_write_report_reads_back_from_storage(tmp_path):
    cfg = StudyConfig("digits-shift", pools=["max", "avg"], levers=[0, 0.5, 1], seeds=2, train_size=40,
                      data_options={"test_size": 20}, train=TrainConfig(steps=3, channels=4))
    url, name = run_study(cfg, out=tmp_path)
    out = write_report(name, url, tmp_path / "rep")
    for f in ("index.html", "summary.md", "trials.csv", "summary.csv", "lever.png", "pareto.png", "compute.png",
              "heatmap.png"):
        assert (out / f).stat().st_size > 0, f
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 10 and set(trials["pool"]) == {"none", "max", "avg"}
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "Finding:" in page and "digits-shift" in page
    assert "src=\"lever.png\"" not in page  # self-contained
    md = (out / "summary.md").read_text()
    assert re.search(r"\| (\*\*max\*\* ★|max) \| 0\.5 \| 2 \|", md)

    # Optuna's own API (and so optuna-dashboard) reads every trial and every attribute back
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs["dataset"] == "digits-shift"
    done = {t.number: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert set(done) == set(trials["trial"])
    for _, row in trials.iterrows():
        t = done[int(row["trial"])]
        assert t.params["lever"] == pytest.approx(row["lever"]) and t.value is not None
        for col in trials.columns:
            if col in ("trial", "lever"):
                continue
            assert col in t.user_attrs, col
            v = t.user_attrs[col]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                assert pd.isna(row[col]), col
            elif isinstance(v, str):
                assert row[col] == v, col
            else:
                assert float(row[col]) == pytest.approx(float(v)), col


def test_report_of_missing_study_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match="no study 'nope'"):
        write_report("nope", url, tmp_path / "r")

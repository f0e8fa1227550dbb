"""Numbers and words of a report: summaries over seeds, paired differences, the finding.

The per-(statistic, λ) summary (:func:`summarize`), the ranking metric and the best setting, per-seed
paired differences with a 95 % t-interval and a sign test (:func:`paired_difference`,
:func:`comparisons`), and the finding's wording (:func:`finding`). :mod:`poolkit.lab.report`
re-exports the public names; the figures are in :mod:`poolkit.lab.report_figures`.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "summarize",
    "best_setting",
    "finding",
    "ranking_metric",
    "paired_difference",
    "comparisons",
]


#: (column, label, kind). kind: pct (fraction shown in %), pts (difference of fractions, in points),
#: ratio (3 decimals), int, si (k/M/G), ms, s, lever.
_METRICS = [
    ("test_acc", "test accuracy", "pct"),
    ("train_acc", "train accuracy", "pct"),
    ("gap", "generalization gap (train - test)", "pts"),
    ("shifted_acc", "accuracy on shifted test inputs", "pct"),
    ("consistency_circular", "consistency, circular shifts", "pct"),
    ("consistency_crop", "consistency, crops", "pct"),
    ("head_invariance", "head-input change under circular shifts (0 = invariant)", "ratio"),
    ("recall", "recall", "pct"),
    ("precision", "precision", "pct"),
    ("f1", "F1", "pct"),
    ("fpr", "false-positive rate", "pct"),
    ("pr_auc", "PR-AUC", "ratio"),
    ("learned_lever", "learned λ", "lever"),
    ("head_positions", "positions the head sees", "int"),
    ("head_params", "head parameters", "int"),
    ("params", "model parameters", "int"),
    ("flops_per_sample", "forward FLOPs per sample", "si"),
    ("pool_flops_per_sample", "pooling FLOPs per sample", "si"),
    ("pool_flops_share", "pooling's share of the FLOPs", "pct"),
    ("forward_ms_per_sample", "forward time per sample (ms)", "ms"),
    ("wall_s", "wall time per trial (s)", "s"),
]
_KIND = {m: k for m, _, k in _METRICS}
_LABEL = {m: lab for m, lab, _ in _METRICS}


# ----------------------------------------------------------------------------- numbers


def _num(frame: Any, col: str) -> Any:
    import pandas as pd

    return pd.to_numeric(frame[col], errors="coerce")


def _fraction_share(values: Any) -> Any:
    # pool_flops_share is a fraction; a study that stored percent (values above 1) is read as such.
    return values / 100.0 if values.max(skipna=True) > 1.0 else values


def summarize(frame: Any) -> Any:
    """Mean, std and count per (pool, lever) of every measured value present.

    Args:
        frame: trials, one row each, with ``pool``, ``lever`` and measured columns (as from
            :func:`poolkit.lab.storage.trials_frame`).

    Returns:
        DataFrame with ``pool``, ``lever``, ``<metric>_mean``, ``<metric>_std`` (NaN for one seed) and ``n``,
        sorted by λ then statistic.

    Example:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"pool": ["max", "max"], "lever": [0.5, 0.5], "seed": [0, 1],
        ...                   "test_acc": [0.8, 0.9]})
        >>> s = summarize(f)
        >>> round(float(s["test_acc_mean"][0]), 2), int(s["n"][0])
        (0.85, 2)
    """
    frame = frame.copy()
    cols = []
    for m, _, _ in _METRICS:
        if m in frame.columns:
            frame[m] = _num(frame, m)
            if frame[m].notna().any():
                cols.append(m)
    if "pool_flops_share" in cols:
        frame["pool_flops_share"] = _fraction_share(frame["pool_flops_share"])
    g = frame.groupby(["pool", "lever"])[cols]
    mean, std, n = g.mean(), g.std(ddof=1), g.size()
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    out["n"] = n
    return out.reset_index().sort_values(["lever", "pool"]).reset_index(drop=True)


def _curves(summary: Any) -> dict[str, Any]:
    """Per statistic, its rows plus the shared λ = 0 ("none") row, sorted by λ."""
    import pandas as pd

    none = summary[summary["pool"] == "none"]
    pools = [p for p in summary["pool"].unique() if p != "none"] or ["none"]
    return {
        p: pd.concat([none, summary[summary["pool"] == p]]).drop_duplicates().sort_values("lever") for p in pools
    }


def ranking_metric(summary: Any) -> tuple[str, str]:
    """The metric that ranks settings: PR-AUC on binary (rare-event) data, else test accuracy.

    On rare events accuracy is no guide: always predicting the majority class scores high.
    """
    if "pr_auc_mean" in summary and summary["pr_auc_mean"].notna().any():
        return "pr_auc", "PR-AUC"
    return "test_acc", "test accuracy"


def _ranked(summary: Any) -> Any:
    col = f"{ranking_metric(summary)[0]}_mean"
    return summary[summary[col].notna()].sort_values(col, ascending=False, kind="stable")


def best_setting(summary: Any) -> dict[str, Any]:
    """Best (pool, λ) by the ranking metric (mean over seeds), and its margins over λ = 0 and over λ = 1.

    ``metric``/``label`` name the metric; ``score``/``score_std`` are its mean and spread
    at the best setting (``test_acc``/``test_acc_std`` too when the metric is test accuracy);
    ``runner_up`` is the second-best ``(pool, λ)`` or None.
    """
    metric, label = ranking_metric(summary)
    col = f"{metric}_mean"
    ranked = _ranked(summary)
    best = ranked.iloc[0]
    res: dict[str, Any] = {"pool": best["pool"], "lever": float(best["lever"]), "metric": metric, "label": label,
                           "score": float(best[col]), "score_std": float(best[f"{metric}_std"]),
                           "n": int(best["n"])}
    if metric == "test_acc":
        res["test_acc"], res["test_acc_std"] = res["score"], res["score_std"]
    at0 = summary[summary["lever"] == 0.0]
    res["at_0"] = float(at0[col].max()) if len(at0) else math.nan
    res["at_0_pool"] = str(at0.loc[at0[col].idxmax(), "pool"]) if len(at0) and at0[col].notna().any() else None
    at1 = summary[summary["lever"] == 1.0]
    same = at1[at1["pool"] == best["pool"]]
    pick = same if len(same) else at1
    res["at_1"] = float(pick[col].max()) if len(pick) else math.nan
    res["at_1_pool"] = str(pick.loc[pick[col].idxmax(), "pool"]) if len(pick) and pick[col].notna().any() else None
    res["margin_over_0"] = res["score"] - res["at_0"]
    res["margin_over_1"] = res["score"] - res["at_1"]
    res["runner_up"] = (str(ranked.iloc[1]["pool"]), float(ranked.iloc[1]["lever"])) if len(ranked) > 1 else None
    return res


def paired_difference(frame: Any, metric: str, a: tuple[str, float], b: tuple[str, float]) -> dict[str, Any]:
    """Per-seed paired differences ``a - b`` of ``metric`` over the seeds both settings ran.

    Args:
        frame: trials with ``pool``, ``lever``, ``seed`` and ``metric``.
        metric: the column compared.
        a: ``(pool, λ)`` of the first setting.
        b: ``(pool, λ)`` of the second setting.

    Returns:
        dict with ``n`` (paired seeds), ``diffs``, ``mean``, ``lo``/``hi`` (95 % t-interval of the mean
        difference, NaN for fewer than 2 seeds), ``wins``/``losses`` (seeds where ``a`` is ahead / behind),
        ``sign_p`` (two-sided sign test), and ``clear`` (True when the interval lies above zero).

    Example:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"pool": ["max"] * 3 + ["avg"] * 3, "lever": [1.0] * 6, "seed": [0, 1, 2] * 2,
        ...                   "test_acc": [0.90, 0.92, 0.91, 0.80, 0.83, 0.81]})
        >>> d = paired_difference(f, "test_acc", ("max", 1.0), ("avg", 1.0))
        >>> d["n"], d["wins"], round(d["mean"], 3), d["clear"]
        (3, 3, 0.097, True)
    """
    import numpy as np

    def per_seed(setting: tuple[str, float]) -> Any:
        rows = frame[(frame["pool"] == setting[0]) & np.isclose(frame["lever"].astype(float), setting[1])]
        return _num(rows, metric).groupby(rows["seed"]).mean().dropna()

    sa, sb = per_seed(a), per_seed(b)
    common = sorted(set(sa.index) & set(sb.index))
    d = np.array([sa[s] - sb[s] for s in common], dtype=float)
    n = len(d)
    res: dict[str, Any] = {"n": n, "diffs": d.tolist(), "mean": float(d.mean()) if n else math.nan,
                           "lo": math.nan, "hi": math.nan, "wins": int((d > 0).sum()),
                           "losses": int((d < 0).sum()), "sign_p": math.nan, "clear": False}
    if n >= 2:
        from scipy import stats

        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        res["lo"], res["hi"] = res["mean"] - half, res["mean"] + half
        res["clear"] = bool(res["lo"] > 0)
    if res["wins"] + res["losses"]:
        from scipy import stats

        res["sign_p"] = float(stats.binomtest(res["wins"], res["wins"] + res["losses"], 0.5).pvalue)
    return res


def comparisons(frame: Any, summary: Any) -> list[dict[str, Any]]:
    """The best setting against λ = 0, λ = 1 and the runner-up, each with :func:`paired_difference`.

    Each entry has ``role`` (``"λ = 0"``, ``"λ = 1"``, ``"runner-up"``, or several joined when one setting
    plays more than one), ``other`` (``(pool, λ)``), ``margin`` (difference of the means) and the paired
    statistics.
    """
    b = best_setting(summary)
    metric = b["metric"]
    col = f"{metric}_mean"
    best = (b["pool"], b["lever"])
    others: dict[tuple[str, float], list[str]] = {}
    if b["at_0_pool"] is not None and b["lever"] != 0.0:
        others.setdefault((b["at_0_pool"], 0.0), []).append("λ = 0")
    if b["at_1_pool"] is not None and b["lever"] != 1.0:
        others.setdefault((b["at_1_pool"], 1.0), []).append("λ = 1")
    if b["runner_up"] is not None:
        others.setdefault(b["runner_up"], []).append("runner-up")
    out = []
    for other, roles in others.items():
        row = summary[(summary["pool"] == other[0]) & (summary["lever"] == other[1])]
        margin = b["score"] - float(row[col].iloc[0]) if len(row) else math.nan
        out.append({"role": ", ".join(roles), "other": other, "margin": margin,
                    **paired_difference(frame, metric, best, other)})
    return out


# ----------------------------------------------------------------------------- wording


def _pts(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def _signed(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:+.1f}"


def _setting(pool: str, lever: float) -> str:
    return "no pooling (λ = 0)" if pool == "none" else f"{pool} at λ = {lever:g}"


def _interval(c: dict[str, Any]) -> str:
    if c["n"] < 2:
        return f"{c['n']} paired seed{'s' if c['n'] != 1 else ''}: no interval"
    return (f"95 % interval [{_signed(c['lo'])}, {_signed(c['hi'])}] over {c['n']} seeds, "
            f"ahead on {c['wins']} of {c['n']}")


def _against(c: dict[str, Any] | None) -> str:
    """The uncertainty clause after a margin: its interval, and whether it is beyond the seeds' spread."""
    if c is None:
        return ""
    if c["n"] < 2:
        return f" ({_interval(c)})"
    return f" ({_interval(c)})" if c["clear"] else f", within the seeds' spread ({_interval(c)})"


def _learned(frame: Any, per_trial: bool = False) -> Any:
    """Per statistic, the learned λ and the accuracies of the learned-lever trials (or None).

    ``per_trial=True`` keeps one row per trial (std NaN): a search's learned trials each have an
    architecture of their own, so their mean would mix networks.
    """
    if frame is None or "learned_lever" not in frame.columns:
        return None
    rows = frame[_num(frame, "learned_lever").notna()]
    if rows.empty:
        return None
    # group by statistic only (the starting λ is not what was chosen), or by trial
    rows = rows.assign(lever=range(len(rows)) if per_trial else 0.0)
    s = summarize(rows)
    return s.drop(columns=["lever"])


def finding(summary: Any, attrs: dict[str, Any], frame: Any = None, learned: Any = None) -> str:
    """The finding in words, with its uncertainty when the per-seed trials are given.

    Args:
        summary: :func:`summarize` of the grid trials (may be empty when only learned-lever trials exist).
        attrs: study attributes (``dataset``, ``padding``, ``model``, ``device``).
        frame: the grid trials; with them the margins are checked against the seeds (paired differences).
        learned: per-statistic summary of learned-lever trials (``learned_lever_mean``, ...), or None.

    Returns:
        One paragraph, e.g. ``"On digits-where (circular padding) the best setting is λ = 0.75 with max ..."``.
    """
    ds = attrs.get("dataset", attrs.get("study_name", "this dataset"))
    pad = attrs.get("padding", "?")
    where = f"On {ds} ({pad} padding{', model ' + str(attrs['model']) if attrs.get('model') else ''})"
    text = ""
    have_grid = summary is not None and len(summary) and summary[f"{ranking_metric(summary)[0]}_mean"].notna().any()
    if have_grid:
        b = best_setting(summary)
        comps = {c["role"]: c for c in comparisons(frame, summary)} if frame is not None else {}
        runner = next((c for r, c in comps.items() if "runner-up" in r), None)
        sd = f" ± {_pts(b['score_std'])}" if not math.isnan(b["score_std"]) else ""
        score = f"{_pts(b['score'])}{sd} % {b['label']}"
        if runner is not None and not runner["clear"]:
            o = runner["other"]
            if abs(runner["margin"]) < 1e-9:
                text += (f"{where} there is no clear winner: {_setting(b['pool'], b['lever'])} and "
                         f"{_setting(*o)} tie at {score}. ")
            elif runner["n"] >= 2:
                text += (f"{where} there is no clear winner: {_setting(b['pool'], b['lever'])} ({score}) leads "
                         f"{_setting(*o)} by {_pts(runner['margin'])} points, but the per-seed differences cover "
                         f"zero ({_interval(runner)}). ")
            else:
                text += (f"{where} there is no clear winner: {_setting(b['pool'], b['lever'])} ({score}) leads "
                         f"{_setting(*o)} by {_pts(runner['margin'])} points, but with {runner['n']} paired "
                         f"seed{'s' if runner['n'] != 1 else ''} the margin cannot be checked against the seeds' "
                         "spread. ")
        else:
            text += f"{where} the best setting is λ = {b['lever']:g} with {b['pool']} ({score})"
            if runner is not None:
                text += (f", ahead of the runner-up, {_setting(*runner['other'])}, by {_pts(runner['margin'])} "
                         f"points ({_interval(runner)})")
            text += ". "
        c0 = next((c for r, c in comps.items() if "λ = 0" in r), None)
        if not math.isnan(b["at_0"]) and b["lever"] != 0.0:
            verb = "beats" if c0 is None or c0["clear"] else "leads"
            text += (f"It {verb} no pooling (λ = 0, {_pts(b['at_0'])} %) by {_pts(b['margin_over_0'])} points"
                     f"{_against(c0)}. ")
        c1 = next((c for r, c in comps.items() if "λ = 1" in r), None)
        if not math.isnan(b["at_1"]):
            if b["lever"] == 1.0:
                same_lever = runner is not None and not runner["clear"] and runner["other"][1] == 1.0
                text += ("Either way, full invariance (global pooling, λ = 1) has the best mean. " if same_lever
                         else "Full invariance (global pooling) is the best setting found. ")
            else:
                text += (f"Full invariance (λ = 1, {b['at_1_pool']}: {_pts(b['at_1'])} %) costs "
                         f"{_pts(b['margin_over_1'])} points{_against(c1)}. ")
        if b["lever"] == 0.0:
            text += "No pooling (full equivariance) is the best setting found. "
        unsure = [c for c in comps.values() if not c["clear"]]
        if unsure and min(c["n"] for c in unsure) <= 3:
            text += "More seeds (e.g. --seeds 5) would narrow the intervals. "
    if learned is not None and len(learned):
        parts = []
        for _, r in learned.iterrows():
            sd = f" ± {r['learned_lever_std']:.2f}" if not math.isnan(r["learned_lever_std"]) else ""
            acc = ""
            if "test_acc_mean" in r and not math.isnan(r["test_acc_mean"]):
                asd = f" ± {_pts(r['test_acc_std'])}" if not math.isnan(r["test_acc_std"]) else ""
                acc = f", {_pts(r['test_acc_mean'])}{asd} % test accuracy"
            parts.append(f"λ = {r['learned_lever_mean']:.2f}{sd} with {r['pool']} "
                         f"({int(r['n'])} seed{'s' if int(r['n']) != 1 else ''}{acc})")
        text += f"{'The network' if have_grid else where + ', the network'} chose " + "; ".join(parts)
        if have_grid:
            b = best_setting(summary)
            text += f"; the grid's best is λ = {b['lever']:g} ({b['pool']}, {_pts(b['score'])} %)."
        else:
            text += "; no grid to compare with."
    return " ".join(text.split())

"""Report a stored study: HTML page, Markdown summary, CSV of all trials, PNG figures.

Everything is read back from the Optuna storage, so a report can be written
by any machine that reaches the database, at any time during or after a study.

Folder layout written by :func:`write_report`::

    index.html      self-contained page (figures embedded, prints well), the finding in words
    summary.md      the same finding and tables in Markdown
    trials.csv      one row per COMPLETE trial, every stored value
    summary.csv     mean / std / n per (statistic, λ)
    lever.png       small multiples against λ: accuracy, gap, shifted accuracy, invariance, consistency
    pareto.png      test accuracy against consistency and head invariance, λ on every point
    compute.png     head positions and parameters against λ; accuracy against compute when recorded
    heatmap.png     statistic × λ of the ranking metric (grids with several statistics and λ)
    history.png     the search history (TPE studies)
    trajectory.png  the learned λ over training (learned-lever trials)

The finding states its uncertainty: per-seed paired differences of the best
setting against λ = 0, λ = 1 and the runner-up, a 95 % t-interval and a sign
test over seeds, and "no clear winner" when the interval covers zero.

Trials that carry ``learned_lever`` (a network that learned its own λ) are kept
apart from the grid: their λ (mean ± std over seeds) is drawn on the figures and
stated in the finding beside the grid's best.
"""

from __future__ import annotations

import base64
import datetime
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .study import open_storage, trials_frame

__all__ = [
    "write_report",
    "summarize",
    "best_setting",
    "finding",
    "ranking_metric",
    "paired_difference",
    "comparisons",
    "format_cell",
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

# The two summary tables: (column, short header, tooltip).
_QUALITY = [
    ("test_acc", "test %", "test accuracy, mean ± std over seeds"),
    ("train_acc", "train %", "train accuracy"),
    ("gap", "gap (pts)", "generalization gap: train − test accuracy, in points"),
    ("shifted_acc", "shifted %", "accuracy on circularly shifted test inputs"),
    ("consistency_circular", "cons. circ. %", "same class for two circular shifts of an input"),
    ("consistency_crop", "cons. crop %", "same class for two crops of an input"),
    ("head_invariance", "head change", "change of the head's input under circular shifts (0 = invariant)"),
]
_BINARY = [
    ("pr_auc", "PR-AUC", "area under the precision-recall curve (ranks the settings on binary data)"),
    ("f1", "F1 %", "F1 of the positive class"),
    ("recall", "recall %", "recall of the positive class"),
    ("precision", "precision %", "precision of the positive class"),
    ("fpr", "false pos. %", "false-positive rate"),
]
_LEARNED = [
    ("learned_lever", "learned λ", "the λ the network chose, in the grid's units"),
    ("test_acc", "test %", "test accuracy"),
    ("gap", "gap (pts)", "generalization gap: train − test accuracy, in points"),
    ("shifted_acc", "shifted %", "accuracy on circularly shifted test inputs"),
    ("consistency_circular", "cons. circ. %", "same class for two circular shifts of an input"),
    ("head_invariance", "head change", "change of the head's input under circular shifts (0 = invariant)"),
    ("pr_auc", "PR-AUC", "area under the precision-recall curve"),
    ("flops_per_sample", "FLOPs / sample", "forward FLOPs per sample"),
    ("wall_s", "wall s", "wall time of one trial (train + measure)"),
]
_SIZE = [
    ("head_positions", "head positions", "positions the classifier head sees (product over axes)"),
    ("head_params", "head params", "parameters of the classifier head"),
    ("params", "params", "parameters of the whole model"),
    ("flops_per_sample", "FLOPs / sample", "forward FLOPs per sample"),
    ("pool_flops_per_sample", "pool FLOPs", "forward FLOPs per sample spent in pooling layers"),
    ("pool_flops_share", "pool share %", "pooling's share of the forward FLOPs"),
    ("forward_ms_per_sample", "ms / sample", "measured forward time per sample"),
    ("wall_s", "wall s", "wall time of one trial (train + measure)"),
]

_TEMPLATE_DIR = Path(__file__).parent / "templates"


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
            :func:`poolkit.lab.study.trials_frame`).

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


# ----------------------------------------------------------------------------- formatting


def _si(v: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.3g}"


def format_cell(mean: float, std: float = math.nan, kind: str = "ratio") -> str:
    """One table cell, mean ± std in the metric's unit: fractions in %, counts as integers.

    Args:
        mean: the mean (or the single value).
        std: the standard deviation over seeds; NaN (one seed) or 0 for counts prints no ``±``.
        kind: ``pct``, ``pts``, ``ratio``, ``int``, ``si``, ``ms``, ``s`` or ``lever``.

    Returns:
        The text of the cell; ``–`` for a missing value.

    Example:
        >>> format_cell(0.9553, 0.0161, "pct"), format_cell(12810.0, 0.0, "int"), format_cell(2.5e6, kind="si")
        ('95.5 ± 1.6', '12,810', '2.5 M')
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    has_sd = std is not None and not (isinstance(std, float) and math.isnan(std))
    if kind in ("pct", "pts"):
        body, sd = f"{100 * mean:.1f}", f"{100 * std:.1f}" if has_sd else ""
    elif kind == "int":
        body, sd = f"{mean:,.0f}", f"{std:,.0f}" if has_sd and std > 0 else ""
    elif kind == "si":
        body, sd = _si(mean), _si(std) if has_sd and std > 0 else ""
    elif kind == "ms":
        d = max(0, 2 - math.floor(math.log10(abs(mean)))) if mean else 2  # three significant digits
        body, sd = f"{mean:.{d}f}", f"{std:.{d}f}" if has_sd else ""
    elif kind == "s":
        body, sd = f"{mean:.1f}", f"{std:.1f}" if has_sd else ""
    elif kind == "lever":
        body, sd = f"{mean:.2f}", f"{std:.2f}" if has_sd else ""
    else:
        body, sd = f"{mean:.3f}", f"{std:.3f}" if has_sd else ""
    return f"{body} ± {sd}" if sd else body


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


def _learned(frame: Any) -> Any:
    """Per statistic, the learned λ and the accuracies of the learned-lever trials (or None)."""
    if frame is None or "learned_lever" not in frame.columns:
        return None
    rows = frame[_num(frame, "learned_lever").notna()]
    if rows.empty:
        return None
    rows = rows.assign(lever=0.0)  # group by statistic only: the starting λ is not what was chosen
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


# ----------------------------------------------------------------------------- figures


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(pools: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out: dict[str, Any] = {"none": "0.35"}
    for i, p in enumerate(dict.fromkeys(q for q in pools if q != "none")):
        out[p] = cycle[i % len(cycle)]
    return out


def _scale(metric: str) -> float:
    return 100.0 if _KIND.get(metric) in ("pct", "pts") else 1.0


def _axis_label(metric: str) -> str:
    unit = {"pct": " (%)", "pts": " (points)"}.get(_KIND.get(metric, ""), "")
    return _LABEL.get(metric, metric) + unit


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def _grid_axes(n: int, ncols: int = 3, w: float = 4.0, h: float = 2.9) -> tuple[Any, list[Any]]:
    plt = _plt()
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _lever_panels(summary: Any, learned: Any) -> list[str]:
    cands = ["test_acc", "gap", "shifted_acc", "head_invariance", "consistency_circular", "consistency_crop",
             "f1", "pr_auc"]
    have = set()
    for s in (summary, learned):
        if s is not None:
            have |= {m for m in cands if f"{m}_mean" in s.columns and s[f"{m}_mean"].notna().any()}
    return [m for m in cands if m in have]


def _lever_figure(summary: Any, learned: Any, colors: dict[str, Any], search: bool, path: Path) -> bool:
    """Small multiples: one panel per metric against λ, one line per statistic, learned λ as stars."""
    panels = _lever_panels(summary, learned)
    if not panels:
        return False
    fig, axes = _grid_axes(len(panels))
    curves = _curves(summary) if len(summary) else {}
    for ax, metric in zip(axes, panels):
        k = _scale(metric)
        for pool, c in curves.items():
            if f"{metric}_mean" not in c:
                continue
            m = c[f"{metric}_mean"].to_numpy(float) * k
            s = c[f"{metric}_std"].fillna(0.0).to_numpy(float) * k
            if search:
                ax.plot(c["lever"], m, "o", ms=4, alpha=0.8, color=colors[pool], label=pool)
            else:
                ax.plot(c["lever"], m, marker="o", ms=4, color=colors[pool], label=pool)
                ax.fill_between(c["lever"], m - s, m + s, alpha=0.18, color=colors[pool], lw=0)
        if learned is not None and f"{metric}_mean" in learned.columns:
            for _, r in learned.iterrows():
                if math.isnan(r[f"{metric}_mean"]):
                    continue
                ax.errorbar(r["learned_lever_mean"], k * r[f"{metric}_mean"],
                            xerr=[[0 if math.isnan(r["learned_lever_std"]) else r["learned_lever_std"]]],
                            yerr=[[0 if math.isnan(r[f"{metric}_std"]) else k * r[f"{metric}_std"]]],
                            fmt="*", ms=13, mec="k", mew=0.6, capsize=3,
                            color=colors.get(r["pool"], "k"), label=f"learned λ ({r['pool']})")
        ax.set_title(_axis_label(metric), fontsize=10)
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[-min(3, len(axes)):]:
        ax.set_xlabel("λ   (0: no pooling, equivariant · 1: global pooling, invariant)", fontsize=8)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1.0), title="statistic")
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(axes) > 3 else 0.88))
    _save(fig, path)
    return True


def _front(xs: Any, ys: Any, x_higher_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (y higher is better)."""
    idx = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        dominated = False
        for j, (x2, y2) in enumerate(zip(xs, ys)):
            if j == i:
                continue
            bx = x2 >= x if x_higher_better else x2 <= x
            sx = x2 > x if x_higher_better else x2 < x
            if bx and y2 >= y and (sx or y2 > y):
                dominated = True
                break
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: xs[i])


def _pareto_figure(summary: Any, learned: Any, colors: dict[str, Any], path: Path) -> bool:
    """Test accuracy against consistency and against head invariance, λ written on every point."""
    import numpy as np

    if not len(summary):
        return False
    metric, mlabel = ranking_metric(summary)
    xs = [(c, hb) for c, hb in (("consistency_circular", True), ("head_invariance", False))
          if f"{c}_mean" in summary.columns and summary[f"{c}_mean"].notna().any()]
    if not xs or f"{metric}_mean" not in summary.columns:
        return False
    fig, axes = _grid_axes(len(xs), ncols=2, w=5.6, h=4.0)
    ky = _scale(metric)
    for ax, (xm, higher) in zip(axes, xs):
        kx = _scale(xm)
        s = summary[summary[f"{xm}_mean"].notna() & summary[f"{metric}_mean"].notna()]
        for pool, c in _curves(s).items():
            c = c.sort_values("lever")
            ax.plot(c[f"{xm}_mean"] * kx, c[f"{metric}_mean"] * ky, "-", color=colors[pool], alpha=0.35, lw=1)
        for _, r in s.iterrows():
            ax.errorbar(kx * r[f"{xm}_mean"], ky * r[f"{metric}_mean"],
                        xerr=0 if math.isnan(r[f"{xm}_std"]) else kx * r[f"{xm}_std"],
                        yerr=0 if math.isnan(r[f"{metric}_std"]) else ky * r[f"{metric}_std"],
                        fmt="o", ms=5, capsize=2, color=colors[r["pool"]], label=r["pool"])
            ax.annotate(f"λ={r['lever']:g}", (kx * r[f"{xm}_mean"], ky * r[f"{metric}_mean"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        fx, fy = s[f"{xm}_mean"].to_numpy(float) * kx, s[f"{metric}_mean"].to_numpy(float) * ky
        front = _front(fx, fy, higher)
        if len(front) > 1:
            ax.plot(fx[front], fy[front], "--", color="0.4", lw=1, label="Pareto front")
        if learned is not None and f"{xm}_mean" in learned.columns and f"{metric}_mean" in learned.columns:
            for _, r in learned.iterrows():
                if np.isnan(r[f"{xm}_mean"]) or np.isnan(r[f"{metric}_mean"]):
                    continue
                ax.plot(kx * r[f"{xm}_mean"], ky * r[f"{metric}_mean"], "*", ms=13, mec="k", mew=0.6,
                        color=colors.get(r["pool"], "k"), label=f"learned λ ({r['pool']})")
                ax.annotate(f"λ={r['learned_lever_mean']:.2f}", (kx * r[f"{xm}_mean"], ky * r[f"{metric}_mean"]),
                            textcoords="offset points", xytext=(6, -10), fontsize=8)
        arrow = "more consistent →" if higher else "← more invariant"
        ax.set_xlabel(f"{_axis_label(xm)}   {arrow}", fontsize=9)
        ax.set_ylabel(_axis_label(metric) if metric in _LABEL else mlabel, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        h, lab = ax.get_legend_handles_labels()
        keep = dict(zip(lab, h))
        ax.legend(keep.values(), keep.keys(), fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def _compute_figure(summary: Any, colors: dict[str, Any], path: Path) -> bool:
    """Head positions and parameters against λ; accuracy against compute (FLOPs or time) when recorded."""
    if not len(summary):
        return False

    def has(m: str) -> bool:
        return f"{m}_mean" in summary.columns and summary[f"{m}_mean"].notna().any()

    panels: list[tuple[str, str]] = [(m, "lever") for m in ("head_positions", "head_params") if has(m)]
    cost = "flops_per_sample" if has("flops_per_sample") else "forward_ms_per_sample" if has(
        "forward_ms_per_sample") else None
    metric = ranking_metric(summary)[0]
    if cost is not None and has(metric):
        panels.append((metric, cost))
    panels += [(m, "lever") for m in ("pool_flops_share", "forward_ms_per_sample") if has(m)]
    if not panels:
        return False
    fig, axes = _grid_axes(len(panels), ncols=3, w=4.0, h=3.0)
    curves = _curves(summary)
    for ax, (ym, xm) in zip(axes, panels):
        ky = _scale(ym)
        for pool, c in curves.items():
            c = c[c[f"{ym}_mean"].notna()] if f"{ym}_mean" in c else c.iloc[:0]
            if not len(c):
                continue
            x = c["lever"] if xm == "lever" else c[f"{xm}_mean"]
            ax.plot(x, c[f"{ym}_mean"] * ky, marker="o", ms=4, color=colors[pool], label=pool)
            if xm != "lever":
                for xv, yv, lv in zip(x, c[f"{ym}_mean"] * ky, c["lever"]):
                    ax.annotate(f"λ={lv:g}", (xv, yv), textcoords="offset points", xytext=(4, 3), fontsize=7)
        if xm == "lever" and ym in ("head_positions", "head_params"):
            ax.set_yscale("log")
        elif xm != "lever":
            from matplotlib.ticker import EngFormatter, NullFormatter

            xs = summary[f"{xm}_mean"].dropna()
            if len(xs) and xs.min() > 0 and xs.max() / xs.min() > 10:
                ax.set_xscale("log")
            ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_axis_label(ym) if xm == "lever" else f"{_axis_label(ym)} against compute", fontsize=10)
        ax.set_xlabel("λ" if xm == "lever" else _axis_label(xm), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    h, lab = axes[0].get_legend_handles_labels()
    if lab:
        axes[0].legend(h, lab, fontsize=8, title="statistic", title_fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def _heatmap(summary: Any, path: Path) -> bool:
    import numpy as np

    plt = _plt()
    metric, label = ranking_metric(summary)
    table = 100 * summary.pivot(index="pool", columns="lever", values=f"{metric}_mean")
    if "none" in table.index and len(table) > 1:
        # λ = 0 has no pooling: the same trials belong to every statistic's row.
        if 0.0 in table.columns:
            table[0.0] = table.loc["none", 0.0]
        table = table.drop(index="none")
    if table.shape[1] < 2:
        return False
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * table.shape[1], 1.6 + 0.5 * table.shape[0]))
    im = ax.imshow(table.to_numpy(float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" for v in table.columns])
    ax.set_yticks(range(table.shape[0]), list(table.index))
    for (r, c), v in np.ndenumerate(table.to_numpy(float)):
        if not math.isnan(v):
            ax.text(c, r, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel("λ")
    ax.set_title(f"mean {label} (%)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    _save(fig, path)
    return True


def _history_figure(history: Any, colors: dict[str, Any], label: str, path: Path) -> bool:
    """The search: objective per trial with the best so far, and the λ sampled per trial."""
    import numpy as np

    h = history[history["value"].notna()].sort_values("trial")
    if h.empty:
        return False
    fig, (a, b) = _plt().subplots(1, 2, figsize=(11, 3.4))
    k = 100.0 if label == "test accuracy" else 1.0
    for pool in h["pool"].unique():
        p = h[h["pool"] == pool]
        a.plot(p["trial"], k * p["value"], "o", ms=5, color=colors.get(pool, "k"), label=pool)
        b.plot(p["trial"], p["lever"], "o", ms=5, color=colors.get(pool, "k"), label=pool)
    a.step(h["trial"], k * np.maximum.accumulate(h["value"].to_numpy(float)), where="post", color="k", lw=1.2,
           label="best so far")
    a.set_xlabel("trial", fontsize=9)
    a.set_ylabel(f"{label}{' (%)' if k == 100 else ''}", fontsize=9)
    a.set_title("objective per trial", fontsize=10)
    b.set_xlabel("trial", fontsize=9)
    b.set_ylabel("λ", fontsize=9)
    b.set_ylim(-0.05, 1.05)
    b.set_title("λ the sampler chose", fontsize=10)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    a.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def _trajectory_figure(frame: Any, colors: dict[str, Any], grid_best: float | None, path: Path) -> bool:
    """The learned λ over training, one line per learned-lever trial."""
    import numpy as np

    if "lever_trajectory" not in frame.columns:
        return False
    rows = [(r["pool"], r.get("seed"), r["lever_trajectory"]) for _, r in frame.iterrows()
            if isinstance(r["lever_trajectory"], (list, tuple)) and len(r["lever_trajectory"]) > 1]
    if not rows:
        return False
    fig, ax = _plt().subplots(figsize=(6.5, 3.4))
    seen = set()
    for pool, _seed, traj in rows:
        t = np.asarray(traj, dtype=float)
        ax.plot(np.linspace(0, 1, len(t)), t, color=colors.get(pool, "k"), lw=1.2, alpha=0.8,
                label=None if pool in seen else f"learned λ ({pool})")
        seen.add(pool)
    if grid_best is not None:
        ax.axhline(grid_best, color="0.3", ls="--", lw=1, label=f"grid's best λ = {grid_best:g}")
    ax.set_xlabel("fraction of training", fontsize=9)
    ax.set_ylabel("λ", fontsize=9)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------- storage


def _safe_url(storage: str) -> str:
    """The storage URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: print nothing secret
        return storage.split("@")[-1] if "@" in storage else storage


def _search_history(storage: str, study_name: str) -> Any:
    """COMPLETE trials with their objective value when the study was a search (TPE), else None.

    Grid studies enqueue every trial with fixed parameters; a search samples them.
    """
    import optuna
    import pandas as pd
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return None
    sampled = any(set(t.params) - {"lever"} for t in trials) or not any(
        "fixed_params" in t.system_attrs for t in trials)
    if not sampled:
        return None
    return pd.DataFrame([{"trial": t.number, "value": t.value, "pool": t.user_attrs.get("pool", "?"),
                          "lever": t.params.get("lever", math.nan)} for t in trials])


# ----------------------------------------------------------------------------- tables


def _summary_rows(summary: Any, columns: list[tuple[str, str, str]], best: tuple[str, float] | None,
                  key: str = "lever") -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    cols = [(m, h, tip) for m, h, tip in columns if f"{m}_mean" in summary.columns
            and summary[f"{m}_mean"].notna().any()]
    head = [{"text": h, "title": tip} for _, h, tip in cols]
    rows = []
    for _, r in summary.iterrows():
        is_best = best is not None and r["pool"] == best[0] and key == "lever" and float(r["lever"]) == best[1]
        cells = [format_cell(r[f"{m}_mean"], r[f"{m}_std"], _KIND[m]) for m, _, _ in cols]
        rows.append({"pool": r["pool"], "lever": f"{r['lever']:g}" if key == "lever" else "",
                     "n": int(r["n"]), "cells": cells, "best": is_best})
    return head, rows


def _trial_cell(col: str, v: Any) -> str:
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (int, float)) for x in v):
            return f"{v[0]:.2f} → {v[-1]:.2f} ({len(v)} points)"
        return f"{len(v)} values"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return str(v)
    if col in _KIND and isinstance(v, (int, float)):
        if col == "pool_flops_share" and v > 1.0:
            v = v / 100.0
        return format_cell(float(v), kind=_KIND[col])
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.4g}"
    return str(v)


def _trials_table(frame: Any) -> tuple[list[str], list[list[str]]]:
    first = ["trial", "pool", "lever", "seed"]
    order = first + [m for m, _, _ in _METRICS] + sorted(frame.columns)
    cols = []
    for c in order:
        if c in frame.columns and c not in cols and frame[c].notna().any():
            cols.append(c)
    rows = [[("–" if (isinstance(r[c], float) and math.isnan(r[c])) else
              f"{r[c]:g}" if c == "lever" else str(int(r[c])) if c in ("trial", "seed") else _trial_cell(c, r[c]))
             for c in cols] for _, r in frame.iterrows()]
    unit = {"pct": " %", "pts": " (pts)"}
    return [c + unit.get(_KIND.get(c, ""), "") for c in cols], rows


def _md_table(head: list[dict[str, str]], rows: list[dict[str, Any]], with_lever: bool = True) -> str:
    lead = ["statistic", "λ", "n"] if with_lever else ["statistic", "n"]
    lines = ["| " + " | ".join(lead + [h["text"] for h in head]) + " |", "|" + " --- |" * (len(lead) + len(head))]
    for r in rows:
        first = [("**" + r["pool"] + "** ★") if r["best"] else r["pool"]] + ([r["lever"]] if with_lever else [])
        lines.append("| " + " | ".join([*first, str(r["n"]), *r["cells"]]) + " |")
    return "\n".join(lines)


def _config_rows(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """The stored study identity (dataset, training configuration) as readable key/value rows."""
    import json

    try:
        ident = json.loads(attrs.get("identity", "") or "{}")
    except (TypeError, ValueError):
        return []
    if not isinstance(ident, dict):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in ident.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                     for k, v in value.items()]
        else:
            rows.append((key, json.dumps(value) if isinstance(value, (dict, list)) else str(value)))
    return rows


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def _render(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**context)


# ----------------------------------------------------------------------------- the report


def write_report(study_name: str, storage: str, out: str | Path) -> Path:
    """Write the report folder of a stored study and return its path.

    Args:
        study_name: the study's name in the storage.
        storage: Optuna storage URL (``sqlite:///path.db``, ``postgresql://...``).
        out: folder to write (created).

    Returns:
        The folder, holding ``index.html``, ``summary.md``, ``trials.csv``, ``summary.csv`` and the figures.

    Raises:
        ValueError: no such study, or no COMPLETE trial yet.

    Example:
        >>> path = write_report("mnist1d-zeros", "sqlite:///poolkit-out/poolkit.db", "report")  # doctest: +SKIP
    """
    import poolkit

    frame = trials_frame(storage, study_name)
    if frame.empty:
        raise ValueError(f"study {study_name!r} in {storage} has no COMPLETE trial yet; run `poolkit study` first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("lever.png", "pareto.png", "compute.png", "heatmap.png", "history.png", "trajectory.png"):
        (out / stale).unlink(missing_ok=True)  # a figure this study no longer has must not linger
    sort_cols = [c for c in ("lever", "pool", "seed", "trial") if c in frame.columns]
    frame = frame.sort_values(sort_cols).reset_index(drop=True)
    frame.to_csv(out / "trials.csv", index=False)
    is_learned = _num(frame, "learned_lever").notna() if "learned_lever" in frame.columns else None
    grid = frame[~is_learned] if is_learned is not None else frame
    learned_trials = frame[is_learned] if is_learned is not None else frame.iloc[:0]
    summary = summarize(grid) if len(grid) else summarize(frame).iloc[:0]
    summary.to_csv(out / "summary.csv", index=False)
    learned = _learned(frame)
    if learned is not None:
        learned.to_csv(out / "learned.csv", index=False)
    history = _search_history(storage, study_name)
    attrs = dict(frame.attrs)
    text = finding(summary, attrs, grid if len(grid) else None, learned)
    have_grid = len(summary) > 0
    b = best_setting(summary) if have_grid else None
    comps = comparisons(grid, summary) if have_grid else []
    colors = _colors(list(summary["pool"].unique()) + ([] if learned is None else list(learned["pool"])))

    mlabel = ranking_metric(summary)[1] if have_grid else "test accuracy"
    figures: list[tuple[str, str, str]] = []  # (file, title, caption)
    if _lever_figure(summary, learned, colors, history is not None, out / "lever.png"):
        figures.append(("lever.png", "Against the lever λ",
                        "Mean over seeds, the band ± one std; the λ = 0 point (no pooling) is shared by every "
                        "statistic." + (" Stars: the λ the network learned (mean ± std over seeds)."
                                        if learned is not None else "")))
    if _pareto_figure(summary, learned, colors, out / "pareto.png"):
        figures.append(("pareto.png", "The trade-off",
                        f"{mlabel.capitalize()} against consistency under circular shifts and against the change "
                        "of the head's input under shifts; each point one setting, λ written beside it; dashed: "
                        "the settings no other beats on both axes."))
    if _compute_figure(summary, colors, out / "compute.png"):
        figures.append(("compute.png", "Where the positions and the compute go",
                        "What pooling shrinks: the positions the head sees and its parameters against λ"
                        + ("; accuracy against the forward cost per sample, λ on each point."
                           if any(f"{m}_mean" in summary.columns for m in
                                  ("flops_per_sample", "forward_ms_per_sample")) else ".")))
    if have_grid and history is None and summary["pool"].nunique() > 1 and _heatmap(summary, out / "heatmap.png"):
        figures.append(("heatmap.png", "Statistic × λ",
                        f"Mean {mlabel} (%); λ = 0 is the shared no-pool model."))
    if history is not None and _history_figure(history, colors, mlabel, out / "history.png"):
        figures.append(("history.png", "Search history",
                        "The sampler's trials in order: objective value and best so far, and the λ it chose."))
    if len(learned_trials) and _trajectory_figure(learned_trials, colors, b["lever"] if b else None,
                                                  out / "trajectory.png"):
        figures.append(("trajectory.png", "The learned λ during training",
                        "One line per learned-lever trial; dashed: the grid's best λ."))

    best_key = (b["pool"], b["lever"]) if b else None
    q_head, q_rows = _summary_rows(summary, _QUALITY, best_key)
    b_head, b_rows = _summary_rows(summary, _BINARY, best_key)
    s_head, s_rows = _summary_rows(summary, _SIZE, best_key)
    l_head, l_rows = ([], [])
    if learned is not None:
        l_head, l_rows = _summary_rows(learned, _LEARNED, None, key="pool")
    t_cols, t_rows = _trials_table(frame)
    comp_rows = [{
        "role": c["role"], "other": _setting(*c["other"]), "margin": _signed(c["margin"]), "n": c["n"],
        "interval": f"[{_signed(c['lo'])}, {_signed(c['hi'])}]" if c["n"] >= 2 else "–",
        "wins": f"{c['wins']} of {c['n']}" if c["n"] else "–",
        "sign_p": f"{c['sign_p']:.2f}" if not math.isnan(c["sign_p"]) else "–",
        "verdict": "clear" if c["clear"] else "within the spread" if c["n"] >= 2 else "one seed: unknown",
    } for c in comps]
    safe = _safe_url(storage)
    meta = [("dataset", attrs.get("dataset")), ("padding", attrs.get("padding")), ("model", attrs.get("model")),
            ("device", attrs.get("device")),
            ("trials", f"{len(frame)} complete" + (f" ({len(learned_trials)} with a learned λ)"
                                                   if len(learned_trials) else "")),
            ("mode", "search (sampled λ)" if history is not None else "grid" if have_grid else "learned λ")]
    title = f"poolkit study {study_name}"
    context = {
        "title": title,
        "study_name": study_name,
        "meta": [(k, v) for k, v in meta if v],
        "finding": text,
        "metric_label": mlabel,
        "best": None if b is None else {"setting": _setting(b["pool"], b["lever"]), "n": b["n"]},
        "comparisons": comp_rows,
        "quality_head": q_head, "quality_rows": q_rows,
        "binary_head": b_head, "binary_rows": b_rows,
        "size_head": s_head, "size_rows": s_rows,
        "learned_head": l_head, "learned_rows": l_rows,
        "figures": [{"src": "data:image/png;base64," + base64.b64encode((out / f).read_bytes()).decode(),
                     "file": f, "title": t, "caption": cap, "wide": _png_width(out / f) > 760}
                    for f, t, cap in figures],
        "trial_cols": t_cols, "trial_rows": t_rows,
        "config": _config_rows(attrs),
        "storage": safe,
        "dashboard": f"optuna-dashboard {safe}",
        "version": poolkit.__version__,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (out / "index.html").write_text(_render(context), encoding="utf-8")

    md = [f"# {title}", "", f"**Finding:** {text}", ""]
    md += [" · ".join(f"{k}: {v}" for k, v in context["meta"]), ""]
    if comp_rows:
        md += ["Per-seed paired differences of the best setting (points of " + mlabel + "):", "",
               "| against | setting | margin | seeds | 95 % interval | ahead on | sign test p |",
               "| --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {c['role']} | {c['other']} | {c['margin']} | {c['n']} | {c['interval']} | {c['wins']} | "
               f"{c['sign_p']} |" for c in comp_rows]
        md += [""]
    if q_rows:
        md += ["Mean ± std over seeds; accuracies in %, the best row starred.", "", _md_table(q_head, q_rows), ""]
    if b_head:
        md += [_md_table(b_head, b_rows), ""]
    if s_head:
        md += [_md_table(s_head, s_rows), ""]
    if l_rows:
        md += ["Learned λ (one network per seed chose its own λ):", "", _md_table(l_head, l_rows, False), ""]
    md += [f"![{t}]({f})" for f, t, _ in figures]
    md += ["", f"Open the storage in Optuna's dashboard: `optuna-dashboard {safe}`", ""]
    (out / "summary.md").write_text("\n".join(md), encoding="utf-8")
    return out

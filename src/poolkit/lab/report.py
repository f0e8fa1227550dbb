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

The numbers and the finding's wording live in :mod:`poolkit.lab.report_stats`, the figures in
:mod:`poolkit.lab.report_figures`; every public name stays importable from here.
"""

from __future__ import annotations

import base64
import datetime
import math
from pathlib import Path
from typing import Any

from .report_figures import (
    _colors,
    _compute_figure,
    _heatmap,
    _history_figure,
    _lever_figure,
    _pareto_figure,
    _trajectory_figure,
)
from .report_stats import (
    _KIND,
    _METRICS,
    _learned,
    _num,
    _setting,
    _signed,
    best_setting,
    comparisons,
    finding,
    paired_difference,
    ranking_metric,
    summarize,
)
from .search import search_summary
from .storage import open_storage, trials_frame

# In reading order: the API page (docs/api/lab.md) renders them in this order.
__all__ = [
    "summarize",
    "ranking_metric",
    "best_setting",
    "paired_difference",
    "comparisons",
    "format_cell",
    "finding",
    "write_report",
]


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
    search = search_summary(frame, attrs)
    if search is not None:  # a search: the held-out score chose, and the retrained seeds are the figure
        text = search["finding"]
    have_grid = len(summary) > 0
    b = best_setting(summary) if have_grid else None
    # a search's trials are each one configuration and one seed: no per-seed comparison to draw
    comps = comparisons(grid, summary) if have_grid and search is None else []
    colors = _colors(list(summary["pool"].unique()) + ([] if learned is None else list(learned["pool"])))

    mlabel = ranking_metric(summary)[1] if have_grid else "test accuracy"
    figures: list[tuple[str, str, str]] = []  # (file, title, caption)
    # a search's learned trials are one configuration each: one star per trial, no mean across networks
    stars = _learned(frame, per_trial=True) if search is not None else learned
    star_text = " Stars: the λ each learned trial chose (one per configuration)." if search is not None else (
        " Stars: the λ the network learned (mean ± std over seeds).")
    if _lever_figure(summary, stars, colors, history is not None, out / "lever.png"):
        figures.append(("lever.png", "Against the lever λ",
                        "Mean over seeds, the band ± one std; the λ = 0 point (no pooling) is shared by every "
                        "statistic." + (star_text if learned is not None else "")))
    if _pareto_figure(summary, stars, colors, out / "pareto.png"):
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

    # a search chose by held-out score: no star by test accuracy; its learned trials differ in architecture
    best_key = (b["pool"], b["lever"]) if b and search is None else None
    q_head, q_rows = _summary_rows(summary, _QUALITY, best_key)
    b_head, b_rows = _summary_rows(summary, _BINARY, best_key)
    s_head, s_rows = _summary_rows(summary, _SIZE, best_key)
    l_head, l_rows = ([], [])
    if learned is not None and search is None:
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
        "starred": best_key is not None,
        "search_cols": search["columns"] if search else [], "search_rows": search["rows"] if search else [],
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
        star = ", the best row starred" if best_key is not None else ""
        md += [f"Mean ± std over seeds; accuracies in %{star}.", "", _md_table(q_head, q_rows), ""]
    if b_head:
        md += [_md_table(b_head, b_rows), ""]
    if s_head:
        md += [_md_table(s_head, s_rows), ""]
    if search:
        md += ["The search's best configurations, by held-out score:", "",
               "| " + " | ".join(search["columns"]) + " |", "|" + " --- |" * len(search["columns"])]
        md += ["| " + " | ".join(r) + " |" for r in search["rows"]] + [""]
    if l_rows:
        md += ["Learned λ (one network per seed chose its own λ):", "", _md_table(l_head, l_rows, False), ""]
    md += [f"![{t}]({f})" for f, t, _ in figures]
    md += ["", f"Open the storage in Optuna's dashboard: `optuna-dashboard {safe}`", ""]
    (out / "summary.md").write_text("\n".join(md), encoding="utf-8")
    return out

"""Report a stored study: HTML page, Markdown summary, CSV of all trials, PNG figures.

Everything is read back from the Optuna storage, so a report can be written
by any machine that reaches the database, at any time during or after a study.

Folder layout written by :func:`write_report`::

    index.html      self-contained page (figures embedded), the finding in words
    summary.md      the same finding and tables in Markdown
    trials.csv      one row per COMPLETE trial, every stored value
    summary.csv     mean / std / n per (statistic, λ)
    test_acc.png, gap.png, shifted_acc.png, invariance.png, heatmap.png
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from .study import trials_frame

__all__ = ["write_report", "summarize", "best_setting", "finding", "ranking_metric"]

_METRICS = [
    ("test_acc", "test accuracy"),
    ("train_acc", "train accuracy"),
    ("gap", "generalization gap (train - test)"),
    ("shifted_acc", "accuracy on shifted test inputs"),
    ("consistency_circular", "consistency, circular shifts"),
    ("consistency_crop", "consistency, crops"),
    ("head_invariance", "head-input change under circular shifts (0 = invariant)"),
    ("head_params", "head parameters"),
    ("wall_s", "wall time per trial (s)"),
    ("recall", "recall"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("fpr", "false-positive rate"),
    ("pr_auc", "PR-AUC"),
]


def summarize(frame: Any) -> Any:
    """Mean, std and count per (pool, lever) of every measured value present."""
    cols = [m for m, _ in _METRICS if m in frame.columns and frame[m].notna().any()]
    g = frame.groupby(["pool", "lever"])[cols]
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.0), g.size()
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


def best_setting(summary: Any) -> dict[str, Any]:
    """Best (pool, λ) by the ranking metric (mean over seeds), and its margins over λ = 0 and over λ = 1.

    ``metric``/``label`` name the metric; ``score``/``score_std`` are its mean and spread
    at the best setting (``test_acc``/``test_acc_std`` too when the metric is test accuracy).
    """
    metric, label = ranking_metric(summary)
    col = f"{metric}_mean"
    i = summary[col].idxmax()
    best = summary.loc[i]
    res: dict[str, Any] = {"pool": best["pool"], "lever": float(best["lever"]), "metric": metric, "label": label,
                           "score": float(best[col]), "score_std": float(best[f"{metric}_std"])}
    if metric == "test_acc":
        res["test_acc"], res["test_acc_std"] = res["score"], res["score_std"]
    at0 = summary[summary["lever"] == 0.0]
    res["at_0"] = float(at0[col].max()) if len(at0) else math.nan
    at1 = summary[summary["lever"] == 1.0]
    same = at1[at1["pool"] == best["pool"]]
    pick = same if len(same) else at1
    res["at_1"] = float(pick[col].max()) if len(pick) else math.nan
    res["at_1_pool"] = str(pick.loc[pick[col].idxmax(), "pool"]) if len(pick) else None
    res["margin_over_0"] = res["score"] - res["at_0"]
    res["margin_over_1"] = res["score"] - res["at_1"]
    return res


def _pts(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.1f}"


def finding(summary: Any, attrs: dict[str, Any]) -> str:
    """The finding in words, e.g. 'on digits-where the best λ is 0.5 ...'."""
    b = best_setting(summary)
    ds = attrs.get("dataset", attrs.get("study_name", "this dataset"))
    pad = attrs.get("padding", "?")
    text = (
        f"On {ds} ({pad} padding) the best setting is λ = {b['lever']:g} with {b['pool']} "
        f"({_pts(b['score'])} ± {_pts(b['score_std'])} % {b['label']}). "
    )
    if not math.isnan(b["at_0"]) and b["lever"] != 0.0:
        text += f"It beats no pooling (λ = 0, {_pts(b['at_0'])} %) by {_pts(b['margin_over_0'])} points. "
    if not math.isnan(b["at_1"]):
        if b["lever"] == 1.0:
            text += "Full invariance (global pooling) is the best setting found. "
        else:
            text += (
                f"Full invariance (λ = 1, {b['at_1_pool']}: {_pts(b['at_1'])} %) costs "
                f"{_pts(b['margin_over_1'])} points. "
            )
    if b["lever"] == 0.0:
        text += "No pooling (full equivariance) is the best setting found. "
    return text.strip()


def _figure(curves: dict[str, Any], metric: str, label: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(f"{metric}_mean" in c for c in curves.values()):
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for pool, c in curves.items():
        m, s = c[f"{metric}_mean"].to_numpy(float), c[f"{metric}_std"].to_numpy(float)
        ax.plot(c["lever"], m, marker="o", label=pool)
        ax.fill_between(c["lever"], m - s, m + s, alpha=0.2)
    ax.set_xlabel("λ (0: no pooling, equivariant … 1: global pooling, invariant)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(title="statistic", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _heatmap(summary: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metric, label = ranking_metric(summary)
    table = 100 * summary.pivot(index="pool", columns="lever", values=f"{metric}_mean")
    if "none" in table.index and len(table) > 1:
        # λ = 0 has no pooling: the same trials belong to every statistic's row.
        if 0.0 in table.columns:
            table[0.0] = table.loc["none", 0.0]
        table = table.drop(index="none")
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md_table(summary: Any) -> str:
    cols = [m for m, _ in _METRICS if f"{m}_mean" in summary.columns]
    head = "| statistic | λ | n | " + " | ".join(cols) + " |"
    lines = [head, "|" + " --- |" * (3 + len(cols))]
    for _, r in summary.iterrows():
        cells = []
        for m in cols:
            mu, sd = r[f"{m}_mean"], r[f"{m}_std"]
            cells.append(f"{mu:.0f}" if m in ("head_params",) else f"{mu:.3f} ± {sd:.3f}")
        lines.append(f"| {r['pool']} | {r['lever']:g} | {int(r['n'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(study_name: str, storage: str, out: str | Path) -> Path:
    """Write the report folder of a stored study and return its path.

    Args:
        study_name: the study's name in the storage.
        storage: Optuna storage URL (``sqlite:///path.db``, ``postgresql://...``).
        out: folder to write (created).

    Raises:
        ValueError: no such study, or no COMPLETE trial yet.

    Example:
        >>> path = write_report("mnist1d-zeros", "sqlite:///poolkit-out/poolkit.db", "report")  # doctest: +SKIP
    """
    frame = trials_frame(storage, study_name)
    if frame.empty:
        raise ValueError(f"study {study_name!r} in {storage} has no COMPLETE trial yet; run `poolkit study` first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.sort_values(["lever", "pool", "seed"]).to_csv(out / "trials.csv", index=False)
    summary = summarize(frame)
    summary.to_csv(out / "summary.csv", index=False)
    curves = _curves(summary)
    figures = []
    for metric, fname, label in [
        ("test_acc", "test_acc.png", "test accuracy"),
        ("gap", "gap.png", "generalization gap (train - test)"),
        ("shifted_acc", "shifted_acc.png", "accuracy, shifted test inputs"),
        ("head_invariance", "invariance.png", "head-input change under shifts (0 = invariant)"),
        ("consistency_circular", "consistency.png", "consistency under circular shifts"),
        ("f1", "f1.png", "F1 (binary)"),
        ("pr_auc", "pr_auc.png", "PR-AUC (binary)"),
    ]:
        if f"{metric}_mean" in summary.columns and _figure(curves, metric, label, out / fname):
            figures.append((fname, label))
    _heatmap(summary, out / "heatmap.png")
    figures.append(
        ("heatmap.png", f"statistic × λ heatmap of mean {ranking_metric(summary)[1]} (λ = 0: the shared no-pool model)")
    )
    attrs = dict(frame.attrs)
    text = finding(summary, attrs)
    b = best_setting(summary)
    title = f"poolkit study {study_name}"
    md = [
        f"# {title}",
        "",
        f"**Finding:** {text}",
        "",
        f"Trials: {len(frame)} complete; dataset {attrs.get('dataset', '?')}, padding {attrs.get('padding', '?')}. "
        f"Best: {b['pool']} at λ = {b['lever']:g}; margin over λ = 0: {_pts(b['margin_over_0'])} points, "
        f"over λ = 1: {_pts(b['margin_over_1'])} points.",
        "",
        "Mean ± std over seeds (accuracies as fractions; head_invariance: 0 means the head's input ignores "
        "circular shifts).",
        "",
        _md_table(summary),
        "",
        *[f"![{label}]({fname})" for fname, label in figures],
        "",
    ]
    (out / "summary.md").write_text("\n".join(md), encoding="utf-8")
    imgs = "\n".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode((out / f).read_bytes()).decode()}" '
        f'alt="{html.escape(label)}"><figcaption>{html.escape(label)}</figcaption></figure>'
        for f, label in figures
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
figure{{display:inline-block;margin:0.5em}}.finding{{font-size:1.15em;background:#f4f7fb;padding:0.8em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="finding"><b>Finding:</b> {html.escape(text)}</p>
<p>{len(frame)} complete trials, read from {html.escape(storage)}. Accuracies are fractions, mean (std) over seeds.
λ = 0: no pooling (the head sees full-resolution, shift-equivariant maps); λ = 1: global pooling.</p>
{summary.to_html(index=False, float_format=lambda v: f"{v:.3f}")}
<h2>Figures</h2>
{imgs}
<h2>All trials</h2>
{frame.sort_values(["lever", "pool", "seed"]).to_html(index=False, float_format=lambda v: f"{v:.3f}")}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return out

"""The report's PNG figures (matplotlib, Agg backend), one function per figure.

Each writes its file and returns True, or returns False (writing nothing) when the
study lacks what the figure shows. Called by :func:`poolkit.lab.report.write_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report_stats import _KIND, _LABEL, _curves, ranking_metric


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

"""``poolkit demo``: the picture everyone draws to explain pooling, computed for real.

A pattern (a handwritten "2" from scikit-learn's digits, or an image you pass) is
placed at the top-left and at the bottom-right of an empty canvas. A convolution
with fixed edge filters gives feature maps that move with the pattern
(equivariance: the map of the moved pattern is the moved map, error 0). Pooling
with growing windows then shrinks the maps until global pooling gives the same
output for both placements (invariance: error 0). Under every pooled map the
figure prints two measured invariance errors (:func:`poolkit.measure.invariance`,
``||f(T x) - f(x)|| / ||f(x)||``): for the move from one corner to the other, and
the mean over small moves of 1 to 3 pixels, which pooling absorbs gradually as the
window grows.

Example:
    >>> fig, rows = make_demo_figure(stats=("max", "avg"), sizes=(4, "global"))
    >>> [(r["stage"], r["statistic"], r["size"]) for r in rows][:3]
    [('conv', '', ''), ('pool', 'max', '4'), ('pool', 'max', 'global')]
    >>> rows[2]["move_error"]
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import typer
from torch import Tensor, nn

import poolkit
from poolkit.measure import equivariance, invariance

__all__ = ["DEFAULT_SIZES", "DEFAULT_STATS", "demo_cli", "digit_pattern", "edge_conv", "image_pattern",
           "make_demo_figure", "place", "format_rows"]

DEFAULT_STATS = ("max", "lp:p=4", "avg")
DEFAULT_SIZES: tuple[int | str, ...] = (2, 4, 8, "global")
#: small moves whose mean invariance error is the "jitter" number
JITTER = [(1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (2, 2), (3, 0), (0, 3), (3, 3)]


def digit_pattern(digit: int = 2, index: int = 15, size: int = 16) -> Tensor:
    """A handwritten digit from scikit-learn's bundled 8x8 digits, upsampled to ``size`` x ``size``.

    Args:
        digit: which digit, 0-9.
        index: which sample of that digit in the data set (default 15: a clearly written 2).
        size: side of the returned pattern in pixels (>= 8).

    Returns:
        ``(size, size)`` float tensor in ``[0, 1]``, ink bright on a zero background.
    """
    if not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an int in 0..9, got {digit!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = (data.target == digit).nonzero()[0]
    if not isinstance(index, int) or not 0 <= index < len(idx):
        raise ValueError(f"index must be an int in 0..{len(idx) - 1} (samples of digit {digit}), got {index!r}")
    img = torch.tensor(data.images[idx[index]], dtype=torch.float32) / 16.0
    img = F.interpolate(img[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return img.clamp(0.0, 1.0)


def image_pattern(path: str | Path, size: int = 16) -> Tensor:
    """An image file as a grayscale pattern whose longer side is ``size`` pixels.

    PNG is read natively (other formats need Pillow). Colour is averaged to gray; an
    image on a light background is inverted so the pattern is bright on zero, which
    makes the shifted canvas an exact shift.

    Returns:
        ``(h, w)`` float tensor in ``[0, 1]`` with ``max(h, w) == size``.
    """
    import matplotlib.image as mpimg

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image {str(path)!r} is not a file")
    if not isinstance(size, int) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")
    try:
        arr = mpimg.imread(str(path))
    except Exception as err:  # matplotlib/Pillow raise many kinds for unreadable files
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from None
    img = torch.as_tensor(arr, dtype=torch.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    if img.ndim != 2 or min(img.shape) < 2:
        raise ValueError(f"image {str(path)!r} must be a 2-D picture, got array shape {tuple(arr.shape)}")
    if img.max() > 1.0:
        img = img / 255.0
    if img.mean() > 0.5:
        img = 1.0 - img
    h, w = img.shape
    scale = size / max(h, w)
    hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(img[None, None], size=hw, mode="area")[0, 0].clamp(0.0, 1.0)


def place(pattern: Tensor, canvas: int, corner: str, margin: int = 2) -> Tensor:
    """``pattern`` on an empty ``canvas`` x ``canvas`` image, at the ``"top-left"`` or ``"bottom-right"``.

    Returns:
        ``(1, 1, canvas, canvas)``.
    """
    h, w = pattern.shape
    if canvas < 2 * max(h, w) + 2 * margin:
        raise ValueError(f"canvas must be >= 2 * pattern side + 2 * margin = {2 * max(h, w) + 2 * margin}, "
                         f"got {canvas}")
    x = torch.zeros(1, 1, canvas, canvas)
    if corner == "top-left":
        x[0, 0, margin : margin + h, margin : margin + w] = pattern
    elif corner == "bottom-right":
        x[0, 0, canvas - margin - h : canvas - margin, canvas - margin - w : canvas - margin] = pattern
    else:
        raise ValueError(f"corner must be 'top-left' or 'bottom-right', got {corner!r}")
    return x


def edge_conv() -> nn.Conv2d:
    """A fixed 3x3 convolution with four oriented edge filters (vertical, horizontal, two diagonals)."""
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 4
    diag = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]]) / 4
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([sobel, sobel.T, diag, diag.flip(1)])[:, None])
    conv.requires_grad_(False)
    return conv


def _parse_sizes(sizes: Sequence[int | str], canvas: int) -> list[int | str]:
    out: list[int | str] = []
    for s in sizes:
        if isinstance(s, str) and s.strip().lower() == "global":
            out.append("global")
            continue
        try:
            k = int(s)
        except (TypeError, ValueError):
            raise ValueError(f"sizes must be ints >= 1 or 'global', got {s!r}") from None
        if not 1 <= k <= canvas:
            raise ValueError(f"sizes must be ints in 1..canvas ({canvas}) or 'global', got {s!r}")
        out.append(k)
    if not out:
        raise ValueError("sizes must not be empty")
    return out


def make_demo_figure(
    pattern: Tensor | None = None,
    *,
    stats: Sequence[str] = DEFAULT_STATS,
    sizes: Sequence[int | str] = DEFAULT_SIZES,
    canvas: int = 40,
    margin: int = 2,
    title: str | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Compute the equivariance-to-invariance picture and draw it.

    The pattern goes to the top-left (A) and the bottom-right (B) of the canvas; both
    go through :func:`edge_conv` + ReLU and then through each pool (``stats`` x
    ``sizes``, stride = window, ``"global"`` = ``output_size=1``). Errors are measured
    with :mod:`poolkit.measure` on the whole 4-channel maps, with zero fill (the canvas
    is empty around the pattern, so the moved canvas is exactly B).

    Args:
        pattern: ``(h, w)`` image in ``[0, 1]``; default: a handwritten "2" (:func:`digit_pattern`).
        stats: pool specs for :func:`poolkit.create_pool` (``"max"``, ``"lp:p=4"``, ``"avg"``, ...).
        sizes: window sizes (ints) and/or ``"global"``.
        canvas: side of the square canvas; at least twice the pattern plus margins.
        margin: empty pixels between the pattern and the canvas border.
        title: figure title (default: a sentence about the picture).

    Returns:
        ``(figure, rows)``: a matplotlib Figure and one dict per stage with keys
        ``stage`` (``"conv"``/``"pool"``), ``statistic``, ``size``, ``output_shape``,
        ``move_error`` (A vs B), ``jitter_error`` (mean over moves of 1-3 px) and, for
        the conv, ``equivariance_error``.

    Example:
        >>> fig, rows = make_demo_figure(sizes=("global",))
        >>> all(r["move_error"] < 1e-6 for r in rows if r["size"] == "global")
        True
    """
    if isinstance(stats, str):
        stats = [s for s in stats.split(",") if s.strip()]
    if not stats:
        raise ValueError("stats must name at least one pool, e.g. ('max', 'avg')")
    if not isinstance(canvas, int) or canvas < 8:
        raise ValueError(f"canvas must be an int >= 8, got {canvas!r}")
    sizes = _parse_sizes(sizes, canvas)
    pattern = digit_pattern() if pattern is None else torch.as_tensor(pattern, dtype=torch.float32)
    if pattern.ndim != 2:
        raise ValueError(f"pattern must be a 2-D (h, w) image, got shape {tuple(pattern.shape)}")
    xa = place(pattern, canvas, "top-left", margin)
    xb = place(pattern, canvas, "bottom-right", margin)
    move = (canvas - 2 * margin - pattern.shape[0], canvas - 2 * margin - pattern.shape[1])

    conv = edge_conv()
    features = nn.Sequential(conv, nn.ReLU())
    with torch.no_grad():
        fa, fb = features(xa), features(xb)
    conv_row: dict[str, Any] = {
        "stage": "conv",
        "statistic": "",
        "size": "",
        "output_shape": tuple(fa.shape[1:]),
        "equivariance_error": float(equivariance(features, xa, [move], mode="zeros")),
        "move_error": float(invariance(features, xa, [move], mode="zeros")),
        "jitter_error": float(invariance(features, xa, JITTER, mode="zeros")),
    }
    rows = [conv_row]
    pooled: dict[tuple[str, int | str], tuple[Tensor, Tensor]] = {}
    for spec in stats:
        for k in sizes:
            if k == "global":
                pool = poolkit.create_pool(spec, dim=2, output_size=1, channels=4)
            else:
                pool = poolkit.create_pool(spec, dim=2, kernel_size=k, channels=4)
            pool.eval()
            f = nn.Sequential(features, pool)
            with torch.no_grad():
                pa, pb = f(xa), f(xb)
            pa = pa[0] if isinstance(pa, tuple) else pa
            pb = pb[0] if isinstance(pb, tuple) else pb
            pooled[(spec, k)] = (pa, pb)
            rows.append({
                "stage": "pool",
                "statistic": spec,
                "size": str(k),
                "output_shape": tuple(pa.shape[1:]),
                "move_error": float(invariance(f, xa, [move], mode="zeros")),
                "jitter_error": float(invariance(f, xa, JITTER, mode="zeros")),
            })

    fig = _draw(xa, xb, fa, fb, pooled, rows, list(stats), sizes, move, title)
    return fig, rows


def _show(ax: Any, img: Tensor, vmax: float, cmap: str) -> Any:
    ax.imshow(img.numpy(), cmap=cmap, vmin=0.0, vmax=max(vmax, 1e-12), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.6")
    return ax


def _draw(
    xa: Tensor,
    xb: Tensor,
    fa: Tensor,
    fb: Tensor,
    pooled: dict[tuple[str, int | str], tuple[Tensor, Tensor]],
    rows: list[dict[str, Any]],
    stats: list[str],
    sizes: list[int | str],
    move: tuple[int, int],
    title: str | None,
) -> Any:
    # A bare Figure (no pyplot): no GUI backend, nothing to close, safe in threads and servers.
    import matplotlib
    from matplotlib.figure import Figure

    n_cols = 2 + len(sizes)
    n_rows = 2 * len(stats)
    fig = Figure(figsize=(1.9 * n_cols + 0.6, 1.75 * n_rows + 3.6), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=[1.75 * n_rows, 2.6])
    grid = outer[0].subgridspec(n_rows, n_cols, hspace=0.05, wspace=0.08)
    by_key = {(r["statistic"], r["size"]): r for r in rows}
    conv_row = rows[0]

    # Inputs and conv maps span the full height: they do not depend on the statistic.
    half = max(1, len(stats))
    for i, (x, f, name) in enumerate(((xa, fa, "A: top-left"), (xb, fb, "B: bottom-right"))):
        sl = slice(i * half, (i + 1) * half)
        ax = _show(fig.add_subplot(grid[sl, 0]), x[0, 0], 1.0, "gray_r")
        ax.set_ylabel(name, fontsize=10)
        if i == 0:
            ax.set_title("input", fontsize=10)
        vmax = float(torch.maximum(fa.mean(1).max(), fb.mean(1).max()))
        ax = _show(fig.add_subplot(grid[sl, 1]), f[0].mean(0), vmax, "magma")
        if i == 0:
            ax.set_title("conv + ReLU\n(4 edge filters, mean shown)", fontsize=9)
        else:
            ax.set_xlabel(
                f"equivariance err {conv_row['equivariance_error']:.2f}\ninvariance err {conv_row['move_error']:.2f}",
                fontsize=9,
            )

    for s, spec in enumerate(stats):
        for j, k in enumerate(sizes):
            pa, pb = pooled[(spec, k)]
            vmax = float(torch.maximum(pa.mean(1).max(), pb.mean(1).max()))
            r = by_key[(spec, str(k))]
            if k == "global":  # one number per channel: show the 4 channels side by side
                vmax = float(torch.maximum(pa.max(), pb.max()))
            for i, p in enumerate((pa, pb)):
                img = p[0].flatten(1).T if k == "global" else p[0].mean(0)
                ax = _show(fig.add_subplot(grid[2 * s + i, 2 + j]), img, vmax, "magma")
                if i == 0:
                    shape = "x".join(str(v) for v in p.shape[2:])
                    what = f"global → {p.shape[1]} channels" if k == "global" else f"k={k} → {shape}"
                    ax.set_title(f"{spec} {what}", fontsize=9)
                else:
                    ax.set_xlabel(f"inv. err {r['move_error']:.2f} (A↔B)\n{r['jitter_error']:.2f} (1–3 px)", fontsize=8)
                if j == 0:
                    ax.set_ylabel("A" if i == 0 else "B", fontsize=9, rotation=0, labelpad=8)

    # Summary: invariance error against pool size for each statistic.
    ax = fig.add_subplot(outer[1])
    labels = ["conv", *(str(k) if k == "global" else f"k={k}" for k in sizes)]
    xs = list(range(len(labels)))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for s, spec in enumerate(stats):
        move_err = [conv_row["move_error"], *(by_key[(spec, str(k))]["move_error"] for k in sizes)]
        jitter = [conv_row["jitter_error"], *(by_key[(spec, str(k))]["jitter_error"] for k in sizes)]
        c = colors[s % len(colors)]
        ax.plot(xs, move_err, "-o", color=c, label=f"{spec}: move A↔B")
        ax.plot(xs, jitter, "--s", color=c, label=f"{spec}: moves of 1–3 px", alpha=0.8)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("stage (pool window size)")
    ax.set_ylabel("invariance error\n‖f(Tx) − f(x)‖ / ‖f(x)‖")
    ax.set_ylim(bottom=-0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=min(3, len(stats)), loc="lower left", framealpha=0.9)
    fig.suptitle(
        title
        or f"Convolution moves with the pattern (equivariance); pooling forgets where it is (invariance)\n"
        f"pattern moved by {move[0]}x{move[1]} px; A and B share the colour scale in each column",
        fontsize=11,
    )
    return fig


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The demo's numbers as a fixed-width table."""
    lines = [f"{'stage':<6}{'statistic':<12}{'size':<8}{'output':<14}{'equiv err':>10}{'inv err A↔B':>13}"
             f"{'inv err 1-3px':>15}"]
    for r in rows:
        eq = f"{r['equivariance_error']:.3f}" if "equivariance_error" in r else "-"
        shape = "x".join(str(v) for v in r["output_shape"])
        lines.append(f"{r['stage']:<6}{r['statistic']:<12}{r['size']:<8}{shape:<14}{eq:>10}"
                     f"{r['move_error']:>13.3f}{r['jitter_error']:>15.3f}")
    return "\n".join(lines)


def demo_cli(
    out: Path = typer.Option(Path("poolkit-demo.png"), "--out", help="PNG file to write"),  # noqa: B008
    image: Path | None = typer.Option(None, "--image", help="use this image (PNG) instead of a handwritten 2"),  # noqa: B008
    digit: int = typer.Option(2, "--digit", min=0, max=9, help="which handwritten digit to use"),
    stats: str = typer.Option(",".join(DEFAULT_STATS), "--stats", help="comma-separated pool specs"),
    sizes: str = typer.Option(",".join(str(s) for s in DEFAULT_SIZES), "--sizes",
                              help="comma-separated window sizes and/or 'global'"),
    canvas: int = typer.Option(40, "--canvas", min=8, help="canvas side in pixels"),
    pattern_size: int = typer.Option(16, "--pattern-size", min=4, help="pattern side in pixels"),
    dpi: int = typer.Option(120, "--dpi", min=30),
) -> None:
    """Draw the equivariance-to-invariance picture: a pattern at two corners, conv maps, pooled maps."""
    try:
        pattern = image_pattern(image, pattern_size) if image is not None else digit_pattern(digit, size=pattern_size)
        fig, rows = make_demo_figure(
            pattern, stats=[s.strip() for s in stats.split(",") if s.strip()], sizes=sizes.split(","), canvas=canvas
        )
    except (ValueError, TypeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    typer.echo(format_rows(rows))
    typer.echo(f"\nwrote {out}")

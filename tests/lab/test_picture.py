"""``poolkit demo``: the equivariance-to-invariance picture and its numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
typer = pytest.importorskip("typer")

from typer.testing import CliRunner  # noqa: E402

from poolkit.lab.picture import (  # noqa: E402
    demo_cli,
    digit_pattern,
    edge_conv,
    format_rows,
    image_pattern,
    make_demo_figure,
    place,
)


@pytest.fixture(scope="module")
def demo() -> tuple:
    return make_demo_figure(stats=("max", "avg"), sizes=(2, 8, "global"))


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("demo")(demo_cli)
    app.command("other")(lambda: None)  # two commands, so "demo" stays a sub-command
    return app


def test_digit_pattern() -> None:
    p = digit_pattern(2, size=16)
    assert p.shape == (16, 16) and p.min() >= 0 and p.max() <= 1 and p.max() > 0.5
    assert p[0].abs().sum() < p[4:12].abs().sum(1).max() * 2  # a digit, not noise
    with pytest.raises(ValueError, match=r"digit must be an int in 0\.\.9"):
        digit_pattern(12)
    with pytest.raises(ValueError, match=r"index must be an int in 0\.\."):
        digit_pattern(2, index=10_000)


def test_place_moves_the_pattern_exactly() -> None:
    p = digit_pattern()
    a, b = place(p, 40, "top-left"), place(p, 40, "bottom-right")
    assert torch.equal(torch.roll(a, (20, 20), dims=(2, 3)), b)
    assert a.sum() == b.sum() == p.sum()
    with pytest.raises(ValueError, match="canvas must be >= 2 \\* pattern side"):
        place(p, 30, "top-left")
    with pytest.raises(ValueError, match="corner must be"):
        place(p, 40, "middle")


def test_rows_measure_equivariance_then_invariance(demo: tuple) -> None:
    _fig, rows = demo
    conv = rows[0]
    assert conv["stage"] == "conv" and conv["output_shape"] == (4, 40, 40)
    # The conv map moves with the pattern: exactly equivariant, far from invariant.
    assert conv["equivariance_error"] < 1e-6
    assert conv["move_error"] == pytest.approx(2**0.5, abs=1e-4)  # disjoint maps of equal norm
    pools = {(r["statistic"], r["size"]): r for r in rows[1:]}
    assert set(pools) == {(s, k) for s in ("max", "avg") for k in ("2", "8", "global")}
    assert pools[("max", "2")]["output_shape"] == (4, 20, 20)
    assert pools[("avg", "8")]["output_shape"] == (4, 5, 5)
    for stat in ("max", "avg"):
        # Global pooling forgets where the pattern is; windowed pooling does not.
        assert pools[(stat, "global")]["move_error"] < 1e-6
        assert pools[(stat, "global")]["jitter_error"] < 1e-6
        assert pools[(stat, "2")]["move_error"] > 1.0
        # Small moves are absorbed more and more as the window grows.
        assert conv["jitter_error"] > pools[(stat, "2")]["jitter_error"] > pools[(stat, "8")]["jitter_error"] > 0.1


def test_rows_match_a_direct_computation(demo: tuple) -> None:
    _fig, rows = demo
    xa, xb = place(digit_pattern(), 40, "top-left"), place(digit_pattern(), 40, "bottom-right")
    conv = edge_conv()
    fa, fb = torch.relu(conv(xa)), torch.relu(conv(xb))
    pa, pb = torch.nn.functional.max_pool2d(fa, 8), torch.nn.functional.max_pool2d(fb, 8)
    expect = float((pb - pa).norm() / pa.norm())
    got = next(r for r in rows if r["statistic"] == "max" and r["size"] == "8")["move_error"]
    assert got == pytest.approx(expect, rel=1e-5)


def test_figure_has_every_panel(demo: tuple) -> None:
    fig, _rows = demo
    titles = [ax.get_title() for ax in fig.axes]
    assert "input" in titles
    assert any(t.startswith("max k=2") for t in titles) and any(t.startswith("avg global") for t in titles)
    # input + conv for A and B, 2 stats x 3 sizes x 2 placements, and the summary plot
    assert len(fig.axes) == 4 + 12 + 1
    summary = fig.axes[-1]
    assert len(summary.get_lines()) == 4  # per stat: corner move and small moves
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert any("inv. err 0.00 (A↔B)" in lab for lab in labels)


def test_format_rows(demo: tuple) -> None:
    text = format_rows(demo[1])
    assert text.splitlines()[0].split()[:3] == ["stage", "statistic", "size"]
    assert len(text.splitlines()) == 1 + 1 + 6


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"sizes must be ints in 1\.\.canvas"):
        make_demo_figure(sizes=(0,))
    with pytest.raises(ValueError, match="sizes must be ints >= 1 or 'global'"):
        make_demo_figure(sizes=("big",))
    with pytest.raises(ValueError, match="unknown pool 'nope'"):
        make_demo_figure(stats=("nope",), sizes=("global",))
    with pytest.raises(ValueError, match="pattern must be a 2-D"):
        make_demo_figure(torch.rand(2, 3, 4), sizes=("global",))


def test_image_pattern(tmp_path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = np.ones((30, 20, 3))  # white background, dark bar: gets inverted
    img[5:25, 8:12] = 0.0
    mpimg.imsave(tmp_path / "bar.png", img)
    p = image_pattern(tmp_path / "bar.png", size=15)
    assert p.shape == (15, 10)
    assert p[:, 4:6].mean() > 0.5 > p[:, :2].mean()
    with pytest.raises(ValueError, match="is not a file"):
        image_pattern(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        image_pattern(tmp_path / "junk.png")


def test_cli_writes_png_and_prints_numbers(tmp_path: Path) -> None:
    out = tmp_path / "fig" / "demo.png"
    res = CliRunner().invoke(_app(), ["demo", "--out", str(out), "--stats", "max,avg", "--sizes", "4,global",
                                      "--dpi", "40"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = res.output.splitlines()
    assert lines[0].startswith("stage") and "wrote" in lines[-1]
    glob = [ln for ln in lines if ln.startswith("pool") and "global" in ln]
    assert len(glob) == 2 and all(ln.split()[-2:] == ["0.000", "0.000"] for ln in glob)


def test_cli_with_an_image_and_bad_input(tmp_path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = np.zeros((12, 12))
    img[2:10, 5:7] = 1.0
    mpimg.imsave(tmp_path / "i.png", img, cmap="gray")
    res = CliRunner().invoke(_app(), ["demo", "--image", str(tmp_path / "i.png"), "--out", str(tmp_path / "d.png"),
                                      "--sizes", "global", "--stats", "max", "--dpi", "40"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d.png").is_file()
    res = CliRunner().invoke(_app(), ["demo", "--stats", "nope", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "unknown pool 'nope'" in res.output
    assert not (tmp_path / "x.png").exists()

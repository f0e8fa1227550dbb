"""``poolkit audit``: load a user's model, profile it, and compare before/after surgery."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
typer = pytest.importorskip("typer")

from typer.testing import CliRunner  # noqa: E402

from poolkit.lab.audit import (  # noqa: E402
    audit,
    audit_cli,
    load_inputs,
    load_model,
    parse_shape,
    parse_shift_list,
)

NET_PY = textwrap.dedent(
    """
    import torch
    from torch import nn


    def small(classes=5):
        # "same"-padded layers and a global pool: make_shift_invariant("aps") makes it exactly invariant.
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes),
        )


    def features():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2))


    class Mixed(nn.Module):
        # a functional pool in forward, a pool to 2x2, data-dependent control flow in a block
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.block = Gate()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(self.conv(x), 2)
            return self.fc(torch.flatten(self.pool(self.block(x)), 1))


    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x


    def mixed():
        torch.manual_seed(0)
        return Mixed()


    def not_a_model():
        return 42
    """
)


@pytest.fixture(scope="module")
def netfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "nets.py"
    path.write_text(NET_PY)
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("audit")(audit_cli)
    app.command("other")(lambda: None)
    return app


def test_parsers() -> None:
    assert parse_shape("3,32,32") == (3, 32, 32) == parse_shape("3x32x32")
    assert parse_shape([2, 100]) == (2, 100)
    with pytest.raises(ValueError, match="input shape must be C then 1 to 3 spatial sizes"):
        parse_shape("32")
    with pytest.raises(ValueError, match="input shape must be integers"):
        parse_shape("3,a,b")
    assert parse_shift_list("1,2", 2) == [(1, 1), (2, 2)]
    assert parse_shift_list("1x0,0x3", 2) == [(1, 0), (0, 3)]
    default = parse_shift_list(None, 2)
    assert (1, 0) in default and (0, 4) in default and (4, 4) in default and len(default) == 12
    assert parse_shift_list(None, 1) == [(1,), (2,), (3,), (4,)]
    with pytest.raises(ValueError, match="has 3 entries, the input has 2 spatial axes"):
        parse_shift_list("1x1x1", 2)
    with pytest.raises(ValueError, match="shifts must be ints"):
        parse_shift_list("a", 2)


def test_load_model_from_file_and_weights(netfile: Path, tmp_path: Path) -> None:
    model = load_model(f"{netfile}:small")
    assert isinstance(model, nn.Sequential) and not model.training
    other = nn.Sequential(*[m for m in load_model(f"{netfile}:small")])
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    loaded = load_model(f"{netfile}:small", tmp_path / "w.pt")
    assert torch.equal(loaded[0].weight, other[0].weight)
    torch.save({"state_dict": other.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    assert torch.equal(load_model(f"{netfile}:small", tmp_path / "ckpt.pt")[0].weight, other[0].weight)

    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not match the model"):
        load_model(f"{netfile}:small", tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no callable 'missing'"):
        load_model(f"{netfile}:missing")
    with pytest.raises(ValueError, match=r"must return a torch\.nn\.Module, got int"):
        load_model(f"{netfile}:not_a_model")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        load_model("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="neither an existing TorchScript file nor 'module:factory'"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a TorchScript file"):
        load_model(tmp_path / "junk.pt")


def test_load_model_importable_module() -> None:
    model = load_model("torch.nn:Identity")
    assert isinstance(model, nn.Identity)


def test_load_inputs(tmp_path: Path) -> None:
    x, what = load_inputs(None, (1, 8, 8), 5, seed=1)
    assert x.shape == (5, 1, 8, 8) and what == "random uniform inputs"
    assert torch.equal(x, load_inputs(None, (1, 8, 8), 5, seed=1)[0])
    np.savez(tmp_path / "d.npz", X=np.ones((10, 1, 8, 8)), X_test=np.zeros((7, 1, 8, 8)), y=np.zeros(10))
    x, what = load_inputs(f"npz:{tmp_path / 'd.npz'}", (1, 8, 8), 5)
    assert x.shape == (5, 1, 8, 8) and x.dtype == torch.float32 and float(x.abs().sum()) == 0 and "X_test" in what
    with pytest.raises(ValueError, match=r"has samples of shape \(1, 8, 8\), but --input-shape is \(3, 8, 8\)"):
        load_inputs(f"npz:{tmp_path / 'd.npz'}", (3, 8, 8), 5)
    with pytest.raises(ValueError, match="data must be 'npz:PATH'"):
        load_inputs("csv:foo", (1, 8, 8), 5)
    np.savez(tmp_path / "e.npz", Z=np.ones(3))
    with pytest.raises(ValueError, match="must hold an array 'X' or 'X_test'"):
        load_inputs(f"npz:{tmp_path / 'e.npz'}", (1, 8, 8), 5)


def test_audit_profile_and_consistency(netfile: Path) -> None:
    model = load_model(f"{netfile}:small")
    before = [p.clone() for p in model.parameters()]
    res = audit(model, (1, 16, 16), n_samples=12, n_profile=4)
    frame = res.frames()["before"]
    assert list(frame["layer"])[:3] == ["input", "0", "1"] and list(frame["type"])[-1] == "Linear"
    assert res.profile["input"].equivariance.mean == 0.0  # shifting the input is the shift itself
    assert 0.0 <= res.consistency.consistency <= 1.0 and res.consistency.n == 12
    assert res.fixed_profile is None and res.fix is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not edited
    text = res.table()
    assert "model as given" in text and "consistency" in text and "MaxPool2d" in text


def test_fix_aps_makes_the_output_invariant(netfile: Path) -> None:
    model = load_model(f"{netfile}:small")
    res = audit(model, (1, 16, 16), n_samples=16, n_profile=4, fix="aps")
    assert res.profile[-1].invariance.mean > 1e-4  # zero padding and strides: not invariant as given
    assert res.fixed_profile[-1].invariance.mean < 1e-5
    assert res.fixed_consistency.consistency == 1.0 and res.fixed_consistency.flip_rate == 0.0
    assert [c.name for c in res.changes] == ["0", "2", "3"]
    assert isinstance(model[2], nn.MaxPool2d)  # surgery ran on a copy
    s = res.summary()
    assert s["fixed_output_invariance"] < s["output_invariance"]
    assert "after --fix aps" in res.table() and "ApsPool2d" in res.table()
    fig = res.plot()
    assert len(fig.axes) == 2 and "after --fix aps" in fig.axes[1].get_title()


def test_fix_blur_reduces_aliasing(netfile: Path) -> None:
    model = load_model(f"{netfile}:small")
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    res = audit(model, (1, 16, 16), data=x, fix="blur", n_profile=8)
    assert {c.name for c in res.changes} >= {"2", "3"}
    # The ReLU after the strided conv ("4") gets the blur after it ("4.1"): closer to equivariant there.
    assert [c.name for c in res.changes if c.name == "4"] == ["4"]
    after, before = res.fixed_profile["4.1"].equivariance, res.profile["4"].equivariance
    assert after.stride == before.stride == (4.0, 4.0)
    assert after.mean < before.mean


def test_audit_1d_features_without_logits(netfile: Path) -> None:
    model = load_model(f"{netfile}:features")
    res = audit(model, (2, 32), n_samples=4)
    assert res.consistency is None
    assert any("consistency skipped" in n for n in res.notes)
    assert res.profile["2"].stride == (2.0,)


def test_audit_rejects_bad_input(netfile: Path) -> None:
    model = load_model(f"{netfile}:small")
    with pytest.raises(ValueError, match="fix must be one of blur, aps"):
        audit(model, (1, 16, 16), fix="magic")
    with pytest.raises(ValueError, match=r"data must have shape \(N >= 1, 1, 16, 16\)"):
        audit(model, (1, 16, 16), data=torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"the model cannot run on inputs of shape \(N, 3, 16, 16\)"):
        audit(model, (3, 16, 16))
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        audit(lambda t: t, (1, 16, 16))
    with pytest.raises(ValueError, match="each shift needs 2 entries"):
        audit(model, (1, 16, 16), shifts=[(1,)])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_model(netfile: Path, tmp_path: Path) -> None:
    scripted = torch.jit.script(load_model(f"{netfile}:small"))
    scripted.save(str(tmp_path / "m.pt"))
    model = load_model(tmp_path / "m.pt")
    res = audit(model, (1, 16, 16), n_samples=8, n_profile=4)
    assert [lp.name for lp in res.profile] == ["input", "output"]
    assert res.consistency is not None and any("TorchScript" in n for n in res.notes)
    with pytest.raises(ValueError, match="a TorchScript model cannot be converted"):
        audit(model, (1, 16, 16), fix="aps")
    with pytest.raises(ValueError, match="weights apply to 'module:factory' models"):
        load_model(tmp_path / "m.pt", tmp_path / "m.pt")


def test_cli(netfile: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).random((20, 1, 16, 16)), y=np.zeros(20))
    out = tmp_path / "plots" / "audit.png"
    res = CliRunner().invoke(_app(), [
        "audit", f"{netfile}:small", "--input-shape", "1,16,16", "--data", f"npz:{tmp_path / 'd.npz'}",
        "--shifts", "1x0,0x1,2x2", "--fix", "aps", "--samples", "10", "--profile-samples", "3", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    assert "3 circular shifts, 10 samples (X from d.npz)" in res.output
    assert "after --fix aps" in res.output and "output invariance" in res.output
    assert out.read_bytes()[:4] == b"\x89PNG"

    res = CliRunner().invoke(_app(), ["audit", f"{netfile}:small", "--input-shape", "1,16,16", "--fix", "bogus",
                                      "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "fix must be one of blur, aps" in res.output
    res = CliRunner().invoke(_app(), ["audit", "nothing-here", "--input-shape", "1,16,16"])
    assert res.exit_code == 2 and "neither an existing TorchScript file" in res.output


def test_fix_says_what_it_could_not_do(netfile: Path, tmp_path: Path) -> None:
    res = audit(load_model(f"{netfile}:mixed"), (1, 16, 16), n_samples=4, n_profile=2, fix="aps")
    assert [c.name for c in res.changes] == ["conv", "block.conv"]
    assert [(s.name, s.what) for s in res.changes.skipped] == [
        ("pool", "AdaptiveAvgPool2d(output_size=2)"), ("(model)", "max_pool2d() in forward")]
    assert [s.name for s in res.changes.untraced] == ["block"]
    assert "control flow" in res.changes.untraced[0].reason
    out = CliRunner().invoke(_app(), ["audit", f"{netfile}:mixed", "--input-shape", "1,16,16", "--fix", "aps",
                                      "--samples", "4", "--profile-samples", "2", "--out", str(tmp_path / "m.png")])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "surgery (--fix aps): 2 change(s)" in text and "  conv: Conv2d(1, 4" in text
    assert "left as they were (2):" in text and "  (model): max_pool2d() in forward: a functional call" in text
    assert "not traced by torch.fx (1):" in text and "  block: data-dependent control flow" in text


def test_audit_device(netfile: Path, tmp_path: Path) -> None:
    model = load_model(f"{netfile}:small")
    res = audit(model, (1, 16, 16), n_samples=4, n_profile=2, device="cpu")
    assert 0.0 <= res.consistency.consistency <= 1.0
    with pytest.raises(ValueError, match="device"):
        audit(model, (1, 16, 16), n_samples=4, n_profile=2, device="tpu")
    res = CliRunner().invoke(_app(), ["audit", f"{netfile}:small", "--input-shape", "1,16,16", "--device", "gpu0",
                                      "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "device must be" in res.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_audit_on_cuda_leaves_the_model_where_it_was(netfile: Path) -> None:
    model = load_model(f"{netfile}:small")
    res = audit(model, (1, 16, 16), n_samples=4, n_profile=2, device="cuda", fix="aps")
    assert next(model.parameters()).device.type == "cpu" and res.fixed_profile is not None

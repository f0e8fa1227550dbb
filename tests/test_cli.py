import subprocess
import sys

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from poolkit.cli import app, parse_levers, parse_options

runner = CliRunner()


def test_list_shows_pools_and_datasets():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0
    assert "max" in r.output and "avg" in r.output and "mnist1d" in r.output and "digits-where" in r.output


def test_parsers():
    assert parse_levers("0, 0.5,1") == [0.0, 0.5, 1.0]
    assert parse_options(["canvas=32", "task=quadrant"]) == {"canvas": 32, "task": "quadrant"}


def test_bad_arguments_are_refused_with_a_message(tmp_path):
    r = runner.invoke(app, ["study", "--levers", "0,2", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "levers" in r.output
    r = runner.invoke(app, ["study", "--pools", "nosuch", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown pool" in r.output
    r = runner.invoke(app, ["study", "--dataset", "digits-shift", "--padding", "reflect", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "padding" in r.output
    r = runner.invoke(app, ["study", "--sampler", "tpe", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--n-trials" in r.output


def test_study_then_report(tmp_path):
    out = tmp_path / "o"
    args = ["study", "--dataset", "digits-where", "--pools", "max", "--levers", "0,1", "--seeds", "1",
            "--steps", "3", "--channels", "4", "--train-size", "40", "--data-option", "test_size=20",
            "--padding", "circular", "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "digits-where-circular" in r.output and "report:" in r.output and "Finding:" in r.output
    rep = out / "report-digits-where-circular"
    assert len(pd.read_csv(rep / "trials.csv")) == 2
    url = f"sqlite:///{(out / 'poolkit.db').resolve()}"
    r = runner.invoke(app, ["report", "digits-where-circular", "--storage", url, "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r2" / "index.html").exists()
    r = runner.invoke(app, ["report", "nosuch", "--storage", url, "--out", str(tmp_path / "r3")])
    assert r.exit_code == 2 and "no study" in r.output


def test_python_dash_m_poolkit():
    r = subprocess.run([sys.executable, "-m", "poolkit", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "study" in r.stdout and "report" in r.stdout


def test_demo_and_audit_are_poolkit_commands(tmp_path):
    png = tmp_path / "demo.png"
    r = runner.invoke(app, ["demo", "--out", str(png), "--sizes", "2,global", "--stats", "max"])
    assert r.exit_code == 0, r.output
    assert png.stat().st_size > 10_000 and "global" in r.output
    model = tmp_path / "net.py"
    model.write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, padding_mode='circular'),\n"
        "                               torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.AdaptiveAvgPool2d(1),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(4, 3))\n"
    )
    plot = tmp_path / "audit.png"
    r = runner.invoke(app, ["audit", f"{model}:make", "--input-shape", "1,16,16", "--samples", "8",
                            "--profile-samples", "4", "--fix", "aps", "--out", str(plot)])
    assert r.exit_code == 0, r.output
    assert plot.exists() and "MaxPool2d" in r.output


def test_bad_levers_name_the_option_and_the_accepted_forms(tmp_path):
    with pytest.raises(typer.BadParameter, match=r"^--levers must be a list of numbers in \[0, 1\].*"
                       r"comma-separated string of numbers \('0,0.5,1'\), or 'learn'.*got 'lern'"):
        parse_levers("lern")
    assert parse_levers("learn:steps=3") == "learn:steps=3"  # the learned-λ mode parses it, not the CLI
    r = runner.invoke(app, ["study", "--levers", "0,abc", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--levers" in r.output and "'learn'" in r.output

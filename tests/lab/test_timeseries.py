"""Rare-event CSV loading: windows, horizon, split by time, standardization, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")

from poolkit.lab.timeseries import load_csv, make_example_csv  # noqa: E402


def _write(path: Path, rows: int = 100, positives: tuple[int, ...] = (20, 50, 85), **extra: list) -> Path:
    """A CSV whose feature ``a`` is the row index and ``b`` its negative: windows can be read back."""
    label = np.zeros(rows, dtype=int)
    label[list(positives)] = 1
    cols = {"time": pd.date_range("2024-01-01", periods=rows, freq="min").astype(str), "a": np.arange(rows)}
    cols["b"] = -np.arange(rows)
    cols["label"] = label
    cols.update(extra)
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_csv(tmp_path_factory.mktemp("ts") / "faults.csv", n_steps=6000, fault_rate=0.008, seed=3)


def test_example_file(example: Path) -> None:
    frame = pd.read_csv(example)
    assert list(frame.columns) == ["time", "x1", "x2", "x3", "x4", "x5", "x6", "label"]
    assert len(frame) == 6000
    assert set(frame["label"].unique()) == {0, 1}
    assert frame["label"].sum() == 48  # fault_rate 0.008
    assert pd.to_datetime(frame["time"]).is_monotonic_increasing
    # Same seed, same file; another seed, another file.
    again = make_example_csv(example.with_name("again.csv"), n_steps=6000, fault_rate=0.008, seed=3)
    other = make_example_csv(example.with_name("other.csv"), n_steps=6000, fault_rate=0.008, seed=4)
    assert again.read_text() == example.read_text()
    assert other.read_text() != example.read_text()


def test_example_precursor_lead_varies(example: Path) -> None:
    # The precursor shows as x1 and x2 moving in opposite directions; its lead time before each fault must vary.
    frame = pd.read_csv(example)
    diff = (frame["x1"] - frame["x2"]).to_numpy()
    diff = diff - np.convolve(diff, np.ones(25) / 25, mode="same")
    leads = []
    for fault in np.flatnonzero(frame["label"].to_numpy()):
        seg = np.abs(diff[fault - 48 : fault])
        leads.append(48 - int(np.argmax(seg)))
    assert len(set(leads)) > 5, leads
    assert min(leads) >= 24 - 12 and max(leads) <= 48  # min_lead minus the burst's length .. max_lead


def test_load_example(example: Path) -> None:
    ds = load_csv(example, lookback=48, horizon=2)
    assert ds.num_classes == 2
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.X_train.shape[1:] == (6, 48) and ds.X_test.shape[1:] == (6, 48)
    assert ds.dim == 1 and ds.channels == 6
    assert set(ds.y_train.unique().tolist()) == {0, 1}
    assert ds.info["task"] == "binary" and ds.info["time_column"] == "time"
    assert ds.info["features"] == ["x1", "x2", "x3", "x4", "x5", "x6"]
    assert ds.info["positives_train"] == int(ds.y_train.sum()) > 0
    # 6000 rows, split at 4200; windows per part: rows - lookback - horizon + 1.
    assert ds.info["split_row"] == 4200
    assert len(ds.y_train) == 4200 - 48 - 2 + 1 and len(ds.y_test) == 1800 - 48 - 2 + 1


def test_standardization_fitted_on_training_rows_only(example: Path) -> None:
    ds = load_csv(example, lookback=16, horizon=0, step=16)  # step = lookback: each training row once
    raw = pd.read_csv(example)[ds.info["features"]].to_numpy()
    train, test = raw[:4200], raw[4200:]
    np.testing.assert_allclose(ds.info["mean"], train.mean(0), rtol=1e-9)
    np.testing.assert_allclose(ds.info["std"], train.std(0), rtol=1e-9)
    covered = ds.X_train.permute(0, 2, 1).reshape(-1, 6).double()
    assert covered.mean(0).abs().max() < 0.05
    expect_test = (test.mean(0) - train.mean(0)) / train.std(0)
    got_test = ds.X_test.permute(0, 2, 1).reshape(-1, 6).double().mean(0).numpy()
    np.testing.assert_allclose(got_test, expect_test, atol=0.1)


@pytest.mark.parametrize("horizon", [0, 1, 5])
def test_horizon_shifts_labels(tmp_path: Path, horizon: int) -> None:
    path = _write(tmp_path / "toy.csv")
    ds = load_csv(path, lookback=8, horizon=horizon, standardize=False, test_fraction=0.3)
    labels = pd.read_csv(path)["label"].to_numpy()
    last = ds.X_train[:, 0, -1].long()  # feature a is the row index
    assert torch.equal(ds.X_train[:, 0, 0].long(), last - 7)
    assert torch.equal(ds.X_train[:, 1], -ds.X_train[:, 0])
    assert torch.equal(ds.y_train, torch.from_numpy(labels[last.numpy() + horizon]))
    assert int(last[0]) == 7 and int(last[-1]) == 70 - 1 - horizon


def test_target_within(tmp_path: Path) -> None:
    path = _write(tmp_path / "toy.csv")  # positives at rows 20, 50, 85
    ds = load_csv(path, lookback=8, horizon=4, target="within", standardize=False)
    last = ds.X_train[:, 0, -1].long()
    # Positive when a fault is among the next 4 rows: windows ending at 16..19 and 46..49.
    assert last[ds.y_train == 1].tolist() == [16, 17, 18, 19, 46, 47, 48, 49]
    at = load_csv(path, lookback=8, horizon=4, target="at", standardize=False)
    assert at.X_train[at.y_train == 1, 0, -1].tolist() == [16.0, 46.0]
    with pytest.raises(ValueError, match="target must be one of at, within"):
        load_csv(path, lookback=8, target="soon")


def test_split_by_time_and_step(tmp_path: Path) -> None:
    path = _write(tmp_path / "toy.csv")
    ds = load_csv(path, lookback=8, horizon=1, step=3, standardize="false", test_fraction="0.3")
    assert ds.X_train[:, 0].max() < 70 <= ds.X_test[:, 0].min()  # no window straddles the split
    assert torch.equal(torch.diff(ds.X_train[:, 0, -1]), torch.full((len(ds.y_train) - 1,), 3.0))
    ends = ds.X_test[:, 0, -1].long()
    assert int(ends[0]) == 77 and torch.equal(torch.diff(ends), torch.full((len(ends) - 1,), 3))
    labels = torch.tensor(pd.read_csv(path)["label"].to_numpy())
    assert torch.equal(ds.y_test, labels[ends + 1])
    # step=1 keeps every window, so the positive at row 85 is the label of the window ending at 84.
    full = load_csv(path, lookback=8, horizon=1, standardize=False)
    assert full.X_test[full.y_test == 1, 0, -1].tolist() == [84.0]


def test_string_options_and_features(tmp_path: Path) -> None:
    path = _write(tmp_path / "toy.csv", note=["x"] * 100)
    ds = load_csv(path, lookback="8", horizon="0", features="a", time_column="time")
    assert ds.X_train.shape[1:] == (1, 8) and ds.info["features"] == ["a"]


@pytest.mark.parametrize(
    ("options", "exc", "match"),
    [
        ({"label": "broken"}, ValueError, "label column 'broken' not found.*columns are: time, a, b, label"),
        ({"lookback": 0}, ValueError, "lookback must be an integer >= 1"),
        ({"lookback": "ten"}, TypeError, "lookback must be an integer"),
        ({"horizon": -1}, ValueError, "horizon must be an integer >= 0"),
        ({"test_fraction": 1.5}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"window": 3}, TypeError, "unknown csv option.*window.*accepted: label, lookback"),
        ({"lookback": 40}, ValueError, "each needs at least lookback \\+ horizon = 41"),
        ({"time_column": "when"}, ValueError, "time_column 'when' not found"),
        ({"features": "a,zz"}, ValueError, r"features \['zz'\] not found"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict, exc: type, match: str) -> None:
    path = _write(tmp_path / "toy.csv")
    with pytest.raises(exc, match=match):
        load_csv(path, **options)


def test_bad_csvs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        load_csv(tmp_path / "nope.csv")

    path = _write(tmp_path / "text.csv", c=["1.5"] * 40 + ["n/a?"] + ["2"] * 59)
    with pytest.raises(ValueError, match=r"column 'c' has a non-numeric value 'n/a\?' at data row 41"):
        load_csv(path)

    path = _write(tmp_path / "holes.csv", c=[1.0] * 10 + [np.nan] + [2.0] * 89)
    with pytest.raises(ValueError, match=r"column 'c' has 1 missing value.*row 11"):
        load_csv(path)

    path = _write(tmp_path / "late.csv", positives=(80, 90))
    with pytest.raises(ValueError, match="no positive window in the training part"):
        load_csv(path, lookback=8, test_fraction=0.3)

    frame = pd.read_csv(_write(tmp_path / "swap.csv"))
    frame.loc[[30, 31], "time"] = frame.loc[[31, 30], "time"].to_numpy()
    frame.to_csv(tmp_path / "swap.csv", index=False)
    with pytest.raises(ValueError, match="timestamps out of order in column 'time': data row 32"):
        load_csv(tmp_path / "swap.csv", lookback=8)

    frame = pd.read_csv(_write(tmp_path / "three.csv"))
    frame.loc[5, "label"] = 2
    frame.to_csv(tmp_path / "three.csv", index=False)
    with pytest.raises(ValueError, match="must hold 0 or 1, got 2 at data row 6"):
        load_csv(tmp_path / "three.csv", lookback=8)

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="cannot read"):
        load_csv(tmp_path / "empty.csv")


def test_make_example_csv_checks_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fault_rate must be in"):
        make_example_csv(tmp_path / "x.csv", fault_rate=0.5)
    with pytest.raises(ValueError, match="n_steps must be >= 10 \\* max_lead"):
        make_example_csv(tmp_path / "x.csv", n_steps=100)
    with pytest.raises(ValueError, match="min_lead must be > precursor_length"):
        make_example_csv(tmp_path / "x.csv", min_lead=10, precursor_length=10)


def test_precursor_is_learnable_with_global_max_pool(example: Path) -> None:
    # A few hundred steps of a Conv1d + global max pool separate faults from the rest well above chance:
    # the example file carries a real, shift-invariant signal.
    torch.manual_seed(0)
    ds = load_csv(example, lookback=64, target="within", horizon=13)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(6, 8, 12),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    rate = float(ds.y_train.float().mean())
    weight = torch.tensor([1.0, (1 - rate) / rate])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        idx = torch.randint(0, len(ds.y_train), (64,))
        loss = torch.nn.functional.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    from sklearn.metrics import average_precision_score

    with torch.no_grad():
        score = model(ds.X_test).softmax(1)[:, 1].numpy()
    pr_auc = average_precision_score(ds.y_test.numpy(), score)
    base = float(ds.y_test.float().mean())
    assert pr_auc > 3 * base, (pr_auc, base)

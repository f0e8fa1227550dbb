import numpy as np
import pytest
import torch

from poolkit.lab.data import MIN_PER_CLASS, Dataset, load_dataset, validate_dataset


def _ds(**kw):
    g = torch.Generator().manual_seed(0)
    base = dict(
        name="t",
        X_train=torch.randn(20, 1, 16, generator=g),
        y_train=torch.arange(20) % 2,
        X_test=torch.randn(6, 1, 16, generator=g),
        y_test=torch.arange(6) % 2,
        num_classes=2,
    )
    base.update(kw)
    return Dataset(**base)


def test_valid_dataset_passes():
    assert validate_dataset(_ds()).dim == 1


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(X_train=torch.randn(20, 16)), "shape"),
        (dict(X_train=torch.randn(20, 1, 2, 2, 2, 2)), "shape"),
        (dict(X_test=torch.randn(6, 2, 16)), "share"),
        (dict(X_train=torch.full((20, 1, 16), float("nan"))), "NaN or Inf"),
        (dict(X_test=torch.full((6, 1, 16), float("inf"))), "NaN or Inf"),
        (dict(y_train=torch.arange(20) % 3), "labels must be in"),
        (dict(y_test=-torch.ones(6, dtype=torch.int64)), "labels must be in"),
        (dict(y_train=torch.zeros(19, dtype=torch.int64)), "one label per sample"),
        (dict(y_train=torch.tensor([0] * 19 + [1])), "too few training samples"),
        (dict(X_train=torch.randn(20, 1, 3), X_test=torch.randn(6, 1, 3)), "at least"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_bad_data_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        validate_dataset(_ds(**kw))


def test_min_per_class_threshold_documented():
    assert MIN_PER_CLASS == 2


def test_digits_where_label_depends_on_half():
    ds = load_dataset("digits-where", train_size=200, test_size=50, seed=1)
    assert ds.num_classes == 20 and ds.spatial == (24, 24)
    mass_right = ds.X_train[..., 12:].sum((1, 2, 3))
    right = ds.y_train >= 10
    # every digit sits wholly in its half
    assert bool((mass_right[right] > 0).all()) and bool((mass_right[~right] == 0).all())


def test_digits_shift_quadrant_and_determinism():
    a = load_dataset("digits-shift", train_size=30, test_size=10, seed=3)
    b = load_dataset("digits-shift", train_size=30, test_size=10, seed=3)
    assert torch.equal(a.X_train, b.X_train) and a.num_classes == 10
    q = load_dataset("digits-where", train_size=40, test_size=10, task="quadrant")
    assert q.num_classes == 4 and int(q.y_train.max()) <= 3
    with pytest.raises(ValueError, match="task"):
        load_dataset("digits-where", task="diagonal")
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset("digits-shift", colour="red")


def test_mnist1d_train_size():
    ds = load_dataset("mnist1d", train_size=300)
    assert ds.X_train.shape == (300, 1, 40) and ds.X_test.shape == (1000, 1, 40)
    with pytest.raises(ValueError, match="train_size"):
        load_dataset("mnist1d", train_size=10**6)


def test_npz_roundtrip_split_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2, 12)).astype(np.float32), np.arange(40) % 4
    p = tmp_path / "d.npz"
    np.savez(p, X=x, y=y)
    ds = load_dataset(f"npz:{p}")
    assert ds.num_classes == 4 and len(ds.y_test) == 8 and len(ds.y_train) == 32  # 10 per class, round(2.5) = 2
    np.savez(p, X=x, y=y, X_test=x[:8], y_test=y[:8])
    assert len(load_dataset(f"npz:{p}").y_test) == 8
    bad = x.copy()
    bad[3, 0, 5] = np.nan
    np.savez(p, X=bad, y=y)
    with pytest.raises(ValueError, match="NaN"):
        load_dataset(f"npz:{p}")
    np.savez(p, X=x, y=y + 0.5)
    with pytest.raises(ValueError, match="integer"):
        load_dataset(f"npz:{p}")
    np.savez(p, X=x[:, 0], y=y)
    with pytest.raises(ValueError, match="shape"):
        load_dataset(f"npz:{p}")
    np.savez(p, data=x)
    with pytest.raises(ValueError, match="'X' and 'y'"):
        load_dataset(f"npz:{p}")
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")


def test_unknown_spec_lists_accepted():
    with pytest.raises(ValueError, match="mnist1d"):
        load_dataset("imagenet")


def test_ucr_without_aeon_is_a_clear_error():
    try:
        import aeon  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="aeon"):
            load_dataset("ucr:GunPoint")
    else:
        ds = load_dataset("ucr:GunPoint")
        assert ds.num_classes == 2 and ds.dim == 1

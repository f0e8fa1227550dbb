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
    with pytest.raises(ValueError, match=r"dataset 'digits-shift' got unknown option\(s\) colour; "
                       r"accepted: canvas, test_size$"):
        load_dataset("digits-shift", colour="red")
    with pytest.raises(ValueError, match=r"accepted: canvas, test_size, task$"):
        load_dataset("digits-where", colour="red")
    with pytest.raises(ValueError, match=r"dataset 'mnist1d' got unknown option\(s\) canvas; accepted: num_samples$"):
        load_dataset("mnist1d", canvas=32)


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


# ---------------------------------------------------------------- folder:PATH (image folders)


def _images(root, classes=("cat", "dog"), n=6, size=(10, 8), mode="L", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            a = (rng.random(shape) * 100 + 100 * c).astype(np.uint8)
            Image.fromarray(a, mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_greyscale_split_and_size(tmp_path):
    from PIL import Image

    root = _images(tmp_path / "imgs")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "dog" / "big.png")  # another size: resized
    (root / "dog" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{root}", test_fraction=0.5)
    assert ds.X_train.shape[1:] == (1, 10, 8) and ds.num_classes == 2  # first image's size, one channel
    assert len(ds.y_train) + len(ds.y_test) == 13 and ds.info["classes"] == ["cat", "dog"]
    assert ds.info["skipped_files"] == 1
    assert float(ds.X_train.max()) <= 1.0 and float(ds.X_train.min()) >= 0.0
    # class means differ as written: dogs are brighter
    assert ds.X_train[ds.y_train == 1].mean() > ds.X_train[ds.y_train == 0].mean() + 0.1
    ds = load_dataset(f"folder:{root}", size="6,5", train_size=8)
    assert ds.X_train.shape == (8, 1, 6, 5)


def test_image_folder_rgb_and_train_test_layout(tmp_path):
    from PIL import Image

    _images(tmp_path / "set" / "train", n=5, mode="RGB")
    _images(tmp_path / "set" / "test", n=2, mode="RGB", seed=1)
    ds = load_dataset(f"folder:{tmp_path / 'set'}")
    assert ds.X_train.shape == (10, 3, 10, 8) and ds.X_test.shape == (4, 3, 10, 8)
    a = np.asarray(Image.open(tmp_path / "set" / "test" / "dog" / "1.png"), np.float32) / 255
    torch.testing.assert_close(ds.X_test[3], torch.from_numpy(a.transpose(2, 0, 1)))  # sorted files, exact values
    with pytest.raises(ValueError, match="test_fraction does not apply"):
        load_dataset(f"folder:{tmp_path / 'set'}", test_fraction=0.3)


def test_image_folder_mixed_grey_and_rgb_becomes_rgb(tmp_path):
    root = _images(tmp_path / "m", n=4)
    _images(tmp_path / "m", classes=("dog",), n=2, mode="RGB", seed=3)
    ds = load_dataset(f"folder:{root}", test_fraction=0.25)
    assert ds.channels == 3


def test_image_folder_refuses_corrupt_files_listing_them(tmp_path):
    from PIL import Image

    root = _images(tmp_path / "c")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    good = root / "dog" / "truncated.png"
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"2 image file\(s\)") as err:
        load_dataset(f"folder:{root}")
    assert str(root / "cat" / "broken.png") in str(err.value) and str(good) in str(err.value)


@pytest.mark.parametrize("setup,kw,match", [
    (lambda r: None, {}, "does not exist"),
    (lambda r: r.mkdir(), {}, "no class subfolders"),
    (lambda r: (r / "a").mkdir(parents=True), {}, "without images"),
    (lambda r: (r / "train" / "a").mkdir(parents=True), {}, "has train/ but not test/"),
    (lambda r: _images(r), {"size": "big"}, r"size must be one int or 'S' \(square\), 'H,W'.*got 'big'"),
    (lambda r: _images(r), {"size": 8.5}, r"size must be one int.*got 8\.5"),
    (lambda r: _images(r), {"size": "0"}, r"size must be positive"),
    (lambda r: _images(r), {"colour": "red"},
     r"dataset 'folder' got unknown option\(s\) colour; accepted: size, test_fraction$"),
])
def test_image_folder_bad_input(tmp_path, setup, kw, match):
    root = tmp_path / "r"
    setup(root)
    with pytest.raises(ValueError, match=match):
        load_dataset(f"folder:{root}", **kw)


def test_npz_with_three_spatial_axes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", X=rng.random((12, 2, 6, 5, 4)), y=np.arange(12) % 2)
    ds = load_dataset(f"npz:{tmp_path / 'v.npz'}")
    assert ds.dim == 3 and ds.spatial == (6, 5, 4) and ds.channels == 2


def test_npz_unknown_option_lists_accepted(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((8, 1, 6), np.float32), y=np.arange(8) % 2)
    with pytest.raises(ValueError, match=r"dataset 'npz' got unknown option\(s\) size; "
                       r"accepted: test_fraction, num_classes$"):
        load_dataset(f"npz:{tmp_path / 'a.npz'}", size=3)


@pytest.mark.parametrize("size,want", [(6, (6, 6)), ("6", (6, 6)), ("6,5", (6, 5)), ("6x5", (6, 5)),
                                       ((6, 5), (6, 5)), ([6], (6, 6))])
def test_image_folder_size_forms(tmp_path, size, want):
    root = _images(tmp_path / "s", n=4)
    ds = load_dataset(f"folder:{root}", size=size, test_fraction=0.5)
    assert ds.spatial == want and ds.info["size"] == list(want)


def test_image_folder_class_only_in_test_is_named(tmp_path):
    _images(tmp_path / "set" / "train", n=4)
    _images(tmp_path / "set" / "test", classes=("cat", "dog", "emu"), n=2)
    with pytest.raises(ValueError, match="at least 2 training images") as err:
        load_dataset(f"folder:{tmp_path / 'set'}")
    msg = str(err.value)
    assert f"{tmp_path / 'set' / 'test' / 'emu'} exists only in test/" in msg
    assert str(tmp_path / "set" / "train" / "emu") in msg and "cat" not in msg.replace(str(tmp_path), "")


def test_image_folder_class_with_one_image_is_named(tmp_path):
    root = _images(tmp_path / "one", n=4)
    _images(root, classes=("owl",), n=1)
    with pytest.raises(ValueError, match="at least 2 training images") as err:
        load_dataset(f"folder:{root}", test_fraction=0.5)
    assert f"{root / 'owl'}: 1 image(s), 1 for training" in str(err.value)
    # 4 images per class, 2 each for training after a half split; a subset of 3 leaves one class 1 or 0
    two = _images(tmp_path / "two", n=4)
    load_dataset(f"folder:{two}", test_fraction=0.5)
    with pytest.raises(ValueError, match=r"4 image\(s\), [01] for training after the test_fraction split"):
        load_dataset(f"folder:{two}", test_fraction=0.5, train_size=3)

"""The lever on the user's own model: factories, the λ rule, devices, custom training, compute."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

pytest.importorskip("typer")
from typer.testing import CliRunner

import poolkit
from poolkit.lab.compute import forward_flops, pool_module_names, trial_compute
from poolkit.lab.custom import build_model_for, lever_rule, model_name, resolve_factory, takes_lever
from poolkit.lab.data import Dataset, load_dataset
from poolkit.lab.study import StudyConfig, run_study, trials_frame, worker_devices
from poolkit.lab.train import TrainConfig, resolve_device, run_trial

HERE = Path(__file__).parent
MODELS = HERE / "user_models.py"
COMPUTE = ("flops_per_sample", "pool_flops_per_sample", "pool_flops_share", "forward_ms_per_sample")


def _app():
    from poolkit.cli import app

    return app


@pytest.fixture(scope="module")
def um():
    return resolve_factory(f"{MODELS}:resnet1d").__globals__  # the user's module, imported by path


def _npz_1d(path: Path, n: int = 48, length: int = 40, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 1, length)).astype(np.float32) * 0.1
    for i, c in enumerate(y):  # a class-specific bump at a random place
        at = rng.integers(0, length - 6)
        x[i, 0, at : at + 6] += 1.0 + c
    np.savez(path, X=x, y=y)
    return f"npz:{path}"


def _complete(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(states=(TrialState.COMPLETE,))


# ---------------------------------------------------------------- the λ rule


@pytest.mark.parametrize("func,shape,size", [
    ("resnet1d", (1, 40), (20,)),          # stem max pool halves 40 -> 20
    ("cnn2d", (1, 24, 24), (12, 12)),
    ("cnn3d", (2, 8, 8, 8), (4, 4, 4)),
])
def test_head_sizes_follow_the_lever(func, shape, size):
    for lever in (0.0, 0.25, 0.5, 0.75, 1.0):
        torch.manual_seed(0)
        b = build_model_for(f"{MODELS}:{func}", shape[0], 5, shape[1:], "max", lever)
        want = tuple(max(1, round(n ** (1 - lever))) for n in size)
        assert b.head_size == want, (func, lever)
        channels = b.head.in_features // math.prod(want)
        assert b.head.in_features == channels * math.prod(want)
        x = torch.rand(3, *shape)
        assert b.module(x).shape == (3, 5)
        assert b.features(x).shape == (3, b.head.in_features)
        n_given = len(pool_module_names(resolve_factory(f"{MODELS}:{func}")(shape[0], 5)))
        assert len(pool_module_names(b.module)) == (n_given - 1 if lever == 0 else n_given)  # λ = 0: no final pool
        if lever > 0:  # every pooling layer now holds the statistic under study: poolkit's max
            assert all(type(b.module.get_submodule(n)).__module__.startswith("poolkit")
                       for n in pool_module_names(b.module))


def avg_net(in_channels, num_classes):
    return nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, num_classes))


def test_lever_one_is_the_model_as_given():
    torch.manual_seed(3)
    given = avg_net(1, 4).eval()
    torch.manual_seed(3)
    b = build_model_for(avg_net, 1, 4, (16, 16), "avg", 1.0)
    x = torch.rand(4, 1, 16, 16)
    # an all-average model under the avg statistic at λ = 1: the same function and head weights
    torch.testing.assert_close(b.module.eval()(x), given(x))
    b = build_model_for(avg_net, 1, 4, (16, 16), "max", 1.0)  # another statistic: another function
    assert not torch.allclose(b.module.eval()(x), given(x))


def test_other_inner_pools_keep_their_geometry(um):
    b = build_model_for(um["resnet1d"], 1, 3, (40,), "lp:p=2", 0.5)
    stem = b.module.maxpool
    assert isinstance(stem, poolkit.nn.LPPool1d)
    assert (stem.kernel_size == (2,) and stem.stride == (2,)) or (stem.kernel_size == 2 and stem.stride == 2)
    assert b.changes[0].startswith("maxpool: MaxPool1d(kernel_size=2, stride=2") and "-> LPPool1d" in b.changes[0]
    assert any(c.startswith("avgpool: AdaptiveAvgPool1d -> LPPool1d(") and "output_size=(4,)" in c for c in b.changes)
    assert "fc: Linear(16, 3) -> Linear(64, 3)" in b.changes


def test_factory_with_pool_and_lever_builds_its_own_points(um):
    assert takes_lever(um["lever_cnn1d"]) and not takes_lever(um["cnn2d"])
    b0 = build_model_for(um["lever_cnn1d"], 1, 3, (40,), "none", 0.0)
    b1 = build_model_for(um["lever_cnn1d"], 1, 3, (40,), "avg", 1.0)
    assert b0.changes == [] and b1.changes == []  # no surgery: λ means what the user says
    assert len(pool_module_names(b1.module)) == len(pool_module_names(b0.module)) + 2
    assert b1.head is b1.module[-1]
    assert "builds each grid point itself" in lever_rule(um["lever_cnn1d"])
    assert lever_rule(None).startswith("LeverNet") and "resized" in lever_rule(um["cnn2d"])


# ---------------------------------------------------------------- bad factories


@pytest.mark.parametrize("func,match", [
    ("no_global_pool", r"'no_global_pool' in file .*user_models.py.*not one position per axis.*global pool"),
    ("not_a_module", r"'not_a_module' in file .*must return a torch.nn.Module .*got dict"),
    ("broken", r"'broken' in file .*failed when called as broken\(1, 3\): RuntimeError: out of coffee"),
    ("wants_2d", r"'wants_2d' in file .*cannot run on the data's shape \(N, 1, 40\)"),
    ("squeezes_the_map", r"'squeezes_the_map' in file .*must flatten the pooled map"),
])
def test_bad_factories_refused_before_training(tmp_path, func, match):
    data = _npz_1d(tmp_path / "d.npz")
    called = []
    cfg = StudyConfig(data, pools=["max"], levers=[0.5, 1], seeds=1, model=f"{MODELS}:{func}",
                      train=TrainConfig(steps=1, channels=4, device="cpu"))
    with pytest.raises(ValueError, match=match):
        run_study(cfg, out=tmp_path, train_fn=lambda *a: called.append(a))
    assert called == []
    assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'poolkit.db'}") == []  # nothing stored


def test_bad_factory_specs_refused():
    with pytest.raises(ValueError, match="does not exist"):
        StudyConfig(model="no/such/file.py:net")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        StudyConfig(model=f"{MODELS}:nope")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg_xyz.models'"):
        StudyConfig(model="no_such_pkg_xyz.models:net")
    with pytest.raises(ValueError, match="must be 'path/to/file.py:FUNC'"):
        StudyConfig(model="just_a_name")
    with pytest.raises(TypeError, match="model must be"):
        StudyConfig(model=42)


def test_module_path_spec(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    f = resolve_factory("user_models:cnn2d")
    assert f.__name__ == "cnn2d" and model_name("user_models:cnn2d") == "user_models:cnn2d"
    assert model_name(f).endswith("user_models.cnn2d")


# ---------------------------------------------------------------- studies with a user's model


def test_cli_study_with_a_residual_1d_model(tmp_path):
    data = _npz_1d(tmp_path / "d.npz")
    args = ["study", "--model", f"{MODELS}:resnet1d", "--dataset", data, "--pools", "max,avg", "--levers",
            "0,0.5,1", "--seeds", "1", "--steps", "3", "--batch-size", "16", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    name = "npz-d.npz-resnet1d"
    url = f"sqlite:///{(tmp_path / 'out' / 'poolkit.db').resolve()}"
    assert f"study {name!r} done" in res.output
    assert (tmp_path / "out" / f"report-{name}" / "index.html").is_file()
    trials = _complete(url, name)
    keys = sorted((t.user_attrs["pool"], t.params["lever"], t.user_attrs["seed"]) for t in trials)
    assert keys == [("avg", 0.5, 0), ("avg", 1.0, 0), ("max", 0.5, 0), ("max", 1.0, 0), ("none", 0.0, 0)]
    positions = {t.params["lever"]: t.user_attrs["head_positions"] for t in trials}
    assert positions == {0.0: 20.0, 0.5: 4.0, 1.0: 1.0}  # L = 20 after the stem's max pool
    heads = {t.params["lever"]: t.user_attrs["head_params"] for t in trials}
    assert heads == {0.0: 16 * 20 * 3 + 3, 0.5: 16 * 4 * 3 + 3, 1.0: 16 * 3 + 3}
    for t in trials:
        assert t.user_attrs["device"] == "cpu"
        assert all(t.user_attrs[k] is not None and t.user_attrs[k] >= 0 for k in COMPUTE)
        assert t.user_attrs["pool_flops_per_sample"] < t.user_attrs["flops_per_sample"]
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs["model"] == f"{MODELS}:resnet1d" and study.user_attrs["device"] == "cpu"
    assert "round(L ** (1 - λ))" in study.user_attrs["lever_rule"] and "resized" in study.user_attrs["lever_rule"]
    # Rerun: nothing runs twice; another model under the same name is refused before training.
    assert CliRunner().invoke(_app(), args).exit_code == 0
    assert len(_complete(url, name)) == 5
    other = [*args[:2], f"{MODELS}:lever_cnn1d", *args[3:], "--study-name", name]
    res = CliRunner().invoke(_app(), other)
    assert res.exit_code == 2 and "another model" in res.output and "resnet1d" in res.output


def test_2d_model_on_an_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c, cls in enumerate(("circle", "square")):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            a = (rng.random((14, 14)) * 60).astype(np.uint8)
            a[4:10, 4:10] += 120 if c else 40
            Image.fromarray(a).save(root / cls / f"{i}.png")
    res = CliRunner().invoke(_app(), [
        "study", "--model", f"{MODELS}:cnn2d", "--dataset", f"folder:{root}", "--data-option", "size=12,12",
        "--pools", "max", "--levers", "0,1", "--seeds", "1", "--steps", "2", "--device", "cpu",
        "--out", str(tmp_path / "out"), "--no-report"])
    assert res.exit_code == 0, res.output
    frame = trials_frame(f"sqlite:///{(tmp_path / 'out' / 'poolkit.db').resolve()}", "folder-imgs-cnn2d")
    assert sorted(frame["head_positions"]) == [1.0, 36.0]  # 12x12 -> max pool -> 6x6 at λ = 0
    assert frame.attrs["model"] == f"{MODELS}:cnn2d"


def test_3d_data_with_a_3d_model_and_levernet(tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(24) % 2
    x = rng.normal(size=(24, 1, 8, 8, 8)).astype(np.float32)
    x[y == 1, :, 2:5, 2:5, 2:5] += 2.0
    np.savez(tmp_path / "vol.npz", X=x, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'vol.npz'}")
    assert ds.dim == 3
    cfg = TrainConfig(steps=3, channels=4, batch_size=8, device="cpu")
    m = run_trial(ds, "avg", 0.5, 0, cfg, model=f"{MODELS}:cnn3d")
    assert m["head_positions"] == 8.0 and 0 <= m["test_acc"] <= 1 and not math.isnan(m["head_invariance"])
    m = run_trial(ds, "max", 1.0, 0, cfg)  # the reference CNN in 3-D
    assert m["head_positions"] == 1.0


# ---------------------------------------------------------------- custom training


def sgd_train(model, dataset, config, seed):
    """A user's own loop: plain SGD with momentum, full-batch epochs (the README's example)."""
    dev = torch.device(config.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(config.steps):
        idx = torch.randperm(len(dataset.y_train), generator=g)[: config.batch_size]
        loss = nn.functional.cross_entropy(model(dataset.X_train[idx].to(dev)), dataset.y_train[idx].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sgd_train.calls.append((model.training, next(model.parameters()).device.type, config.device, seed))


sgd_train.calls = []


def test_custom_train_fn_replaces_the_builtin_loop(tmp_path):
    data = _npz_1d(tmp_path / "d.npz")
    sgd_train.calls.clear()
    cfg = StudyConfig(data, pools=["max"], levers=[0, 1], seeds=2, model=f"{MODELS}:resnet1d",
                      train=TrainConfig(steps=4, batch_size=16, device="cpu"))
    url, name = run_study(cfg, out=tmp_path, train_fn=sgd_train)
    assert sorted(sgd_train.calls) == [(True, "cpu", "cpu", 0), (True, "cpu", "cpu", 0), (True, "cpu", "cpu", 1),
                                       (True, "cpu", "cpu", 1)]
    frame = trials_frame(url, name)
    assert len(frame) == 4 and frame["test_acc"].between(0, 1).all() and frame["shifted_acc"].notna().all()
    ident = json.loads(optuna.load_study(study_name=name, storage=url).user_attrs["identity"])
    assert ident["train_fn"].endswith("sgd_train") and ident["model"] == f"{MODELS}:resnet1d"
    # The same study with the built-in loop is another study.
    with pytest.raises(ValueError, match="different dataset or training config"):
        run_study(cfg, out=tmp_path)


def test_unpicklable_callables_refused_with_workers(tmp_path):
    cfg = StudyConfig(_npz_1d(tmp_path / "d.npz"), levers=[1], seeds=1, model=lambda c, k: None)
    with pytest.raises(TypeError, match="model must be a module-level function when workers > 1"):
        run_study(cfg, out=tmp_path, workers=2)
    cfg = StudyConfig(cfg.dataset, levers=[1], seeds=1)
    with pytest.raises(TypeError, match="train_fn must be a module-level function"):
        run_study(cfg, out=tmp_path, workers=2, train_fn=lambda *a: None)


def test_train_fn_gives_other_weights_than_the_builtin_loop(tmp_path):
    ds = load_dataset(_npz_1d(tmp_path / "d.npz"))
    cfg = TrainConfig(steps=4, batch_size=16, device="cpu")
    a = run_trial(ds, "max", 1.0, 0, cfg, model=f"{MODELS}:resnet1d")
    b = run_trial(ds, "max", 1.0, 0, cfg, model=f"{MODELS}:resnet1d", train_fn=sgd_train)
    assert a["params"] == b["params"]
    assert (a["head_invariance"], a["consistency_circular"]) != (b["head_invariance"], b["consistency_circular"])


# ---------------------------------------------------------------- devices


def test_explicit_cpu_device_is_deterministic(tmp_path):
    ds = load_dataset(_npz_1d(tmp_path / "d.npz"))
    runs = [run_trial(ds, "avg", 0.5, 1, TrainConfig(steps=5, batch_size=16, device=d), model=f"{MODELS}:resnet1d")
            for d in ("cpu", "cpu")]
    for m in runs:
        m.pop("wall_s"), m.pop("forward_ms_per_sample")
    assert runs[0] == runs[1]
    assert resolve_device("cpu") == torch.device("cpu")
    assert worker_devices("cpu", 3) == ["cpu"] * 3


def test_bad_devices_refused(tmp_path):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        TrainConfig(device="tpu")
    res = CliRunner().invoke(_app(), ["study", "--device", "gpu0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "device must be" in res.output
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            run_study(StudyConfig("digits-shift", train=TrainConfig(device="cuda")), out=tmp_path)
        assert not (tmp_path / "poolkit.db").exists() or optuna.get_all_study_summaries(
            f"sqlite:///{tmp_path / 'poolkit.db'}") == []


def test_amp_on_cpu_runs_in_bfloat16(tmp_path):
    ds = load_dataset(_npz_1d(tmp_path / "d.npz"))
    cfg = TrainConfig(steps=3, batch_size=16, device="cpu", amp=True)
    m = run_trial(ds, "max", 0.5, 0, cfg, model=f"{MODELS}:resnet1d")
    assert 0 <= m["test_acc"] <= 1 and m["flops_per_sample"] > 0
    assert "amp" in StudyConfig(train=cfg).identity()["train"]
    assert "amp" not in StudyConfig().identity()["train"] and "device" not in StudyConfig().identity()["train"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trials(tmp_path):
    ds = load_dataset(_npz_1d(tmp_path / "d.npz"))
    for amp in (False, True):
        cfg = TrainConfig(steps=5, batch_size=16, device="cuda", amp=amp)
        m = run_trial(ds, "max", 0.5, 0, cfg, model=f"{MODELS}:resnet1d")
        assert 0 <= m["test_acc"] <= 1 and m["forward_ms_per_sample"] > 0
        m = run_trial(ds, "avg", 1.0, 0, cfg)
        assert 0 <= m["test_acc"] <= 1
    url, name = run_study(StudyConfig(f"npz:{tmp_path / 'd.npz'}", pools=["max"], levers=[0, 1], seeds=1,
                                      model=f"{MODELS}:resnet1d",
                                      train=TrainConfig(steps=3, device="cuda")), out=tmp_path)
    devices = {t.user_attrs["device"] for t in _complete(url, name)}
    assert devices == {f"cuda:{torch.cuda.current_device()}"}
    assert worker_devices("cuda", 2)[0].startswith("cuda")


# ---------------------------------------------------------------- compute


def test_flops_of_a_small_net_by_hand():
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(20, 3))
    c = forward_flops(net, (1, 10))
    conv, pool, linear = 2 * 1 * 3 * 4 * 10, 4 * 5 * 2, 2 * 20 * 3
    assert c["flops_per_sample"] == conv + pool + linear
    assert c["pool_flops_per_sample"] == pool and c["pool_flops_share"] == pytest.approx(pool / (conv + pool + linear))
    net[1] = poolkit.create_pool("avg", dim=1, kernel_size=2)  # a poolkit pool counts the same way
    assert forward_flops(net, (1, 10))["pool_flops_per_sample"] == pool
    net[1] = nn.Identity()
    net[3] = nn.Linear(40, 3)
    c = forward_flops(net, (1, 10))
    assert c["pool_flops_per_sample"] == 0 and c["flops_per_sample"] == conv + 2 * 40 * 3


def test_pooling_shrinks_what_follows():
    from poolkit.lab.models import LeverNet

    cost = {lv: trial_compute(LeverNet(1, 10, (40,), lv, pool="max"), torch.rand(8, 1, 40)) for lv in (0, 0.5)}
    assert cost[0.5]["flops_per_sample"] < cost[0]["flops_per_sample"]
    assert 0 < cost[0.5]["pool_flops_share"] < 0.05 and cost[0]["pool_flops_share"] == 0
    assert cost[0.5]["forward_ms_per_sample"] > 0


def test_levernet_trials_record_compute(tmp_path):
    ds = Dataset("t", torch.rand(12, 1, 16), torch.arange(12) % 2, torch.rand(6, 1, 16), torch.arange(6) % 2, 2)
    m = run_trial(ds, "max", 0.5, 0, TrainConfig(steps=2, channels=4))
    assert all(m[k] > 0 for k in COMPUTE) and m["pool_flops_share"] < 1


def levernet_like(in_channels, num_classes):
    return nn.Sequential(nn.Conv1d(in_channels, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 5, padding=2), nn.ReLU(),
                         nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(8, num_classes))


def test_generic_path_equals_levernet_on_the_same_network(tmp_path):
    # LeverNet at λ = 1 and the same layers given as a user's factory: same weights, same trial.
    ds = load_dataset(_npz_1d(tmp_path / "d.npz"))
    cfg = TrainConfig(steps=6, channels=8, batch_size=16)
    a = run_trial(ds, "max", 1.0, 2, cfg)
    b = run_trial(ds, "max", 1.0, 2, cfg, model=levernet_like)
    for m in (a, b):
        m.pop("wall_s"), m.pop("forward_ms_per_sample")
    assert a == b


def test_identity_of_a_default_study_is_unchanged():
    # Studies stored before models, devices and amp existed must still resume: same identity string.
    stored = ('{"data_options": {}, "dataset": "mnist1d", "train": {"batch_size": 100, "blocks": 2, "channels": 32, '
              '"class_weight": "auto", "kernel_size": null, "lr": 0.01, "max_shift": null, "padding": "zeros", '
              '"steps": 1000, "threads": 1, "weight_decay": 0.0}, "train_size": null}')
    assert json.dumps(StudyConfig().identity(), sort_keys=True) == stored
    assert json.dumps(StudyConfig(train=TrainConfig(steps=1000, device="cpu")).identity(), sort_keys=True) == stored

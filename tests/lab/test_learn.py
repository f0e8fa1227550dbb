"""The learned-λ mode: one run learns how much the network pools."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch

from poolkit.lab.data import load_dataset
from poolkit.lab.learn import LearnConfig, LearnedLeverNet, learn_key, parse_learn, run_learned_trial
from poolkit.lab.study import StudyConfig, grid_points, run_study, trials_frame
from poolkit.lab.train import TrainConfig

OPTS = {"test_size": 20}


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("digits-shift", train_size=40, **OPTS)


def test_parse_learn():
    assert parse_learn("learn") == LearnConfig()
    cfg = parse_learn("learn:objective=train,heads=3,compute=0.1")
    assert cfg.objective == "train" and cfg.levers == (0.0, 0.5, 1.0) and cfg.compute == 0.1
    assert parse_learn("0,0.5") is None and parse_learn([0.5]) is None
    with pytest.raises(ValueError, match="accepted"):
        parse_learn("learn:temperature=2")
    with pytest.raises(ValueError, match="objective"):
        parse_learn("learn:objective=test")
    with pytest.raises(ValueError, match="heads"):
        LearnConfig(heads=1)
    with pytest.raises(ValueError, match="head_loss"):
        LearnConfig(head_loss="max")
    assert learn_key(LearnConfig()) != learn_key(LearnConfig(objective="train"))


@pytest.mark.parametrize("spatial", [(40,), (16, 16)])
def test_gradients_reach_the_lever(spatial):
    torch.manual_seed(0)
    net = LearnedLeverNet(1, 5, spatial, "max", channels=4)
    x, y = torch.rand(3, 1, *spatial), torch.tensor([0, 1, 2])
    assert net.head_sizes[0] == spatial and net.head_sizes[-1] == (1,) * len(spatial)
    lever = net.lever()
    (g,) = torch.autograd.grad(lever, net.alpha)
    assert (g.abs() > 0).sum() >= 2  # dλ/dα: the expectation moves with α
    loss = torch.nn.functional.nll_loss(net(x), y)
    loss.backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    # the head mixture is a proper distribution over classes
    torch.testing.assert_close(net(x).exp().sum(1), torch.ones(3))


@pytest.mark.parametrize("objective,head_loss", [("val", "mean"), ("train", "mean"), ("val", "weighted")])
def test_learned_trial_records_lever(tiny, objective, head_loss):
    cfg = TrainConfig(steps=6, channels=4, batch_size=16)
    learn = LearnConfig(objective=objective, arch_every=1, arch_lr=0.2, head_loss=head_loss)
    m = run_learned_trial(tiny, "max", 0, cfg, learn)
    lv, traj = m["learned_lever"], m["lever_trajectory"]
    assert isinstance(lv, float) and 0.0 <= lv <= 1.0
    assert len(traj) == 7 and traj[0] == pytest.approx(0.5) and traj[-1] == pytest.approx(lv)
    assert any(abs(v - 0.5) > 1e-4 for v in traj[1:])  # α moved
    assert sum(m["lever_weights"]) == pytest.approx(1.0) and m["learn_objective"] == objective
    assert 0.0 <= m["test_acc"] <= 1.0 and m["wall_s"] > 0


def test_objective_val_uses_only_training_data(tiny, monkeypatch):
    # α's batches come from the training set: corrupting the test set changes nothing in training
    cfg = TrainConfig(steps=4, channels=4, batch_size=16)
    a = run_learned_trial(tiny, "avg", 1, cfg, LearnConfig())
    tiny2 = load_dataset("digits-shift", train_size=40, **OPTS)
    tiny2.X_test.normal_()
    b = run_learned_trial(tiny2, "avg", 1, cfg, LearnConfig())
    assert a["lever_trajectory"] == b["lever_trajectory"]


def test_learn_mode_runs_through_run_study(tmp_path):
    cfg = StudyConfig("digits-shift", pools=["max"], levers="learn", seeds=2, train_size=40, data_options=OPTS,
                      train=TrainConfig(steps=3, channels=4))
    key = learn_key(LearnConfig())
    assert cfg.learn is not None and grid_points(cfg) == [("max", key, 0), ("max", key, 1)]
    url, name = run_study(cfg, out=tmp_path)
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        assert 0.0 <= t.user_attrs["learned_lever"] <= 1.0
        traj = t.user_attrs["lever_trajectory"]
        assert isinstance(traj, list) and all(isinstance(v, float) for v in traj)
    frame = trials_frame(url, name)
    assert {"learned_lever", "lever_trajectory"} <= set(frame.columns) and frame["lever"].isna().all()
    # resuming runs nothing again; a grid in the same study keeps its own points
    run_study(cfg, out=tmp_path)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    grid = StudyConfig("digits-shift", pools=["max"], levers=[1.0], seeds=1, train_size=40, data_options=OPTS,
                       train=TrainConfig(steps=3, channels=4))
    run_study(grid, out=tmp_path)
    frame = trials_frame(url, name)
    assert len(frame) == 3 and frame["lever"].dropna().tolist() == [1.0]
    assert not math.isnan(frame["learned_lever"].dropna().iloc[0])


def test_learn_mode_refuses_tpe():
    with pytest.raises(ValueError, match="learn"):
        StudyConfig("digits-shift", levers="learn", n_trials=3)


def test_cli_learn(tmp_path):
    from typer.testing import CliRunner

    from poolkit.cli import app

    res = CliRunner().invoke(app, ["study", "--dataset", "digits-shift", "--pools", "max", "--levers", "learn",
                                   "--seeds", "1", "--train-size", "40", "--data-option", "test_size=20",
                                   "--steps", "2", "--channels", "4", "--out", str(tmp_path), "--no-report"])
    assert res.exit_code == 0, res.output
    frame = trials_frame(f"sqlite:///{(tmp_path / 'poolkit.db').resolve()}", "digits-shift-zeros")
    assert len(frame) == 1 and 0.0 <= frame["learned_lever"].iloc[0] <= 1.0


def test_diffstride_on_the_lever_is_frozen_or_refused(tiny):
    from poolkit.lab.models import LeverNet

    net = LeverNet(1, 10, tiny.spatial, 0.5, pool="diffstride:smoothness=1", channels=4)
    pools = [m for m in net.modules() if type(m).__name__.startswith("DiffStridePool")]
    assert pools and all(not list(p.parameters()) for p in pools)
    with pytest.raises(ValueError, match="learnable"):
        LeverNet(1, 10, tiny.spatial, 0.5, pool="diffstride:learnable=true", channels=4)


def test_learned_trial_runs_on_the_trial_device_and_records_compute(tiny):
    cfg = TrainConfig(steps=2, channels=4, batch_size=16, device="cpu")
    m = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(arch_every=1))
    assert m["flops_per_sample"] > 0 and 0 < m["pool_flops_share"] < 1 and m["forward_ms_per_sample"] > 0
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            run_learned_trial(tiny, "max", 0, TrainConfig(steps=1, channels=4, device="cuda:0"), LearnConfig())


def test_other_learned_options_are_other_trials():
    keys = {learn_key(LearnConfig(**kw)) for kw in ({}, {"heads": 3}, {"head_loss": "mean"}, {"arch_lr": 0.1})}
    # never the exact -1 that keyed the default learned trials stored by releases before warmup/commit
    assert len(keys) == 4 and all(-2 < k < -1 for k in keys)
    assert len({learn_key(LearnConfig(objective="train", heads=h)) for h in (2, 3, 5)}) == 3


def test_learned_mode_refuses_train_fn_and_model_before_storing(tmp_path):
    cfg = StudyConfig("digits-shift", pools=["max"], levers="learn", seeds=1, train_size=40, data_options=OPTS,
                      train=TrainConfig(steps=1, channels=4))
    with pytest.raises(ValueError, match="train_fn"):
        run_study(cfg, out=tmp_path, train_fn=lambda *a: None)
    assert not (tmp_path / "poolkit.db").exists()  # refused before any storage was written
    with pytest.raises(ValueError, match="model="):
        StudyConfig("digits-shift", levers="learn", model="tests/lab/user_models.py:resnet1d")


def test_commit_drops_light_heads_freezes_alpha_and_survives_a_state_dict():
    torch.manual_seed(0)
    net = LearnedLeverNet(1, 5, (40,), "max", channels=4)
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([-5.0, -5.0, 0.0, 1.0, 2.0]))
    before = net.weights().detach()
    assert net.commit(prune=0.05) == [2, 3, 4] and not net.alpha.requires_grad
    w = net.weights().detach()
    assert w[:2].eq(0).all() and w.sum() == pytest.approx(1.0)
    torch.testing.assert_close(w[2:], before[2:] / before[2:].sum())
    x = torch.rand(3, 1, 40)
    assert net.head_logits(x).shape == (3, 3, 5)  # the dropped heads are not computed
    torch.testing.assert_close(net(x).exp().sum(1), torch.ones(3))
    assert net.learned_lever() == pytest.approx(float((w * torch.tensor(net.levers)).sum()))
    fresh = LearnedLeverNet(1, 5, (40,), "max", channels=4)
    fresh.load_state_dict(net.state_dict())
    assert fresh.active == [2, 3, 4]
    torch.testing.assert_close(fresh(x), net(x))
    # the most weighted head is kept whatever the threshold
    assert LearnedLeverNet(1, 5, (40,), "max", channels=4).commit(prune=0.9) == [0]


def test_the_lever_is_fixed_at_the_commit_step(tiny):
    cfg = TrainConfig(steps=10, channels=4, batch_size=16)
    m = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(arch_every=1, arch_lr=0.5, commit=0.4, warmup=0.0))
    assert m["lever_commit_step"] == 4
    traj = m["lever_trajectory"]  # one point per step here: the start, then after steps 1..10
    assert len(traj) == 11 and len({round(v, 9) for v in traj[4:]}) == 1  # no change from step 4 on
    assert len({round(v, 9) for v in traj[:4]}) > 1  # α moved before
    kept = [w for w in m["lever_weights"] if w > 0]
    assert m["heads_kept"] == len(kept) and sum(kept) == pytest.approx(1.0)
    never = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(arch_every=1, commit=1.0))
    assert math.isnan(never["lever_commit_step"]) and never["heads_kept"] == 5


@pytest.mark.parametrize("objective", ["val", "train"])
def test_sample_heads_trains_that_many_heads_per_step_until_the_commit(tiny, monkeypatch, objective):
    from poolkit.lab import learn as learn_mod

    trained: list[int] = []  # heads computed with autograd on, per call of head_logits
    original = learn_mod.LearnedLeverNet.head_logits

    def spy(self, x, heads=None):
        if torch.is_grad_enabled():
            trained.append(len(self.active if heads is None else heads))
        return original(self, x, heads)

    monkeypatch.setattr(learn_mod.LearnedLeverNet, "head_logits", spy)
    cfg = TrainConfig(steps=10, channels=4, batch_size=16)
    m = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(objective=objective, sample_heads=2, commit=0.5,
                                                           prune=0.0, warmup=0.0))
    assert m["heads_kept"] == 5  # prune=0 keeps every head: after the commit all five train together
    assert trained[:4] == [2] * 4 and trained[5:10] == [5] * 5  # steps 1-4 sampled, commit at step 5
    assert 0.0 <= m["learned_lever"] <= 1.0


def test_sample_heads_at_or_above_the_head_count_is_every_head(tiny):
    cfg = TrainConfig(steps=6, channels=4, batch_size=16)
    opts = {"arch_every": 1, "commit": 1.0, "warmup": 0.0}
    every = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(**opts))
    five = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(**opts, sample_heads=5))
    two = run_learned_trial(tiny, "max", 0, cfg, LearnConfig(**opts, sample_heads=2))
    assert five["lever_trajectory"] == every["lever_trajectory"]
    assert two["lever_trajectory"] != every["lever_trajectory"]
    # a study stored before the option existed keeps its keys (values of the release before it)
    assert learn_key(LearnConfig()) == -1.601086
    assert learn_key(LearnConfig(objective="train", commit=0.5)) == -2.211418
    assert learn_key(LearnConfig(sample_heads=2)) not in (-1.601086, learn_key(LearnConfig(sample_heads=3)))
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="sample_heads"):
            LearnConfig(sample_heads=bad)


def _grid_twin(net: LearnedLeverNet, k: int, spatial, padding_mode: str):
    """The grid's LeverNet at the candidate's λ, carrying the learned net's conv weights and head k."""
    from poolkit.lab.models import LeverNet

    twin = LeverNet(1, 5, spatial, net.levers[k], "max", padding_mode, channels=4, blocks=net.blocks)
    convs = [m for m in net.body if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    twin_convs = [m for m in twin.body if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    for src, dst in zip(convs, twin_convs, strict=True):
        dst.load_state_dict(src.state_dict())
    twin.head.load_state_dict(net.heads[k].state_dict())
    return twin


@pytest.mark.parametrize("spatial,padding_mode", [((40,), "zeros"), ((24, 24), "circular")])
def test_regrid_moves_the_kept_heads_onto_the_grid_architecture(spatial, padding_mode):
    torch.manual_seed(0)
    net = LearnedLeverNet(1, 5, spatial, "max", padding_mode=padding_mode, channels=4)
    x = torch.randn(3, 1, *spatial)
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([-9.0, -9.0, 1.0, 2.0, 1.5]))
    before = net.head_logits(x).detach()
    assert net.commit(prune=0.05, regrid=True) == [2, 3, 4] and net.is_regridded
    after = net.head_logits(x)
    # each kept head now sees exactly what the grid's model at its λ feeds its head
    for row, k in enumerate(net.active):
        torch.testing.assert_close(after[row], _grid_twin(net, k, spatial, padding_mode)(x))
    # λ = 0.5 and 0.75 pool after the first block in the grid, so their logits changed; λ = 1 (one
    # global pool after the last block) is the same network either way
    assert not torch.allclose(after[0], before[2]) and not torch.allclose(after[1], before[3])
    torch.testing.assert_close(after[2], before[4])
    after.sum().backward()  # gradients reach the shared convs through the grid's paths
    assert all(p.grad is not None for p in net.body.parameters())
    assert net.features(x).shape == (3, 4, *net.head_size)
    fresh = LearnedLeverNet(1, 5, spatial, "max", padding_mode=padding_mode, channels=4)
    fresh.load_state_dict(net.state_dict())
    assert fresh.is_regridded and fresh.active == [2, 3, 4]
    torch.testing.assert_close(fresh(x), net(x))


def test_regrid_says_when_a_statistic_cannot_take_the_grid_architecture():
    net = LearnedLeverNet(1, 5, (24, 24), "multistat", channels=4)
    assert set(net.regrid_refused) == {2, 3} and "channels" in net.regrid_refused[2]
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([-9.0, -9.0, -9.0, 2.0, 1.0]))
    with pytest.warns(UserWarning, match="no regrid.*λ = 0.75.*multistat"):
        assert net.commit(prune=0.05, regrid=True) == [3, 4]
    assert not net.is_regridded
    # when only heads whose grid model pools once are kept, nothing is refused
    other = LearnedLeverNet(1, 5, (24, 24), "multistat", channels=4)
    with torch.no_grad():
        other.alpha.copy_(torch.tensor([-9.0, -9.0, -9.0, -9.0, 1.0]))
    other.commit(prune=0.05, regrid=True)
    assert other.is_regridded


@pytest.mark.parametrize("pool", ["gated", "gem", "lps"])
def test_regrid_adds_no_weights_to_a_learned_net_and_refuses_pools_that_have_their_own(pool):
    net = LearnedLeverNet(1, 5, (40,), pool, channels=4)
    owners = {name.split(".")[0] for name, _ in net.named_parameters()}
    assert owners <= {"body", "pools", "heads", "alpha"}  # no unused grid pools among the parameters
    assert not any(key.startswith("grid_pools") for key in net.state_dict())
    assert set(net.regrid_refused) == {1, 2, 3} and "weights of their own" in net.regrid_refused[2]
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([-9.0, -9.0, -9.0, 2.0, -9.0]))
    with pytest.warns(UserWarning, match="no regrid"):
        net.commit(prune=0.05, regrid=True)
    assert not net.is_regridded


def test_a_regridded_trial_trains_and_reports_it(tiny):
    cfg = TrainConfig(steps=8, channels=4, batch_size=16)
    learn = LearnConfig(arch_every=1, commit=0.5, prune=0.0, warmup=0.0, regrid=True)
    m = run_learned_trial(tiny, "max", 0, cfg, learn)
    assert m["regridded"] == 1.0 and m["heads_kept"] == 5 and 0.0 <= m["test_acc"] <= 1.0
    plain = run_learned_trial(tiny, "max", 0, cfg, dataclasses.replace(learn, regrid=False))
    assert plain["regridded"] == 0.0
    assert plain["lever_trajectory"][:5] == m["lever_trajectory"][:5]  # the same run until the commit
    assert plain["test_acc"] != m["test_acc"] or plain["test_loss"] != m["test_loss"]
    assert learn_key(learn) != learn_key(dataclasses.replace(learn, regrid=False))
    assert learn_key(LearnConfig(regrid=False)) == -1.601086  # the stored default key
    assert parse_learn("learn:regrid=true").regrid is True
    with pytest.raises(ValueError, match="regrid"):
        LearnConfig(regrid=1)  # type: ignore[arg-type]


def test_learned_net_with_batch_norm_regrids_onto_the_grid_model(tiny):
    torch.manual_seed(0)
    net = LearnedLeverNet(1, 5, (24, 24), "max", padding_mode="circular", channels=4, norm="batch")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.body) == 2
    x = torch.randn(6, 1, 24, 24)
    net(x)  # one training-mode pass: running statistics move off their start
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([-9.0, -9.0, -9.0, 2.0, -9.0]))
    net.commit(prune=0.05, regrid=True)
    net.eval()
    from poolkit.lab.models import LeverNet

    twin = LeverNet(1, 5, (24, 24), 0.75, "max", "circular", channels=4, norm="batch").eval()
    layers = [m for m in net.body if not isinstance(m, torch.nn.ReLU)]
    twin_layers = [m for m in twin.body if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    for src, dst in zip(layers, twin_layers, strict=True):
        dst.load_state_dict(src.state_dict())
    twin.head.load_state_dict(net.heads[3].state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net.head_logits(x)[0], twin(x))
    m = run_learned_trial(tiny, "max", 0, TrainConfig(steps=4, channels=4, batch_size=16, norm="batch"),
                          LearnConfig(commit=0.5, regrid=True))
    assert m["regridded"] == 1.0 and 0.0 <= m["test_acc"] <= 1.0

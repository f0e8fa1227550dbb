import math

import numpy as np
import pytest
import torch

from poolkit.lab.data import Dataset, load_dataset
from poolkit.lab.train import TrainConfig, run_trial

TINY = TrainConfig(steps=15, channels=4, batch_size=20)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits-shift", train_size=60, test_size=30)


def test_trial_measures_everything(digits):
    m = run_trial(digits, "max", 0.5, seed=0, config=TINY)
    for key in ("train_acc", "test_acc", "gap", "shifted_acc", "consistency_circular", "consistency_crop",
                "head_invariance", "head_params", "params", "wall_s"):
        assert key in m and not math.isnan(m[key]), key
    assert 0 <= m["test_acc"] <= 1 and m["gap"] == pytest.approx(m["train_acc"] - m["test_acc"])
    assert m["head_params"] == 4 * 36 * 10 + 10 and m["head_positions"] == 36
    assert "f1" not in m  # binary metrics only for two classes


def test_trial_is_deterministic_given_seed(digits):
    a = run_trial(digits, "avg", 0.5, seed=1, config=TINY)
    b = run_trial(digits, "avg", 0.5, seed=1, config=TINY)
    c = run_trial(digits, "avg", 0.5, seed=2, config=TINY)
    for m in (a, b, c):  # the measured times are the only values allowed to differ
        m.pop("wall_s"), m.pop("forward_ms_per_sample")
    assert a == b
    assert a != c


def test_circular_global_pool_head_is_invariant(digits):
    cfg = TrainConfig(steps=5, channels=4, padding="circular")
    m = run_trial(digits, "max", 1.0, seed=0, config=cfg)
    assert m["head_invariance"] < 1e-5 and m["consistency_circular"] == 1.0
    m0 = run_trial(digits, "max", 0.0, seed=0, config=cfg)
    assert m0["head_invariance"] > 0.05


def test_training_learns_something():
    ds = load_dataset("mnist1d", train_size=400)
    m = run_trial(ds, "max", 0.5, seed=0, config=TrainConfig(steps=150, channels=16))
    assert m["train_acc"] > 0.4 and m["test_acc"] > 0.25  # chance is 0.1


def test_binary_task_records_rare_event_metrics():
    g = torch.Generator().manual_seed(0)
    n = 80
    y = (torch.arange(n) % 8 == 0).long()  # rare positives
    x = torch.randn(n, 1, 16, generator=g) * 0.1
    x[y == 1, 0, 4:8] += 2.0
    ds = Dataset("rare", x, y, x.clone(), y.clone(), 2)
    m = run_trial(ds, "max", 0.5, seed=0, config=TrainConfig(steps=60, channels=4, batch_size=40))
    for key in ("recall", "precision", "f1", "fpr", "pr_auc"):
        assert key in m and 0 <= m[key] <= 1
    assert m["pr_auc"] > 0.5


def test_bad_config_refused():
    with pytest.raises(ValueError, match="padding"):
        TrainConfig(padding="reflect")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="class_weight"):
        TrainConfig(class_weight="heavy")
    with pytest.raises(ValueError, match="kernel_size must be an odd positive int or None, got 4"):
        TrainConfig(kernel_size=4)
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0, got -0.1"):
        TrainConfig(weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \('constant', 'cosine'\), got 'step'"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 3})
    assert TrainConfig.from_dict(TrainConfig(steps=7).to_dict()).steps == 7
    assert np.isfinite(TrainConfig().lr)


def test_cosine_schedule_follows_half_a_cosine_to_zero():
    from poolkit.lab.train import lr_scheduler

    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([w], lr=0.02)
    assert lr_scheduler(opt, TrainConfig(steps=10)) is None  # constant: no schedule
    sched = lr_scheduler(opt, TrainConfig(steps=10, lr=0.02, lr_schedule="cosine"))
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.02 * 0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(10)]
    assert seen == pytest.approx(expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # after the last step


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_ramps_the_rate_linearly_then_follows_the_schedule(schedule):
    from poolkit.lab.train import lr_scheduler

    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([w], lr=0.02)
    sched = lr_scheduler(opt, TrainConfig(steps=10, lr=0.02, lr_schedule=schedule), warmup=0.4)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    shape = [1.0] * 10 if schedule == "constant" else [0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(10)]
    ramp = [0.25, 0.5, 0.75] + [1.0] * 7  # 4 warm-up steps: 1/4, 2/4, 3/4, then the schedule
    assert seen == pytest.approx([0.02 * r * f for r, f in zip(ramp, shape)])


def test_cosine_schedule_changes_training_and_the_study_identity(digits):
    from poolkit.lab.study import StudyConfig
    from poolkit.lab.train import build_model, train_model

    nets = []
    for schedule in ("constant", "cosine"):
        cfg = TrainConfig(steps=6, channels=4, batch_size=20, lr_schedule=schedule)
        torch.manual_seed(0)
        net = build_model(digits, "max", 1.0, cfg)
        train_model(net, digits, cfg, seed=0)
        nets.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert not torch.equal(nets[0], nets[1])  # same seed, same batches: only the learning rates differ
    assert "lr_schedule" not in StudyConfig().identity()["train"]
    assert StudyConfig(train=TrainConfig(lr_schedule="cosine")).identity()["train"]["lr_schedule"] == "cosine"


def test_batch_norm_option_trains_enters_the_identity_only_when_set_and_is_refused_for_user_models(digits):
    from poolkit.lab.study import StudyConfig
    from poolkit.lab.train import build_model, train_model

    cfg = TrainConfig(steps=4, channels=4, batch_size=20, norm="batch")
    net = build_model(digits, "max", 0.5, cfg)
    assert net.norm == "batch" and sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 2
    train_model(net, digits, cfg, seed=0)
    assert all(m.num_batches_tracked == 4 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert "norm" not in StudyConfig().identity()["train"]  # studies stored before the option resume
    assert StudyConfig(train=cfg).identity()["train"]["norm"] == "batch"
    with pytest.raises(ValueError, match=r"norm must be one of \('none', 'batch'\), got 'group'"):
        TrainConfig(norm="group")
    with pytest.raises(ValueError, match="norm='batch' adds batch norm to the lab's reference network"):
        StudyConfig("digits-shift", model="tests/lab/user_models.py:resnet1d", train=cfg)

"""Summary-statistic pooling: MLE estimators against scipy, identities with max/avg/power-mean pooling,
zeros and constant windows, several statistics as channels, and the adaptive distribution choice."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import poolkit
import poolkit.functional as PF
from poolkit.functional.stats import DISTRIBUTIONS
from poolkit.nn.stats import AdaptiveMLEPool1d, AdaptiveMLEPool2d, MLEPool2d, MultiStatPool1d, calibrate

st = pytest.importorskip("scipy.stats")

N_WIN = 16  # window size of the scipy comparisons (a 4x4 or 16-tap window)
W = 6  # windows per test


def samples(dist: str, seed: int = 0) -> torch.Tensor:
    """``(1, 1, W * N_WIN)`` float64 draws; each window of ``N_WIN`` is one sample."""
    torch.manual_seed(seed)
    shape = (1, 1, W * N_WIN)
    d = {
        "uniform": torch.distributions.Uniform(0.0, 2.0),
        "exponential": torch.distributions.Exponential(0.5),
        "normal": torch.distributions.Normal(3.0, 0.7),
        "gamma": torch.distributions.Gamma(2.5, 1.5),
        "weibull": torch.distributions.Weibull(torch.tensor(1.3), torch.tensor(2.2)),
        "lognormal": torch.distributions.LogNormal(0.2, 0.6),
    }[dist]
    return d.sample(shape).double()


def per_window(x: torch.Tensor):
    return [w.numpy() for w in x.view(-1, N_WIN)]


# ---------------------------------------------------------------- agreement with scipy.stats fits


@pytest.mark.parametrize("seed", [0, 1])
def test_gamma_matches_scipy_fit(seed):
    x = samples("gamma", seed)
    y = PF.mle_pool(x, N_WIN, dist="gamma", param="shape+scale").view(2, -1)
    ref = torch.tensor([st.gamma.fit(w, floc=0)[::2] for w in per_window(x)], dtype=torch.float64).T
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=0)


def test_gamma_closed_form_is_within_minkas_bound():
    """No Newton step: Minka's closed form, documented within 1.5 % of the MLE."""
    x = torch.cat([samples("gamma", s) for s in range(3)] + [samples("exponential", 0), samples("weibull", 0)], -1)
    k0 = PF.mle_pool(x, N_WIN, dist="gamma", param="shape", steps=0).flatten()
    ref = torch.tensor([st.gamma.fit(w, floc=0)[0] for w in per_window(x)], dtype=torch.float64)
    rel = (k0 / ref - 1).abs()
    assert rel.max() < 0.015, rel.max()
    assert rel.max() > 1e-6  # it is an approximation: the Newton steps are what make it exact


def test_weibull_shape_and_scale_match_scipy_fit():
    x = samples("weibull")
    y = PF.mle_pool(x, N_WIN, dist="weibull", param="shape+scale").view(2, -1)
    ref = torch.tensor([st.weibull_min.fit(w, floc=0)[::2] for w in per_window(x)], dtype=torch.float64).T
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=0)  # scipy's own optimizer stops near 1e-5


def test_lognormal_matches_scipy_fit():
    x = samples("lognormal")
    y = PF.mle_pool(x, N_WIN, dist="lognormal", param="sigma+scale").view(2, -1)
    ref = torch.tensor([st.lognorm.fit(w, floc=0)[::2] for w in per_window(x)], dtype=torch.float64).T
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=0)
    mu = PF.mle_pool(x, N_WIN, dist="lognormal", param="mu").flatten()
    torch.testing.assert_close(mu, ref[1].log())


def test_normal_exponential_uniform_match_scipy_fit():
    x = samples("normal")
    y = PF.mle_pool(x, N_WIN, dist="normal", param="mean+std").view(2, -1)
    ref = torch.tensor([st.norm.fit(w) for w in per_window(x)], dtype=torch.float64).T
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=0)
    x = samples("exponential")
    y = PF.mle_pool(x, N_WIN, dist="exponential", param="scale+rate").view(2, -1)
    ref = torch.tensor([st.expon.fit(w, floc=0)[1] for w in per_window(x)], dtype=torch.float64)
    torch.testing.assert_close(y, torch.stack([ref, 1 / ref]), rtol=1e-6, atol=0)
    x = samples("uniform")
    y = PF.mle_pool(x, N_WIN, dist="uniform").flatten()
    ref = torch.tensor([st.uniform.fit(w, floc=0)[1] for w in per_window(x)], dtype=torch.float64)
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=0)


def test_gamma_in_2d_3x3_windows_matches_scipy():
    torch.manual_seed(3)
    x = torch.distributions.Gamma(1.7, 1.0).sample((1, 2, 6, 9)).double()
    y = PF.mle_pool(x, 3, dist="gamma", param="shape")
    wins = x.unfold(2, 3, 3).unfold(3, 3, 3).reshape(1, 2, 2, 3, 9)
    ref = torch.tensor([st.gamma.fit(w.numpy(), floc=0)[0] for w in wins.reshape(-1, 9)], dtype=torch.float64)
    torch.testing.assert_close(y.flatten(), ref, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- identities with other pools


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_uniform_equals_max_pooling_and_low_equals_min(dim):
    x = torch.randn((2, 3) + (6,) * dim)
    assert torch.equal(PF.mle_pool(x, 2, dist="uniform"), PF.max_pool(x, 2))
    assert torch.equal(PF.mle_pool(x, 3, 1, 1, dist="uniform"), PF.max_pool(x, 3, 1, 1))
    assert torch.equal(PF.mle_pool(x, dist="uniform", output_size=4), PF.max_pool(x, output_size=4))
    assert torch.equal(PF.mle_pool(x, 2, dist="uniform", param="low"), PF.min_pool(x, 2))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_normal_mean_and_exponential_scale_equal_average_pooling(dim):
    x = torch.rand((2, 3) + (6,) * dim)
    assert torch.equal(PF.mle_pool(x, 2, dist="normal", param="mean"), PF.avg_pool(x, 2))
    assert torch.equal(PF.mle_pool(x, 3, 2, dist="exponential"), PF.avg_pool(x, 3, 2))
    assert torch.equal(PF.mle_pool(x, dist="normal", param="mean", output_size=1), PF.avg_pool(x, output_size=1))
    # zero padding is excluded from the window, as avg_pool's count_include_pad=False
    assert torch.equal(PF.mle_pool(x, 3, 2, 1, dist="normal", param="mean"),
                       PF.avg_pool(x, 3, 2, 1, count_include_pad=False))


@pytest.mark.parametrize("k", [0.7, 2.0, 3.5])
def test_weibull_with_known_shape_is_the_power_mean(k):
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64) + 0.05
    y = PF.mle_pool(x, 3, dist="weibull", k=k)
    torch.testing.assert_close(y, F.avg_pool2d(x**k, 3) ** (1 / k))
    # torch's lp_pool is the window *sum* to the power 1/p
    torch.testing.assert_close(y, F.lp_pool2d(x, k, 3) / 9 ** (1 / k))


def test_several_params_stack_parameter_major():
    x = torch.rand(2, 3, 16, dtype=torch.float64) + 0.1
    both = PF.mle_pool(x, 4, dist="gamma", param="shape+scale")
    assert both.shape == (2, 6, 4)
    torch.testing.assert_close(both[:, :3], PF.mle_pool(x, 4, dist="gamma", param="shape"))
    torch.testing.assert_close(both[:, 3:], PF.mle_pool(x, 4, dist="gamma", param=["scale"]))
    shape, scale = both[:, :3], both[:, 3:]
    torch.testing.assert_close(shape * scale, PF.avg_pool(x, 4))  # the gamma MLE keeps the mean


def test_multistat_is_statistic_major_and_exact():
    x = torch.randn(2, 3, 10, 10)
    y = PF.multistat_pool(x, 2, stats="max+range")
    assert y.shape == (2, 6, 5, 5)
    assert torch.equal(y[:, :3], PF.max_pool(x, 2))
    assert torch.equal(y[:, 3:], PF.max_pool(x, 2) - PF.min_pool(x, 2))
    z = PF.multistat_pool(x.double(), 2, stats=("max", "mean", "std", "var", "min"))
    ref = x.double().unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    torch.testing.assert_close(z[:, 3:6], ref.mean(-1))
    torch.testing.assert_close(z[:, 6:9], (ref.var(-1, unbiased=False) + 1e-12).sqrt())
    torch.testing.assert_close(z[:, 9:12], ref.var(-1, unbiased=False))
    torch.testing.assert_close(z[:, 12:], ref.amin(-1))
    g = PF.multistat_pool(x.abs().double() + 0.1, 2, stats="gmean")
    torch.testing.assert_close(g, (x.abs().double() + 0.1).log().unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2)).exp())


# ---------------------------------------------------------------- zeros, constant windows, gradients

ALL = [(d, p) for d, ps in DISTRIBUTIONS.items() for p in ps]


def relu_map(dim: int = 1) -> torch.Tensor:
    """Post-ReLU-like input: whole windows of zeros, constant windows and mixed windows."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn((2, 3) + (16,) * dim, dtype=torch.float64))
    x[..., :4] = 0.0  # windows of zeros
    x[..., 4:8] = 0.7  # constant windows
    return x


@pytest.mark.parametrize(("dist", "param"), ALL)
def test_zeros_and_constant_windows_give_finite_values_and_gradients(dist, param):
    for dtype in (torch.float64, torch.float32):
        x = relu_map().to(dtype).requires_grad_(True)
        y = PF.mle_pool(x, 4, dist=dist, param=param)
        assert torch.isfinite(y).all(), (dist, param, dtype, y)
        y.sum().backward()
        assert torch.isfinite(x.grad).all(), (dist, param, dtype)
    const = PF.mle_pool(torch.full((1, 1, 8), 0.7, dtype=torch.float64), 4, dist=dist, param=param)
    if param in ("std", "var", "sigma"):
        assert (const <= 1e-6).all()
    if param in ("mean", "scale", "high", "low") and dist != "gamma":
        torch.testing.assert_close(const, torch.full_like(const, 0.7))


def test_constant_window_gamma_is_a_spike_at_its_value():
    const = torch.full((1, 1, 8), 0.7, dtype=torch.float64)
    shape, scale = PF.mle_pool(const, 4, dist="gamma", param="shape+scale").split(1, dim=1)
    assert (shape > 1e3).all() and torch.isfinite(shape).all()
    torch.testing.assert_close(shape * scale, torch.full_like(scale, 0.7))


@pytest.mark.parametrize("fn", ["multistat", "adaptive"])
def test_zeros_for_multistat_and_adaptive(fn):
    x = relu_map(2).requires_grad_(True)
    if fn == "multistat":
        y = PF.multistat_pool(x, 4, stats=list(PF.STATISTICS))
    else:
        y = PF.adaptive_mle_pool(x, 4, dists=list(DISTRIBUTIONS))
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("dist", "param"), ALL)
def test_gradcheck_float64(dist, param):
    torch.manual_seed(1)
    x = (torch.rand(1, 1, 4, 4, dtype=torch.float64) + 0.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: PF.mle_pool(t, 2, dist=dist, param=param), (x,), atol=1e-5)


def test_gradcheck_float64_padded_and_adaptive_weibull_shape():
    torch.manual_seed(2)
    x = (torch.rand(1, 1, 7, dtype=torch.float64) + 0.2).requires_grad_(True)
    for kw in ({"kernel_size": 3, "stride": 2, "padding": 1}, {"output_size": 3}):
        assert torch.autograd.gradcheck(lambda t: PF.mle_pool(t, dist="weibull", param="shape+scale", **kw), (x,))
        assert torch.autograd.gradcheck(lambda t: PF.adaptive_mle_pool(t, **kw), (x,))


def test_half_precision_is_computed_in_float32():
    x = torch.rand(2, 3, 32) + 0.5
    ref = PF.mle_pool(x, 4, dist="normal", param="std")
    y = PF.mle_pool(x.half(), 4, dist="normal", param="std")
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), PF.mle_pool(x.half().float(), 4, dist="normal", param="std").half().float())
    torch.testing.assert_close(y.float(), ref, rtol=1e-2, atol=2e-3)


# ---------------------------------------------------------------- adaptive distribution choice


def four_distributions(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Channels drawn from uniform, normal, exponential and gamma(k=3)."""
    torch.manual_seed(seed)
    shape = (n, 1, N_WIN * 8)
    return torch.cat([
        torch.rand(shape),
        5 + torch.randn(shape),
        torch.distributions.Exponential(1.0).sample(shape),
        torch.distributions.Gamma(3.0, 1.0).sample(shape),
    ], dim=1)


def test_scores_pick_the_generating_distribution_with_aic():
    dists = ("uniform", "normal", "exponential", "gamma")
    s = PF.distribution_scores(four_distributions(), N_WIN, dists=dists, criterion="aic")
    assert s.shape == (32, 4, 4)
    assert s.mean(0).argmax(-1).tolist() == [0, 1, 2, 3]
    # with the plain likelihood, gamma (which nests the exponential) fits exponential data at least as well
    ll = PF.distribution_scores(four_distributions(), N_WIN, dists=dists, criterion="loglik").mean(0)
    assert ll[2, 3] >= ll[2, 2]


def test_zeros_do_not_decide_the_choice():
    """Post-ReLU zeros are the hurdle part of the model: the scores fit the non-zero cells only, so
    half the cells set to zero (which would give any density with a pole at 0 an unbounded likelihood)
    leave the ranking as it was."""
    dists = ("uniform", "normal", "exponential", "gamma")
    x = four_distributions()
    torch.manual_seed(5)
    sparse = x * (torch.rand_like(x) < 0.5)
    s = PF.distribution_scores(sparse, N_WIN, dists=dists, criterion="aic")
    assert torch.isfinite(s).all()
    assert s.mean(0).argmax(-1).tolist() == [0, 1, 2, 3]
    # no zeros: the same as fitting every cell
    dense = PF.distribution_scores(x[:, :1], N_WIN, dists="gamma", criterion="loglik")
    ll = PF.mle_pool(x[:, :1], N_WIN, dist="gamma", param="shape+scale")
    ref = st.gamma.logpdf(x[:, 0].double().numpy(), ll[:, 0].double().repeat_interleave(N_WIN, -1).numpy(),
                          scale=ll[:, 1].double().repeat_interleave(N_WIN, -1).numpy()).mean(-1)
    torch.testing.assert_close(dense[:, 0, 0].double(), torch.from_numpy(ref), rtol=1e-4, atol=1e-4)


def test_calibrate_fixes_choice_in_a_buffer_and_hard_mode_equals_mle_pool():
    pool = AdaptiveMLEPool1d(N_WIN, channels=4, dists="uniform+normal+exponential+gamma")
    net = torch.nn.Sequential(torch.nn.Identity(), pool)
    assert not pool.calibrated and "not calibrated" in pool.describe()
    data = four_distributions()
    loader = [(data[i:i + 8], torch.zeros(8)) for i in range(0, 32, 8)]
    report = calibrate(net, loader, max_batches=3)
    assert pool.choice.tolist() == [0, 1, 2, 3]
    assert report == {"1": "uniform: 0; normal: 1; exponential: 2; gamma: 3"}
    assert net.training  # training flag restored
    x = four_distributions(4, seed=1)
    y = pool(x)
    for c, (dist, par) in enumerate([("uniform", "high"), ("normal", "mean"), ("exponential", "scale"),
                                     ("gamma", "scale")]):
        torch.testing.assert_close(y[:, c], PF.mle_pool(x[:, c:c + 1], N_WIN, dist=dist, param=par)[:, 0])
    fresh = AdaptiveMLEPool1d(N_WIN, channels=4, dists="uniform+normal+exponential+gamma")
    fresh.load_state_dict(pool.state_dict())
    assert fresh.choice.tolist() == [0, 1, 2, 3]
    assert torch.equal(fresh.eval()(x), fresh(x))


def test_small_windows_carry_no_evidence_unless_scored_on_larger_ones():
    x = four_distributions(8)
    assert torch.equal(PF.distribution_scores(x, 2), torch.zeros(8, 4, 4))  # 2 cells: any 2-parameter fit is exact
    y = PF.adaptive_mle_pool(x, 2, dists="uniform+normal+exponential+gamma")
    parts = torch.stack([PF.mle_pool(x, 2, dist=d) for d in ("uniform", "normal", "exponential", "gamma")], -1)
    torch.testing.assert_close(y, parts.mean(-1))  # no evidence: equal weights
    pool = AdaptiveMLEPool1d(2, channels=4, dists="uniform+normal+exponential+gamma", score_kernel_size=N_WIN)
    calibrate(torch.nn.Sequential(pool), [four_distributions()])
    assert pool.choice.tolist() == [0, 1, 2, 3]
    assert pool(x).shape == (8, 4, N_WIN * 4)


def test_soft_mode_is_the_softmax_weighted_mix():
    x = torch.rand(3, 2, 24, dtype=torch.float64) + 0.01
    dists = "gamma+normal+uniform"
    y = PF.adaptive_mle_pool(x, 4, dists=dists, temperature=2.0)
    wts = torch.softmax(PF.distribution_scores(x, 4, dists=dists) / 2.0, dim=-1)
    parts = torch.stack([PF.mle_pool(x, 4, dist=d) for d in dists.split("+")], dim=-1)
    torch.testing.assert_close(y, (parts * wts[:, :, None]).sum(-1))
    # a partly calibrated choice: channel 0 fixed to uniform, channel 1 still soft
    z = PF.adaptive_mle_pool(x, 4, dists=dists, choice=torch.tensor([2, -1]), temperature=2.0)
    assert torch.equal(z[:, 0], parts[:, 0, :, 2])
    torch.testing.assert_close(z[:, 1], y[:, 1])


def test_adaptive_soft_mix_ignores_padding_mode():
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    outs = [PF.adaptive_mle_pool(x, 3, 1, 1, padding_mode=m) for m in ("zeros", "reflect", "replicate")]
    for y in outs[1:]:
        torch.testing.assert_close(y[..., 1:-1, 1:-1], outs[0][..., 1:-1, 1:-1])


def test_calibrate_in_2d_network_and_describe():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), AdaptiveMLEPool2d(2, channels=3))
    loader = [torch.rand(4, 1, 10, 10) for _ in range(2)]
    calibrate(net, loader)
    choice = net[2].choice
    assert choice.shape == (3,) and ((choice >= 0) & (choice < 4)).all()
    assert all(str(c) in net[2].describe() for c in range(3))


# ---------------------------------------------------------------- registry, modules, bad input


def test_registry_specs_build_the_modules():
    m = poolkit.create_pool("mle:dist=normal,param=mean+std", dim=2, kernel_size=2)
    assert isinstance(m, MLEPool2d) and m(torch.rand(1, 3, 4, 4)).shape == (1, 6, 2, 2)
    m = poolkit.create_pool("multistat:stats=max+mean+std", dim=1, kernel_size=2)
    assert isinstance(m, MultiStatPool1d) and m(torch.rand(1, 3, 4)).shape == (1, 9, 2)
    m = poolkit.create_pool("adaptive_mle:dists=gamma+normal,criterion=aic", dim=1, kernel_size=2, channels=3)
    assert m.choice.tolist() == [-1, -1, -1]
    assert "gamma+normal" in repr(m)


@pytest.mark.parametrize(("kw", "match"), [
    ({"dist": "cauchy"}, "dist"),
    ({"dist": "gamma", "param": "mean"}, "param"),
    ({"dist": "normal", "param": "mean+mean"}, "param"),
    ({"dist": "weibull", "param": "shape", "k": 2.0}, "shape"),
    ({"dist": "weibull", "k": -1.0}, "k"),
    ({"eps": 0.0}, "eps"),
    ({"steps": -1}, "steps"),
    ({"param": 3}, "param"),
])
def test_bad_arguments_are_refused(kw, match):
    x = torch.rand(1, 2, 8)
    with pytest.raises((ValueError, TypeError), match=match):
        PF.mle_pool(x, 2, **kw)
    with pytest.raises((ValueError, TypeError), match=match):
        poolkit.create_pool("mle", dim=1, kernel_size=2, **kw)


def test_bad_adaptive_and_multistat_arguments_are_refused():
    x = torch.rand(1, 2, 8)
    with pytest.raises(ValueError, match="stats"):
        PF.multistat_pool(x, 2, stats="max+median")
    with pytest.raises(ValueError, match="choice"):
        PF.adaptive_mle_pool(x, 2, choice=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="choice"):
        PF.adaptive_mle_pool(x, 2, dists="gamma+normal", choice=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="temperature"):
        PF.adaptive_mle_pool(x, 2, temperature=0.0)
    with pytest.raises(ValueError, match="criterion"):
        AdaptiveMLEPool1d(2, criterion="bic")
    with pytest.raises(ValueError, match="channels"):
        AdaptiveMLEPool1d(2, channels=3)(x)
    with pytest.raises(ValueError, match="adaptive"):
        calibrate(torch.nn.Sequential(torch.nn.Identity()), [x])
    with pytest.raises(ValueError, match="max_batches"):
        calibrate(torch.nn.Sequential(AdaptiveMLEPool1d(2)), [x], max_batches=0)


def test_calibrate_sizes_choice_when_channels_not_given():
    pool = AdaptiveMLEPool1d(2)
    net = torch.nn.Sequential(pool)
    calibrate(net, [torch.rand(2, 5, 8)])
    assert pool.channels == 5 and pool.choice.shape == (5,)
    clone = copy.deepcopy(pool)
    assert clone(torch.rand(1, 5, 8)).shape == (1, 5, 4)
    assert torch.equal(clone.choice, pool.choice)

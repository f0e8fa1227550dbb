"""Modules for summary-statistic pooling, thin shells over :mod:`poolkit.functional.stats`.

``MLEPool{1,2,3}d`` ("mle"), ``MultiStatPool{1,2,3}d`` ("multistat") and ``AdaptiveMLEPool{1,2,3}d``
("adaptive_mle"), plus :func:`calibrate`, which fixes each adaptive layer's per-channel distribution
from data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as PF
from ..functional._window import IntOrTuple, OutputSize, Padding, check_args
from ..functional._window import ntuple as _ntuple
from ..functional.stats import DISTRIBUTIONS, STATISTICS, Names, _names
from .base import _PoolNd

__all__ = [
    "AdaptiveMLEPool1d",
    "AdaptiveMLEPool2d",
    "AdaptiveMLEPool3d",
    "MLEPool1d",
    "MLEPool2d",
    "MLEPool3d",
    "MultiStatPool1d",
    "MultiStatPool2d",
    "MultiStatPool3d",
    "calibrate",
]


class _MLEPoolNd(_PoolNd):
    """Maximum-likelihood pooling; see :func:`poolkit.functional.mle_pool` for the arguments.

    Defaults to ``dist="gamma"``, ``param="scale"``. Several ``param`` stack as channels
    (parameter-major), so the output has ``C * len(param)`` channels.

    Example:
        >>> MLEPool1d(2, dist="normal", param="mean+std")(torch.rand(4, 3, 8)).shape
        torch.Size([4, 6, 4])
    """

    _repr_keys = ("dist", "param", "k")
    fn = staticmethod(PF.mle_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        dist: str = "gamma",
        param: Names | None = None,
        k: float | None = None,
        eps: float = 1e-6,
        steps: int | None = None,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if not isinstance(dist, str) or dist.lower() not in DISTRIBUTIONS:
            raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
        self.dist = dist.lower()
        self.param = "+".join(_names(param, "param", DISTRIBUTIONS[self.dist], DISTRIBUTIONS[self.dist][:1]))
        self.k = k
        self.eps = eps
        self.steps = steps
        # validate k/eps/steps now rather than at the first forward
        PF.mle_pool(torch.ones((1, 1) + (1,) * self._dim), output_size=1, dist=self.dist, param=self.param,
                    k=k, eps=eps, steps=steps)

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "dist": self.dist, "param": self.param, "k": self.k, "eps": self.eps,
                "steps": self.steps}


class _MultiStatPoolNd(_PoolNd):
    """Several statistics as channels; see :func:`poolkit.functional.multistat_pool`.

    Output channels are statistic-major (``j * C + c``): ``C * len(stats)`` in all.

    Example:
        >>> MultiStatPool1d(2, stats="max+range")(torch.rand(4, 3, 8)).shape
        torch.Size([4, 6, 4])
    """

    _repr_keys = ("stats",)
    fn = staticmethod(PF.multistat_pool)

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        stats: Names = "max+range",
        eps: float = 1e-6,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        self.stats = "+".join(_names(stats, "stats", STATISTICS, ()))
        self.eps = eps
        PF.multistat_pool(torch.ones((1, 1) + (1,) * self._dim), output_size=1, stats=self.stats, eps=eps)

    def fn_kwargs(self) -> dict[str, Any]:
        return {**self.window_kwargs(), "stats": self.stats, "eps": self.eps}


class _AdaptiveMLEPoolNd(_PoolNd):
    """MLE pooling with the distribution chosen per channel; see :func:`poolkit.functional.adaptive_mle_pool`.

    Until :func:`calibrate` fixes a choice, every channel mixes the candidates softly (weights
    ``softmax(score / temperature)`` per sample and channel, scores of
    :func:`poolkit.functional.distribution_scores`); afterwards each channel
    uses its calibrated distribution, in training and eval alike. The choice is the buffer ``choice``
    (``-1`` = soft), saved in ``state_dict``; :meth:`describe` prints it.

    Args:
        channels: number of input channels (sizes the ``choice`` buffer). ``None``: sized by
            :func:`calibrate`; a calibrated ``state_dict`` then loads only into a module built with
            ``channels``.
        dists: candidate distributions (default ``"exponential+gamma+normal+uniform"``).
        temperature, criterion, k, eps, steps, score_kernel_size: see
            :func:`poolkit.functional.adaptive_mle_pool`.

    Example:
        >>> pool = AdaptiveMLEPool1d(2, channels=3)
        >>> pool(torch.rand(4, 3, 8)).shape
        torch.Size([4, 3, 4])
        >>> pool.describe()
        'soft mix of exponential, gamma, normal, uniform (not calibrated)'
    """

    _repr_keys = ("channels", "dists", "criterion", "score_kernel_size")
    fn = staticmethod(PF.adaptive_mle_pool)
    choice: Tensor

    def __init__(
        self,
        kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        channels: int | None = None,
        dists: Names = "exponential+gamma+normal+uniform",
        temperature: float = 1.0,
        criterion: str = "aic",
        k: float | None = None,
        eps: float = 1e-6,
        steps: int | None = None,
        score_kernel_size: IntOrTuple | None = None,
        padding_mode: str = "zeros",
        output_size: OutputSize = None,
        device: Any = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, padding_mode, output_size)
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        self.channels = channels
        self.dists = "+".join(_names(dists, "dists", tuple(DISTRIBUTIONS), ()))
        self.temperature = temperature
        self.criterion = criterion
        self.k = k
        self.eps = eps
        self.steps = steps
        if score_kernel_size is not None:
            check_args(self._dim, score_kernel_size)
        self.score_kernel_size = score_kernel_size
        self.register_buffer("choice", torch.full((channels or 0,), -1, dtype=torch.long, device=device))
        PF.adaptive_mle_pool(torch.ones((1, 1) + (1,) * self._dim), output_size=1, dists=self.dists,
                             temperature=temperature, criterion=criterion, k=k, eps=eps, steps=steps)

    @property
    def calibrated(self) -> bool:
        return self.choice.numel() > 0 and bool((self.choice >= 0).all())

    def fn_kwargs(self) -> dict[str, Any]:
        return {
            **self.window_kwargs(), "dists": self.dists, "choice": self.choice if self.choice.numel() else None,
            "temperature": self.temperature, "criterion": self.criterion, "k": self.k, "eps": self.eps,
            "steps": self.steps, "score_kernel_size": self.score_kernel_size,
        }

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"input must have channels={self.channels} channels, got shape {tuple(x.shape)}")

    def scores(self, x: Tensor) -> Tensor:
        """Per-sample, per-channel scores ``(N, C, len(dists))`` of each candidate (higher is better)."""
        self.check_input(x)
        kernel_size, stride, output_size = self.kernel_size, self.stride, self.output_size
        if self.score_kernel_size is not None:
            kernel_size, stride, output_size = self.score_kernel_size, None, None
        if output_size is None and any(
            k > n for k, n in zip(_ntuple(kernel_size, self._dim, "kernel_size"), x.shape[2:])
        ):
            kernel_size, output_size = None, 1  # as the forward pass: the window only fits padded
        return PF.distribution_scores(
            x, kernel_size, stride, dists=self.dists, criterion=self.criterion, k=self.k,
            eps=self.eps, steps=self.steps, output_size=output_size,
        )

    def set_choice(self, choice: Tensor) -> None:
        """Fix the per-channel distribution (indices into ``dists``; ``-1`` = soft)."""
        choice = torch.as_tensor(choice, dtype=torch.long, device=self.choice.device).flatten()
        if self.channels is not None and choice.numel() != self.channels:
            raise ValueError(f"choice must have channels={self.channels} entries, got {choice.numel()}")
        if bool(((choice < -1) | (choice >= len(self.dists.split("+")))).any()):
            raise ValueError(f"choice entries must be -1 or indices into dists {self.dists!r}, got {choice.tolist()}")
        self.channels = choice.numel()
        self.choice = choice

    def describe(self) -> str:
        """Readable per-channel choice, e.g. ``'gamma: 0, 2; normal: 1'``."""
        names = self.dists.split("+")
        if not self.choice.numel() or not bool((self.choice >= 0).any()):
            return f"soft mix of {', '.join(names)} (not calibrated)"
        parts = []
        for i, n in enumerate(names):
            chans = (self.choice == i).nonzero().flatten().tolist()
            if chans:
                parts.append(f"{n}: {', '.join(map(str, chans))}")
        soft = (self.choice < 0).nonzero().flatten().tolist()
        if soft:
            parts.append(f"soft: {', '.join(map(str, soft))}")
        return "; ".join(parts)


class MLEPool1d(_MLEPoolNd):
    _dim = 1


class MLEPool2d(_MLEPoolNd):
    _dim = 2


class MLEPool3d(_MLEPoolNd):
    _dim = 3


class MultiStatPool1d(_MultiStatPoolNd):
    _dim = 1


class MultiStatPool2d(_MultiStatPoolNd):
    _dim = 2


class MultiStatPool3d(_MultiStatPoolNd):
    _dim = 3


class AdaptiveMLEPool1d(_AdaptiveMLEPoolNd):
    _dim = 1


class AdaptiveMLEPool2d(_AdaptiveMLEPoolNd):
    _dim = 2


class AdaptiveMLEPool3d(_AdaptiveMLEPoolNd):
    _dim = 3


@torch.no_grad()
def calibrate(model: nn.Module, loader: Iterable[Any], max_batches: int | None = None) -> dict[str, str]:
    """Fix every adaptive-MLE layer's per-channel distribution from data.

    Runs up to ``max_batches`` batches of ``loader`` through ``model`` (in eval mode, no gradients) with
    forward hooks on each :class:`AdaptiveMLEPool1d`/``2d``/``3d``; each layer sums its inputs'
    per-channel scores (:meth:`~_AdaptiveMLEPoolNd.scores`) over all samples and sets ``choice`` to the
    best distribution per channel. Layers keep their current mode during the pass. The model's training
    flag is restored afterwards.

    Args:
        model: any module containing adaptive-MLE pools.
        loader: iterable of batches: a tensor, or a tuple/list/dict whose first element (or ``"x"``/
            ``"input"`` entry) is the model input.
        max_batches: stop after this many batches (``None``: the whole loader).

    Returns:
        ``{layer name: layer.describe()}``.

    Example:
        >>> net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), AdaptiveMLEPool1d(2, channels=4))
        >>> report = calibrate(net, [torch.rand(8, 1, 32)])
        >>> bool(net[2].calibrated)
        True
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, _AdaptiveMLEPoolNd)}
    if not layers:
        raise ValueError("model has no adaptive MLE pooling layer (AdaptiveMLEPool1d/2d/3d) to calibrate")
    totals: dict[str, Tensor] = {}

    def hook(name: str):
        def fn(mod: _AdaptiveMLEPoolNd, args: tuple, _out: Any) -> None:
            s = mod.scores(args[0]).double().sum(0)
            totals[name] = totals[name] + s if name in totals else s
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    params = next(iter(model.parameters()), None)
    device = params.device if params is not None else None
    model.eval()
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if isinstance(batch, dict):
                x = batch.get("x", batch.get("input"))
            elif isinstance(batch, (tuple, list)):
                x = batch[0]
            else:
                x = batch
            if not isinstance(x, Tensor):
                raise TypeError(f"loader batches must be a tensor or hold one first, got {type(batch).__name__}")
            model(x.to(device) if device is not None else x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = sorted(set(layers) - set(totals))
    if missing:
        raise ValueError(f"loader gave no batch that reached layer(s) {', '.join(missing)}")
    for n, m in layers.items():
        m.set_choice(totals[n].argmax(-1))
    return {n: m.describe() for n, m in layers.items()}


POOLS: dict[str, tuple[type, type, type]] = {
    "mle": (MLEPool1d, MLEPool2d, MLEPool3d),
    "multistat": (MultiStatPool1d, MultiStatPool2d, MultiStatPool3d),
    "adaptive_mle": (AdaptiveMLEPool1d, AdaptiveMLEPool2d, AdaptiveMLEPool3d),
}

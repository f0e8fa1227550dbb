"""Model surgery: swap pooling layers, anti-alias a network, make it shift-invariant.

Each function edits the model in place (weights are kept: convolutions are the
same objects, with ``stride`` or ``padding_mode`` changed) and returns the list
of :class:`Change` records. A strided convolution becomes
``nn.Sequential(conv_at_stride_1, pool)``, so its parameter names gain a ``.0``
(``conv1.weight`` -> ``conv1.0.weight``). Every replacement is planned before any
is made, so an error leaves the model untouched.

>>> import torch, poolkit.convert as pc
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
>>> [c.name for c in pc.antialias(net)]
['0', '1', '2']
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from torch import Tensor, nn

from . import nn as pnn
from .registry import create_pool, get_pool_class, parse_spec

__all__ = ["POOL_TYPES", "Change", "RatioPool", "antialias", "make_shift_invariant", "swap_pools"]


class Change(NamedTuple):
    """One edit: the module's qualified name and its ``repr`` before and after."""

    name: str
    before: str
    after: str


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_LP = (nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)
_ADAPTIVE = (
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)
_FRACTIONAL = (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)
#: every torch pooling module type :func:`swap_pools` replaces by default
POOL_TYPES: tuple[type[nn.Module], ...] = _MAX + _AVG + _LP + _ADAPTIVE + _FRACTIONAL
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus,
)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d, nn.LayerNorm)


def _dim(m: nn.Module) -> int:
    name = type(m).__name__
    for d in (1, 2, 3):
        if name.endswith(f"{d}d"):
            return d
    raise ValueError(f"cannot tell the number of spatial dims of {name}")


def _tuple(v: Any, d: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * d


def _subsampling(cls: type) -> bool:
    return bool(getattr(cls, "subsampling", False))


class RatioPool(nn.Module):
    """Adaptive pooling at a fixed ratio of the input size (``FractionalMaxPool``'s ``output_ratio``).

    Calls ``pool``'s function with ``output_size = floor(L * ratio)`` per dim.

    Example:
        >>> import torch
        >>> RatioPool(pnn.MaxPool2d(output_size=1), 0.5)(torch.rand(1, 2, 9, 9)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, pool: nn.Module, ratio: float | Sequence[float]) -> None:
        super().__init__()
        self.pool = pool
        self.ratio = ratio

    def forward(self, x: Tensor) -> Any:
        d = x.ndim - 2
        out = tuple(max(int(n * r), 1) for n, r in zip(x.shape[2:], _tuple(self.ratio, d)))
        kw = {**self.pool.fn_kwargs(), "output_size": out}  # type: ignore[operator]
        return type(self.pool).fn(x, **kw)  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


def _geometry(m: nn.Module) -> dict[str, Any]:
    """Window arguments of a torch pooling module (only those it has)."""
    if isinstance(m, _ADAPTIVE):
        return {"output_size": m.output_size}
    if isinstance(m, _FRACTIONAL):
        return {"kernel_size": m.kernel_size}
    geo: dict[str, Any] = {"kernel_size": m.kernel_size, "stride": m.stride}
    for key in ("padding", "dilation", "ceil_mode"):
        if hasattr(m, key):
            geo[key] = getattr(m, key)
    if isinstance(m, _AVG) and not m.count_include_pad:
        geo["count_include_pad"] = False
    if getattr(m, "divisor_override", None) is not None:
        geo["divisor_override"] = m.divisor_override
    return geo


_DEFAULTS = {"padding": 0, "dilation": 1, "ceil_mode": False}


def _is_default(key: str, value: Any) -> bool:
    if key not in _DEFAULTS:
        return False
    return all(v == _DEFAULTS[key] for v in _tuple(value, 1))


def _build_pool(spec: str, m: nn.Module) -> nn.Module:
    """The poolkit pool of ``spec`` with the geometry of torch pooling module ``m``."""
    d = _dim(m)
    name, params = parse_spec(spec)
    cls = get_pool_class(name, d)
    accepted = set(inspect.signature(cls).parameters)
    channels = params.pop("channels", None)
    geo = _geometry(m)
    if isinstance(m, _FRACTIONAL):
        if "output_size" not in accepted:
            raise ValueError(f"{type(m).__name__} needs an adaptive form; pool {name!r} takes no output_size")
        if m.output_size is not None:
            return create_pool(spec, d, channels=channels, output_size=m.output_size)
        return RatioPool(create_pool(spec, d, channels=channels, output_size=1), m.output_ratio)
    if "output_size" in geo:
        if "output_size" not in accepted:
            raise ValueError(f"{type(m).__name__} is adaptive; pool {name!r} takes no output_size")
        return create_pool(spec, d, channels=channels, output_size=geo["output_size"])
    stride = geo["stride"] if geo["stride"] is not None else geo["kernel_size"]
    if _subsampling(cls):
        # kernel_size of these pools is the subsampling factor: the output size matches for "same"-like padding
        return create_pool(spec, d, kernel_size=stride, channels=channels)
    kw: dict[str, Any] = {}
    for key, value in geo.items():
        if key in ("kernel_size", "stride"):
            continue
        if key in accepted:
            kw[key] = value
        elif not _is_default(key, value):
            raise ValueError(f"pool {name!r} takes no {key}, needed for {m!r}; accepted: {', '.join(sorted(accepted))}")
    return create_pool(spec, d, kernel_size=geo["kernel_size"], stride=stride, channels=channels, **kw)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def _apply(model: nn.Module, plan: Iterable[tuple[str, nn.Module | None, str]]) -> list[Change]:
    """Carry out ``(name, replacement or None for an in-place edit, repr before)`` records."""
    changes = []
    for name, new, before in plan:
        if new is None:
            new = model.get_submodule(name)
        else:
            parent, attr = _parent(model, name)
            setattr(parent, attr, new)
        changes.append(Change(name, before, repr(new)))
    return changes


def swap_pools(model: nn.Module, spec: str, types: Sequence[type[nn.Module]] | None = None) -> list[Change]:
    """Replace every torch pooling module by the poolkit pool of ``spec``, with the same geometry.

    Window pools keep ``kernel_size``, ``stride``, ``padding``, ``dilation``,
    ``ceil_mode`` (an error names any the new pool cannot take at a non-default
    value); adaptive pools keep ``output_size``; ``FractionalMaxPool`` becomes the
    adaptive form at its ``output_size`` or ``output_ratio``. For pools whose
    ``kernel_size`` is the subsampling factor (``blurpool``, ``aps``, ``lps``) the
    torch pool's stride is used. Learnable pools get ``channels`` from the spec
    (``"lps:channels=64"``).

    Args:
        model: any module; edited in place.
        spec: a registered pool spec, e.g. ``"lp:p=3"`` or ``"maxblur:filt=5"``.
        types: torch pooling classes to replace; default :data:`POOL_TYPES` (1-D to 3-D).

    Returns:
        One :class:`Change` per replaced module.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.MaxPool1d(2))
        >>> swap_pools(net, "lp:p=3")[0].name
        '1'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    types = tuple(POOL_TYPES if types is None else types)
    if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"types must be torch.nn.Module classes, got {types!r}")
    plan = [(name, _build_pool(spec, m), repr(m)) for name, m in model.named_modules() if name and isinstance(m, types)]
    return _apply(model, plan)


def _strided(stride: Any) -> bool:
    return any(s > 1 for s in _tuple(stride, 1))


def _factor(m: nn.Module) -> tuple[int, ...]:
    d = _dim(m)
    s = m.stride if getattr(m, "stride", None) is not None else m.kernel_size  # type: ignore[attr-defined]
    return _tuple(s, d)


def _after_activation(model: nn.Module, name: str) -> str | None:
    """Name of the activation that follows conv ``name`` in its ``nn.Sequential`` (norm layers may sit between)."""
    parent, attr = _parent(model, name)
    if not isinstance(parent, nn.Sequential):
        return None
    keys = list(parent._modules)
    i = keys.index(attr) + 1
    while i < len(keys) and isinstance(parent._modules[keys[i]], _NORMS):
        i += 1
    if i < len(keys) and isinstance(parent._modules[keys[i]], _ACTIVATIONS):
        prefix = name.rpartition(".")[0]
        return f"{prefix}.{keys[i]}" if prefix else keys[i]
    return None


def _restride(conv: nn.Module) -> nn.Module:
    conv.stride = (1,) * _dim(conv)  # type: ignore[assignment]
    return conv


def antialias(model: nn.Module, filt: int = 4, convs: bool = True, pools: bool = True) -> list[Change]:
    """Zhang's anti-aliasing recipe on any model, 1-D to 3-D.

    - ``MaxPool(k, s, p)`` with ``s > 1`` -> ``maxblur(k, s, p, filt)`` (dense max, then blurpool);
    - ``AvgPool`` with ``s > 1`` -> ``blurpool(s, filt)``;
    - ``Conv(stride=s > 1)`` -> the same conv at stride 1, then ``blurpool(s, filt)``; when the
      conv sits in an ``nn.Sequential`` and an activation follows it (norm layers may come
      between), the blur goes after that activation instead.

    Output sizes are unchanged (blurpool gives ``ceil(L / s)``, the size of a
    "same"-padded strided layer; maxblur keeps max pooling's size).

    Args:
        model: any module; edited in place.
        filt: binomial filter size.
        convs: anti-alias strided convolutions.
        pools: anti-alias strided max and average pooling.

    Returns:
        One :class:`Change` per edited module (a conv followed by an activation
        gives two: the conv at stride 1, and the activation with the blur).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2), nn.ReLU())
        >>> [(c.name, c.after.splitlines()[0]) for c in antialias(net)]
        [('0', 'Conv1d(2, 4, kernel_size=(3,), stride=(1,))'), ('1', 'Sequential(')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
        raise ValueError(f"filt must be an int >= 1, got {filt!r}")
    plan: list[tuple[str, nn.Module | None, str]] = []
    restride: list[nn.Module] = []
    for name, m in model.named_modules():
        if not name:
            continue
        if pools and isinstance(m, _MAX) and _strided(_factor(m)):
            if m.ceil_mode:
                raise ValueError(f"{name}: maxblur has no ceil_mode; got {m!r}")
            cls = get_pool_class("maxblur", _dim(m))
            plan.append((name, cls(m.kernel_size, _factor(m), m.padding, m.dilation, filt=filt), repr(m)))
        elif pools and isinstance(m, _AVG) and _strided(_factor(m)):
            if m.ceil_mode:
                raise ValueError(f"{name}: blurpool has no ceil_mode; got {m!r}")
            plan.append((name, get_pool_class("blurpool", _dim(m))(_factor(m), filt=filt), repr(m)))
        elif convs and isinstance(m, _CONVS) and _strided(m.stride):
            blur = get_pool_class("blurpool", _dim(m))(tuple(m.stride), filt=filt)
            act = _after_activation(model, name)
            restride.append(m)
            if act is None:
                plan.append((name, nn.Sequential(m, blur), repr(m)))
            else:
                plan.append((name, None, repr(m)))
                a = model.get_submodule(act)
                plan.append((act, nn.Sequential(a, blur), repr(a)))
    for conv in restride:
        _restride(conv)
    return _apply(model, plan)


_METHODS = ("aps", "lps", "blur")


def make_shift_invariant(model: nn.Module, method: str = "aps") -> list[Change]:
    """Make a convolutional model invariant to circular shifts of its input.

    Every convolution with padding gets ``padding_mode="circular"``; wherever a
    stride subsamples (strided conv, max or average pooling), the layer runs at
    stride 1 (pools with circular padding) and a polyphase pool does the
    subsampling:

    - ``"aps"``: adaptive polyphase sampling; with "same"-padded layers and a
      global pool at the end, the model's output is the same for every circular
      shift (to float tolerance), at any input size.
    - ``"lps"``: learnable polyphase sampling (exact in eval mode); its channel
      count is the conv's ``out_channels``, for pools that of the closest conv or
      norm layer registered before it.
    - ``"blur"``: blurpool with circular padding (approximate invariance only).

    Adaptive pools with output size above 1 and unpadded convolutions with
    kernel > 1 are left as they are; they break exact invariance.

    Args:
        model: any module; edited in place.
        method: ``"aps"``, ``"lps"`` or ``"blur"``; a spec with parameters
            (``"aps:norm=l1"``, ``"blur:filt=5"``) is accepted too.

    Returns:
        One :class:`Change` per edited module.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> [c.name for c in make_shift_invariant(net)]
        ['0']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    base, params = parse_spec(method) if isinstance(method, str) else ("", {})
    if base not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS} (optionally with parameters), got {method!r}")

    def pool(d: int, factor: tuple[int, ...], channels: int | None) -> nn.Module:
        if base == "blur":
            return get_pool_class("blurpool", d)(factor, padding_mode="circular", **params)
        if base == "lps":
            if channels is None:
                raise ValueError("method='lps' needs a channel count: no conv or norm layer precedes a pool")
            return get_pool_class("lps", d)(factor, channels=channels, **params)
        return get_pool_class("aps", d)(factor, **params)

    plan: list[tuple[str, nn.Module | None, str]] = []
    restride: list[nn.Module] = []
    make_circular: list[nn.Module] = []
    channels: int | None = None
    for name, m in model.named_modules():
        if not name:
            continue
        if isinstance(m, _CONVS):
            channels = m.out_channels
            padded = m.padding == "same" or any(p > 0 for p in _tuple(m.padding, 1))
            if _strided(m.stride):
                restride.append(m)
                plan.append((name, nn.Sequential(m, pool(_dim(m), tuple(m.stride), channels)), repr(m)))
            elif padded and m.padding_mode != "circular":
                plan.append((name, None, repr(m)))
            if padded:
                make_circular.append(m)
        elif isinstance(m, _NORMS) and hasattr(m, "num_features"):
            channels = int(getattr(m, "num_features"))  # noqa: B009
        elif isinstance(m, _MAX + _AVG) and _strided(_factor(m)):
            d = _dim(m)
            if getattr(m, "ceil_mode", False):
                raise ValueError(f"{name}: ceil_mode is not supported here; got {m!r}")
            if isinstance(m, _MAX):
                dense: nn.Module = pnn.MaxPool1d if d == 1 else (pnn.MaxPool2d if d == 2 else pnn.MaxPool3d)  # type: ignore[assignment]
                dense = dense(m.kernel_size, 1, m.padding, m.dilation, padding_mode="circular")  # type: ignore[operator]
            else:
                cls = get_pool_class("avg", d)
                dense = cls(m.kernel_size, 1, m.padding, padding_mode="circular")
            plan.append((name, nn.Sequential(dense, pool(d, _factor(m), channels)), repr(m)))
    for conv in restride:
        _restride(conv)
    for conv in make_circular:
        setattr(conv, "padding_mode", "circular")  # noqa: B010
    return _apply(model, plan)


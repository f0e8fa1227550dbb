"""Model surgery: swap pooling layers, anti-alias a network, make it shift-invariant.

Each function edits the model in place (weights are kept: convolutions are the
same objects, with ``stride`` or ``padding_mode`` changed) and returns a
:class:`Report`: the list of :class:`Change` records, with what it left as it was
(``.skipped``: layers it cannot convert, functional pooling calls found by
``torch.fx``), the layers sharing one phase (``.tied``) and the parts ``torch.fx``
could not trace (``.untraced``). A strided convolution becomes
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
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from torch import Tensor, nn

from ._surgery import (
    Change,
    DryRun,
    PhaseFollower,
    PhaseLeader,
    PhaseLink,
    ReflectFallback,
    Report,
    Skip,
    analyse,
    dry_run,
    with_fallback,
)
from .registry import create_pool, get_pool_class, parse_spec

__all__ = ["POOL_TYPES", "Change", "PhaseFollower", "PhaseLeader", "RatioPool", "ReflectFallback", "Report", "Skip",
           "antialias", "make_shift_invariant", "swap_pools"]


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
        >>> from poolkit import nn as pnn
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


def _apply(model: nn.Module, plan: Iterable[tuple[str, nn.Module | None, str]],
           notes: dict[str, str] | None = None) -> list[Change]:
    """Carry out ``(name, replacement or None for an in-place edit, repr before)`` records."""
    changes = []
    for name, new, before in plan:
        if new is None:
            new = model.get_submodule(name)
        else:
            parent, attr = _parent(model, name)
            new.train(getattr(parent, attr).training)  # a new module runs in the mode of the one it replaces
            setattr(parent, attr, new)
        changes.append(Change(name, before, _repr(new), (notes or {}).get(name, "")))
    return changes


def _torch_size(n: int, k: int, s: int, p: int, dil: int, ceil: bool) -> int | None:
    """Output size of a torch conv/pool along one axis (None where torch refuses the input)."""
    eff = n + 2 * p - dil * (k - 1) - 1
    if eff < 0:
        return None
    if not ceil:
        return eff // s + 1
    out = -(-eff // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out  # torch drops a last window that starts in the padding


def _size_note(m: nn.Module, factor: tuple[int, ...]) -> str:
    """Why and how the output size of strided layer ``m`` changes when it becomes "same" + ``ceil(n / s)``; or ""."""
    d = _dim(m)
    k = _tuple(getattr(m, "kernel_size", 1), d)
    dil = _tuple(getattr(m, "dilation", 1), d)
    pad = getattr(m, "padding", 0)
    p = (0,) * d if isinstance(pad, str) else _tuple(pad, d)
    ceil = bool(getattr(m, "ceil_mode", False))
    parts = []
    for ax in range(d):
        s = factor[ax]
        bad = [n for n in range(1, 257)
               if (o := _torch_size(n, k[ax], s, p[ax], dil[ax], ceil)) is not None and o != -(-n // s)]
        if not bad:
            continue
        c = 2 * p[ax] - dil[ax] * (k[ax] - 1) - 1
        inner = "n" if c == 0 else f"n{c:+d}"
        old = f"{'ceil' if ceil else 'floor'}(({inner})/{s})+1"
        ex = next((n for n in bad if n >= 16), bad[0])
        parts.append((ax, f"ceil(n/{s}) instead of {old}",
                      f"{ex} -> {-(-ex // s)} instead of {_torch_size(ex, k[ax], s, p[ax], dil[ax], ceil)}"))
    if not parts:
        return ""
    rule = "ceil" if ceil else "floor"
    if len(parts) == d and len({(t, e) for _, t, e in parts}) == 1:
        where = f"output size per axis: {parts[0][1]} (e.g. {parts[0][2]})"
    else:
        where = "; ".join(f"spatial axis {ax}: {t} (e.g. {e})" for ax, t, e in parts)
        where = f"output size changes, {where}"
    return (f"{where}; torch's rule {rule}((n+2p-d(k-1)-1)/s)+1 becomes ceil(n/s) (padding that keeps the input's "
            "size, then subsampling): a layer after it that expects the old size (a Linear after Flatten) must be "
            "adapted")


def _example(model: nn.Module, example_input: Any) -> DryRun | None:
    """The model's dry run on ``example_input`` before surgery (None without one); an error leaves it untouched."""
    if example_input is None:
        return None
    if not isinstance(example_input, Tensor):
        raise TypeError(f"example_input must be a torch.Tensor (one batch the model takes) or None, "
                        f"got {type(example_input).__name__}")
    before = dry_run(model, example_input, {name for name, _ in model.named_modules() if name})
    if before.error is not None:
        raise ValueError(f"example_input: the model fails on it before surgery, in {before.where}: {before.error}")
    return before


def _check_example(model: nn.Module, x: Tensor, before: DryRun, changes: list[Change], what: str) -> list[Skip]:
    """Run ``x`` through the converted model: size facts into the changes' notes, failures returned (and warned)."""
    fallbacks = {name: m for name, m in model.named_modules() if isinstance(m, ReflectFallback)}
    after = dry_run(model, x, {c.name for c in changes} | set(fallbacks))
    for i, c in enumerate(changes):
        extra = []
        if c.note.startswith("output size") and c.name in before.outputs and c.name in after.outputs:
            old, new = before.outputs[c.name][2:], after.outputs[c.name][2:]
            extra.append(f"on example_input: {old} -> {new}" if old != new else
                         f"on example_input the size is unchanged: {new}")
        for name, fb in fallbacks.items():
            if (name == c.name or name.startswith(c.name + ".")) and name in after.inputs:
                size = after.inputs[name][2:]
                extra.append(f"on example_input {name} blurs {size}: "
                             f"{'replicates' if fb.falls_back(size) else 'reflects'}")
        if extra:
            changes[i] = c._replace(note="; ".join(([c.note] if c.note else []) + extra))
    failures = []
    where = f"forward on example_input of shape {tuple(x.shape)}"
    if after.error is not None:
        failures.append(Skip(after.where or "(model)", where, after.error + " (the layer that raised, or the first "
                             "after a size change, is where the model must be adapted)"))
    elif after.output != before.output:
        failures.append(Skip("(model)", where, f"output shape {before.output} before surgery, {after.output} after"))
    for f in failures:
        warnings.warn(f"{what}: the converted model fails ({f.what}) at {f.name}: {f.reason}; see the Report",
                      stacklevel=3)
    return failures


def _repr(m: nn.Module) -> str:
    try:
        return repr(m)
    except RuntimeError as err:  # e.g. a module whose extra_repr reads a meta tensor's value
        return f"{type(m).__name__}(...)  [repr failed: {err}]"


def swap_pools(model: nn.Module, spec: str, types: Sequence[type[nn.Module]] | None = None) -> Report:
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
        A :class:`Report`: one :class:`Change` per replaced module; functional pooling
        calls found in a ``forward`` (by ``torch.fx``) in ``.skipped``.

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
    like = next((p for p in model.parameters() if p.is_floating_point()), None)
    if like is not None:  # learnable pools: their parameters where the model's are
        for _, new, _ in plan:
            new.to(device=like.device, dtype=like.dtype)
    report = _report(model, [], [])
    report.extend(_apply(model, plan))
    return report


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


def _same_pads(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    """``F.pad`` amounts (last dim first) of torch's "same" rule: ``dilation (k - 1)`` in all, the extra cell after."""
    pads: list[int] = []
    for k, d in zip(reversed(kernel), reversed(dilation)):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _conv_padding(m: nn.Module) -> str:
    """``"same"`` (keeps the size at stride 1), ``"none"`` (no padding) or ``"other"``."""
    d = _dim(m)
    k, dil = _tuple(m.kernel_size, d), _tuple(m.dilation, d)  # type: ignore[attr-defined]
    pad = m.padding  # type: ignore[attr-defined]
    if pad == "same" or all(ki == 1 for ki in k):
        return "same"
    if pad == "valid" or all(p == 0 for p in _tuple(pad, d)):
        return "none"
    if all(2 * p == di * (ki - 1) for p, di, ki in zip(_tuple(pad, d), dil, k)):
        return "same"
    return "other"


_UNSUPPORTED = (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d, nn.PixelUnshuffle, nn.Unfold)


def _common_skips(name: str, m: nn.Module, skipped: list[Skip]) -> None:
    if isinstance(m, _UNSUPPORTED):
        skipped.append(Skip(name, repr(m), "subsamples at a fixed grid and has no shift-robust replacement here"))
    elif isinstance(m, _ADAPTIVE) and not all(v == 1 for v in _tuple(m.output_size, 1) if v is not None):
        skipped.append(Skip(name, repr(m), "adaptive pool to a size above 1: its bins move with the input size, "
                                           "not with a shift (exact invariance is lost here)"))


def _report(model: nn.Module, changes: list[Change], skipped: list[Skip], kind: Any = None,
            tied: Any = ()) -> Report:
    analysis = analyse(model, kind or (lambda name: None))
    return Report(changes, skipped + analysis.skipped, tied, analysis.untraced)


_BLUR_MODES = ("reflect", "replicate", "zeros", "circular")
_INDICES = "return_indices=True: a MaxUnpool downstream needs the indices of this exact pooling"


def _fallback(pool: nn.Module, mode: str) -> nn.Module:
    """``pool`` as it is, or, reflect-padded, a :class:`ReflectFallback` (replicate on maps too small to reflect)."""
    return with_fallback(pool) if mode == "reflect" and int(getattr(pool, "filt")) > 1 else pool  # noqa: B009


def _fallback_note(filt: int) -> str:
    return (f"blur reflects the border, and replicates it on maps of {filt // 2} or fewer cells along an axis "
            "(reflection needs filt // 2 below the size; same output size)")


def antialias(model: nn.Module, filt: int = 4, convs: bool = True, pools: bool = True,
              padding_mode: str = "reflect", *, example_input: Tensor | None = None) -> Report:
    """Zhang's anti-aliasing recipe on any model, 1-D to 3-D.

    - ``MaxPool(k, s, p)`` with ``s > 1`` -> ``maxblur(k, s, p, filt)`` (dense max, then blurpool);
    - ``AvgPool`` with ``s > 1`` -> ``blurpool(s, filt)``;
    - ``Conv(stride=s > 1)`` -> the same conv at stride 1, then ``blurpool(s, filt)``; where
      an activation follows it (a norm layer may come between: next in an ``nn.Sequential``,
      or the only consumer of its output in the ``torch.fx`` graph), the blur goes after the
      activation, as antialiased-cnns' ResNets have it. A ReLU/ReLU6 that is called again
      elsewhere (torchvision's shared ``self.relu``) or is functional gets a copy, with the
      blur, after the norm layer: the original ReLU then changes nothing. A conv with
      circular padding gets a circular blur.

    The blur pads with ``padding_mode`` (``"reflect"`` as antialiased-cnns). Reflection
    needs ``filt // 2`` below the size of the map it blurs; a CIFAR-sized ResNet's
    last stage has 2×2 maps and below, so with ``"reflect"`` each blur is wrapped in
    a :class:`ReflectFallback` (``FallbackBlurPool2d``, ``FallbackMaxBlurPool2d``, ...:
    subclasses of the poolkit pools, same arguments and state): on a map of
    ``filt // 2`` or fewer cells along an axis it replicates the border instead
    (same output size), and reflects everywhere else; each such :class:`Change`
    says so in its ``note``.

    Output sizes of convolutions (at stride 1, then blurpool's ``ceil(L / s)``) and
    max pools (maxblur keeps max pooling's size) are unchanged. A strided average
    pool becomes ``blurpool(s)``, of size ``ceil(L / s)``: where that differs from
    the pool's (``AvgPool2d(2)`` on odd sizes, ``AvgPool2d(3, 2)``) its ``Change.note``
    says how. What cannot be anti-aliased is left as it was and reported: pools with
    ``ceil_mode=True``, ``LPPool``, fractional pools, functional pooling calls in a
    ``forward`` (found by ``torch.fx``).

    With ``example_input`` (one batch the model takes), the model runs it once before
    and once after surgery (eval mode, no grad, modes restored): the notes then say
    which blurs replicate at that size, and ``.failures`` (with a warning) names the
    module that raises or an output shape that changed.

    Args:
        model: any module; edited in place.
        filt: binomial filter size.
        convs: anti-alias strided convolutions.
        pools: anti-alias strided max and average pooling.
        padding_mode: the blur's border: ``"reflect"``, ``"replicate"``, ``"zeros"`` or ``"circular"``.
        example_input: optional input batch for a dry run before and after (see above).

    Returns:
        A :class:`Report`: one :class:`Change` per edited module (a conv followed by an
        activation gives two: the conv at stride 1, and the activation with the blur),
        in ``.skipped`` / ``.untraced`` what was left as it was, in ``.failures`` what
        fails on ``example_input``.

    Raises:
        ValueError: a bad argument, or a model that fails on ``example_input`` before surgery.

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
    if padding_mode not in _BLUR_MODES:
        raise ValueError(f"padding_mode must be one of {_BLUR_MODES}, got {padding_mode!r}")
    example = _example(model, example_input)
    plan: list[tuple[str, nn.Module | None, str]] = []
    notes: dict[str, str] = {}
    wrap_note = _fallback_note(filt) if padding_mode == "reflect" and filt > 1 else ""
    restride: list[nn.Module] = []
    skipped: list[Skip] = []
    strided = {name: ("sub", tuple(m.stride)) for name, m in model.named_modules()
               if convs and isinstance(m, _CONVS) and _strided(m.stride)}
    analysis = analyse(model, strided.get)
    after = analysis.after
    for name, m in model.named_modules():
        if not name:
            continue
        if pools and isinstance(m, _MAX + _AVG + _LP) and _strided(_factor(m)):
            if getattr(m, "return_indices", False):
                skipped.append(Skip(name, repr(m), _INDICES))
            elif getattr(m, "ceil_mode", False):
                skipped.append(Skip(name, repr(m), "ceil_mode=True: maxblur and blurpool give floor-mode sizes, "
                                                   "so the output shape would change"))
            elif isinstance(m, _LP):
                skipped.append(Skip(name, repr(m), "LPPool has no anti-aliased form here"))
            elif isinstance(m, _MAX):
                new = create_pool("maxblur", dim=_dim(m), kernel_size=m.kernel_size, stride=_factor(m),
                                  padding=m.padding, dilation=m.dilation, filt=filt, blur_padding_mode=padding_mode)
                plan.append((name, _fallback(new, padding_mode), repr(m)))
                notes[name] = wrap_note
            else:
                blur = create_pool("blurpool", dim=_dim(m), kernel_size=_factor(m), filt=filt,
                                   padding_mode=padding_mode)
                plan.append((name, _fallback(blur, padding_mode), repr(m)))
                notes[name] = "; ".join(t for t in (_size_note(m, _factor(m)), wrap_note) if t)
        elif convs and isinstance(m, _CONVS) and _strided(m.stride):
            mode = "circular" if m.padding_mode == "circular" else padding_mode
            blur = _fallback(create_pool("blurpool", dim=_dim(m), kernel_size=tuple(m.stride), filt=filt,
                                         padding_mode=mode), mode)
            blur_note = wrap_note if mode == "reflect" else ""
            act = _after_activation(model, name)
            host, relu = None, None
            if act is None and name in after:
                norm, act_name, once, act_type = after[name]
                if act_name is not None and once:
                    act = act_name
                elif act_type in (nn.ReLU, nn.ReLU6):
                    # the activation is shared (torchvision's self.relu) or functional: blur after a copy of it;
                    # the original then changes nothing (ReLU of a blur of non-negative values)
                    host, relu = norm, act_type()
            restride.append(m)
            if act is not None:
                plan.append((name, None, repr(m)))
                a = model.get_submodule(act)
                plan.append((act, nn.Sequential(a, blur), repr(a)))
                notes[act] = blur_note
            elif relu is not None and host is not None:
                plan.append((name, None, repr(m)))
                h = model.get_submodule(host)
                plan.append((host, nn.Sequential(h, relu, blur), repr(h)))
                notes[host] = blur_note
            elif relu is not None:
                plan.append((name, nn.Sequential(m, relu, blur), repr(m)))
                notes[name] = blur_note
            else:
                plan.append((name, nn.Sequential(m, blur), repr(m)))
                notes[name] = blur_note
        else:
            _common_skips(name, m, skipped)
    for conv in restride:
        _restride(conv)
    changes = _apply(model, plan, notes)
    failures = [] if example is None else _check_example(model, example_input, example, changes,  # type: ignore[arg-type]
                                                         "antialias")
    return Report(changes, skipped + analysis.skipped, (), analysis.untraced, failures)


_METHODS = ("aps", "lps", "blur")


class _Sub(NamedTuple):
    """A planned subsampling: ``Sequential(*parts, pool)`` replaces module ``name``."""

    name: str
    parts: list[nn.Module]
    pool: nn.Module
    factor: tuple[int, ...]
    before: str


def _dense(kind: str, m: nn.Module) -> nn.Module:
    """Pool ``m`` at stride 1 with circular "same" padding (the input's size, every window wrapped)."""
    d = _dim(m)
    geo: dict[str, Any] = {"kernel_size": getattr(m, "kernel_size"), "stride": 1, "padding": "same",  # noqa: B009
                           "padding_mode": "circular"}
    if kind == "max":
        return create_pool("max", dim=d, dilation=getattr(m, "dilation"), **geo)  # noqa: B009
    if kind == "avg":
        if getattr(m, "divisor_override", None) is not None:
            geo["divisor_override"] = getattr(m, "divisor_override")  # noqa: B009
        return create_pool("avg", dim=d, **geo)
    cls = get_pool_class("lp", d)
    geo["norm_type" if "norm_type" in inspect.signature(cls).parameters else "p"] = getattr(m, "norm_type")  # noqa: B009
    return create_pool("lp", dim=d, **geo)


def make_shift_invariant(model: nn.Module, method: str = "aps", *, tie_phases: bool = True,
                         example_input: Tensor | None = None) -> Report:
    """Make a convolutional model invariant to circular shifts of its input.

    Every convolution with padding gets ``padding_mode="circular"``; wherever a
    stride subsamples (strided conv, max, average or LP pooling), the layer runs at
    stride 1 with circular padding that keeps its input's size (``dilation (k - 1)``
    cells in all, split as torch's ``padding="same"``: the extra cell of an even
    kernel after), and a polyphase pool does the subsampling:

    - ``"aps"``: adaptive polyphase sampling; with such layers and a global pool at
      the end, the model's output is the same for every circular shift (to float
      tolerance), at any input size (the output of a subsampling is ``ceil(L / s)``).
    - ``"lps"``: learnable polyphase sampling (exact in eval mode); its channel
      count is the conv's ``out_channels``, for pools that of the closest conv or
      norm layer registered before it.
    - ``"blur"``: blurpool with circular padding (approximate invariance only).

    **Output sizes can change.** The size-keeping padding is what exact invariance
    needs (every window wraps around), so a subsampled map has ``ceil(n / s)`` cells
    per axis, where the layer before surgery gave torch's
    ``floor((n + 2p - d (k - 1) - 1) / s) + 1``: equal for "same"-padded layers
    (``Conv2d(3, stride=2, padding=1)``, ``MaxPool2d(3, 2, 1)``, 1×1 convs), not for
    unpadded ones (``Conv2d(k=3, stride=2)``: 32 -> 16 instead of 15;
    ``MaxPool2d(3, 2)``: 15 -> 8 instead of 7; ``MaxPool2d(2)`` on odd sizes). Each
    such layer's :class:`Change` says so in its ``note``, with the formula and an
    example; a layer after it that expects the old size (a ``Linear`` after
    ``Flatten``) must be adapted. Give ``example_input`` (one batch the model
    takes) and the model runs it once before and once after surgery (eval mode, no
    grad, modes restored): the notes then give the sizes at that input, and
    ``.failures`` (with a warning) names the module that raises on it (e.g. the
    ``Linear``) or an output shape that changed.

    With ``tie_phases`` (APS and LPS), the model is traced with ``torch.fx``; layers
    that subsample the same grid (a residual block's strided ``conv1`` or ``conv2``
    and its strided ``downsample``, parallel towers) share one phase: the first to run
    (the main path in torchvision's blocks) chooses it, the others sample at it
    (:class:`PhaseFollower`), so the shortcut lines up with the path it skips. A part
    that cannot be traced is converted one layer at a time and named in ``.untraced``.

    Left as they were, and reported in ``.skipped``: adaptive pools to a size above 1,
    unpadded (or size-changing) stride-1 convolutions and pools with kernel > 1,
    fractional pools, ``PixelUnshuffle``, ``Unfold``, functional pooling calls in a
    ``forward``; each breaks exact invariance.

    Args:
        model: any module; edited in place.
        method: ``"aps"``, ``"lps"`` or ``"blur"``; a spec with parameters
            (``"aps:norm=l1"``, ``"blur:filt=5"``) is accepted too.
        tie_phases: one phase per subsampled grid across branches (default); False gives
            every subsampling its own APS/LPS.
        example_input: optional input batch for a dry run before and after (see above).

    Returns:
        A :class:`Report`: one :class:`Change` per edited module (``note``: a changed
        output size), ``.tied`` (groups sharing a phase, leader first), ``.skipped``,
        ``.untraced`` and ``.failures`` (what fails on ``example_input``).

    Raises:
        ValueError: a bad ``method``, or a model that fails on ``example_input`` before surgery.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...                     nn.AdaptiveAvgPool2d(1))
        >>> [c.name for c in make_shift_invariant(net)]
        ['0', '2']
        >>> x = torch.rand(1, 3, 15, 15)
        >>> torch.allclose(net(x), net(x.roll((4, 7), (2, 3))), atol=1e-6)
        True
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 15 * 15, 10))
        >>> print(make_shift_invariant(net)[0].note)  # doctest: +ELLIPSIS
        output size per axis: ceil(n/2) instead of floor((n-3)/2)+1 (e.g. 16 -> 8 instead of 7); ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(tie_phases, bool):
        raise TypeError(f"tie_phases must be a bool, got {tie_phases!r}")
    base, params = parse_spec(method) if isinstance(method, str) else ("", {})
    if base not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS} (optionally with parameters), got {method!r}")
    example = _example(model, example_input)

    def pool(d: int, factor: tuple[int, ...], channels: int | None, name: str) -> nn.Module:
        if base == "blur":
            return create_pool("blurpool", dim=d, kernel_size=factor, padding_mode="circular", **params)
        if base == "lps":
            if channels is None:
                raise ValueError(f"{name}: method='lps' needs a channel count: no conv or norm layer precedes it")
            # the scorer's parameters where the layer's are (device, dtype)
            where = {} if like is None else {"device": like.device, "dtype": like.dtype}
            return create_pool("lps", dim=d, kernel_size=factor, channels=channels, **{**where, **params})
        return create_pool("aps", dim=d, kernel_size=factor, **params)

    subs: list[_Sub] = []
    notes: dict[str, str] = {}
    plan: list[tuple[str, nn.Module | None, str]] = []
    edits: list[tuple[nn.Module, dict[str, Any]]] = []
    skipped: list[Skip] = []
    kinds: dict[str, Any] = {}
    channels: int | None = None
    like: Tensor | None = None  # the weight of the closest conv or norm layer so far
    for name, m in model.named_modules():
        if not name:
            continue
        if isinstance(m, _CONVS):
            channels, like = m.out_channels, m.weight
            d = _dim(m)
            padding = _conv_padding(m)
            if _strided(m.stride):
                factor = tuple(m.stride)
                parts: list[nn.Module] = [m]
                if padding == "same":
                    wraps = any(k > 1 for k in _tuple(m.kernel_size, d))
                    edits.append((m, {"stride": (1,) * d, **({"padding_mode": "circular"} if wraps else {})}))
                else:  # the stride-1 conv must keep the size: explicit circular "same" padding before it
                    pads = _same_pads(_tuple(m.kernel_size, d), _tuple(m.dilation, d))
                    parts = [getattr(nn, f"CircularPad{d}d")(pads), m]
                    edits.append((m, {"stride": (1,) * d, "padding": (0,) * d, "padding_mode": "zeros"}))
                subs.append(_Sub(name, parts, pool(d, factor, channels, name), factor, repr(m)))
                notes[name] = _size_note(m, factor)
                kinds[name] = ("sub", factor)
            elif padding == "same":
                if m.padding_mode != "circular" and any(k > 1 for k in _tuple(m.kernel_size, d)):
                    edits.append((m, {"padding_mode": "circular"}))
                    plan.append((name, None, repr(m)))
                kinds[name] = "keep"
            else:
                skipped.append(Skip(name, repr(m), "unpadded or size-changing padding at stride 1: the map shrinks "
                                    "or grows and loses the wrap-around windows (exact invariance is lost); "
                                    "use padding='same'"))
        elif isinstance(m, _NORMS):
            if hasattr(m, "num_features"):
                channels = int(getattr(m, "num_features"))  # noqa: B009
            if isinstance(getattr(m, "weight", None), Tensor):
                like = getattr(m, "weight")  # noqa: B009
            kinds[name] = "keep"
        elif isinstance(m, (*_ACTIVATIONS, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            kinds[name] = "keep"
        elif isinstance(m, _MAX) and m.return_indices:
            skipped.append(Skip(name, repr(m), _INDICES))
        elif isinstance(m, _MAX + _AVG + _LP):
            stat = "max" if isinstance(m, _MAX) else "avg" if isinstance(m, _AVG) else "lp"
            d = _dim(m)
            k = _tuple(m.kernel_size, d)
            dil = _tuple(getattr(m, "dilation", 1), d)
            if _strided(_factor(m)):
                factor = _factor(m)
                dense: list[nn.Module] = [] if all(v == 1 for v in k) else [_dense(stat, m)]
                subs.append(_Sub(name, dense, pool(d, factor, channels, name), factor, repr(m)))
                notes[name] = _size_note(m, factor)
                kinds[name] = ("sub", factor)
            elif all(v == 1 for v in k):
                kinds[name] = "keep"
            elif all(2 * p == di * (v - 1) for p, di, v in zip(_tuple(getattr(m, "padding", 0), d), dil, k)):
                plan.append((name, _dense(stat, m), repr(m)))
                kinds[name] = "keep"
            else:
                skipped.append(Skip(name, repr(m), "stride-1 pool without 'same' padding: the map shrinks and "
                                                   "loses the wrap-around windows (exact invariance is lost)"))
        else:
            _common_skips(name, m, skipped)

    tied: list[tuple[str, ...]] = []
    analysis = analyse(model, kinds.get)
    if tie_phases and base in ("aps", "lps"):
        by_name = {s.name: i for i, s in enumerate(subs)}
        for group in analysis.groups:
            lead = subs[by_name[group[0]]]
            link = PhaseLink(lead.name, len(group) - 1)
            lead.pool.return_phase = True  # type: ignore[assignment]
            subs[by_name[group[0]]] = lead._replace(pool=PhaseLeader(lead.pool, link))
            for follower in group[1:]:
                f = subs[by_name[follower]]
                subs[by_name[follower]] = f._replace(pool=PhaseFollower(link, f.factor, follower))
            tied.append(tuple(group))
    # every replacement is planned: now edit
    for mod, attrs in edits:
        for key, value in attrs.items():
            setattr(mod, key, value)
    changes = _apply(model, plan + [(s.name, nn.Sequential(*s.parts, s.pool), s.before) for s in subs], notes)
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    changes.sort(key=lambda c: order.get(c.name, -1))
    failures = [] if example is None else _check_example(model, example_input, example, changes,  # type: ignore[arg-type]
                                                         "make_shift_invariant")
    return Report(changes, skipped + analysis.skipped, tied, analysis.untraced, failures)

"""The lever on the user's own model: a factory turned into each grid point by surgery.

A model factory is ``FUNC(in_channels, num_classes) -> nn.Module``, named as
``"path/to/file.py:FUNC"``, ``"package.module:FUNC"``, or passed as a callable. The
model must end in a global pool and a linear classifier (a ResNet, a 1-D CNN, a
3-D CNN): a pooling module whose output has one position per spatial axis, then,
after flattening, an ``nn.Linear`` whose ``in_features`` is the pool's channel count.

**The λ rule.** Let ``L_a`` be the size, on spatial axis ``a``, of the map that
enters the final global pool (measured on one sample of the data). For λ ∈ [0, 1]:

- the final global pool becomes a pool of the statistic under study to
  ``t_a = max(1, round(L_a ** (1 - λ)))`` positions per axis (its adaptive form with
  ``output_size=t``; a statistic without one pools with kernel = stride =
  ``L_a // t_a``), and the linear head is replaced by a freshly initialised one with
  ``in_features = channels × ∏ (positions actually produced)`` whenever that differs
  from the original, so λ = 1 is the model as given (one position, the original head)
  and λ = 0 removes the pool: the head sees the full-resolution map;
- for λ > 0 every other torch pooling layer takes the statistic too
  (:func:`poolkit.convert.swap_pools`, same geometry); at λ = 0 (statistic
  ``"none"``) they stay as written.

If ``FUNC`` accepts ``pool=`` and ``lever=`` keywords it is called as
``FUNC(in_channels, num_classes, pool=spec, lever=λ)`` instead, and builds each grid
point itself: poolkit applies no surgery and λ means what the user says.

Every problem (a factory that cannot be imported or fails, returns no module, has no
final global pool + linear head, or does not fit the data) is a ``ValueError`` naming
the file or module, the function and what was expected; :func:`check_model` raises it
before a study trains anything.

>>> import torch
>>> from torch import nn
>>> def net(in_channels, num_classes):
...     return nn.Sequential(nn.Conv1d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
...                          nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
...                          nn.Flatten(), nn.Linear(8, num_classes))
>>> b = build_model_for(net, 1, 10, (40,), "max", 0.5)
>>> b.head_size, b.head.in_features   # L = 20 after the first pool: round(20 ** 0.5) = 4 positions
((4,), 32)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .compute import pool_module_names
from .lever import check_lever, head_positions
from .models import _probe, build_pool

__all__ = ["BuiltModel", "ModelSpec", "build_model_for", "check_model", "lever_rule", "model_name",
           "resolve_factory", "takes_lever"]

ModelSpec = Any  # "file.py:FUNC", "module:FUNC" or a callable


def model_name(model: ModelSpec) -> str:
    """The name a study stores for ``model``: the spec string, or a callable's ``module.qualname``."""
    if isinstance(model, str):
        return model
    if callable(model):
        mod = getattr(model, "__module__", None) or ""
        qual = getattr(model, "__qualname__", None) or type(model).__qualname__
        return f"{mod}.{qual}" if mod else qual
    raise TypeError(f"model must be 'file.py:FUNC', 'module:FUNC' or a callable, got {type(model).__name__}")


def _where(model: ModelSpec) -> str:
    """Human words for where the factory lives: function 'f' in file 'x.py' / module 'pkg.m'."""
    if isinstance(model, str):
        mod, _, func = model.rpartition(":")
        kind = "file" if mod.endswith(".py") else "module"
        return f"model factory {func!r} in {kind} {mod!r}"
    return f"model factory {model_name(model)!r}"


_FILE_MODULES: dict[tuple[str, float], Any] = {}


def _import_file(path: Path, spec: str) -> Any:
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _FILE_MODULES:
        return _FILE_MODULES[key]
    digest = hashlib.sha1(key[0].encode()).hexdigest()[:8]
    name = f"_poolkit_model_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"model {spec!r}: cannot import {str(path)!r} as Python source")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # any error in the user's file
        del sys.modules[name]
        raise ValueError(f"model {spec!r}: importing file {str(path)!r} failed: {type(err).__name__}: {err}") from err
    _FILE_MODULES[key] = module
    return module


def resolve_factory(model: ModelSpec) -> Callable[..., Any]:
    """The factory callable for ``model`` (importing the file or module a spec string names).

    Raises:
        ValueError: a malformed spec, a missing file, a failed import, no such function.
        TypeError: ``model`` is neither a string nor a callable.
    """
    if callable(model) and not isinstance(model, str):
        return model  # type: ignore[no-any-return]
    if not isinstance(model, str):
        raise TypeError(f"model must be 'file.py:FUNC', 'module:FUNC' or a callable, got {type(model).__name__}")
    mod_name, _, attr = model.rpartition(":")
    if not mod_name or not attr or not attr.isidentifier():
        raise ValueError(f"model must be 'path/to/file.py:FUNC' or 'package.module:FUNC' (FUNC(in_channels, "
                         f"num_classes) returns an nn.Module), got {model!r}")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise ValueError(f"model {model!r}: file {mod_name!r} does not exist")
        module = _import_file(path, model)
    else:
        try:
            module = importlib.import_module(mod_name)
        except Exception as err:  # ImportError, or any error raised while importing it
            raise ValueError(f"model {model!r}: cannot import module {mod_name!r}: {type(err).__name__}: {err}"
                             ) from err
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))[:20]
        raise ValueError(f"model {model!r}: {mod_name!r} has no function {attr!r}; callables there: {have}")
    return factory  # type: ignore[no-any-return]


def takes_lever(factory: Callable[..., Any]) -> bool:
    """True when ``factory`` accepts ``pool=`` and ``lever=`` keywords (it builds each grid point itself)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {"pool", "lever"} <= names


@dataclass
class BuiltModel:
    """One grid point's model and what the lab measures on it.

    Attributes:
        module: the model (on the CPU, in train mode).
        head: the linear classifier whose input is the "head's input" (None when not found).
        head_size: positions per spatial axis the head sees (None when unknown).
        changes: what surgery did, one line per edit.
        feature_fn: the head's input as the model computes it (LeverNet's ``features``); None = the
            input of ``head``, captured by a hook.
    """

    module: nn.Module
    head: nn.Linear | None
    head_size: tuple[int, ...] | None
    changes: list[str] = field(default_factory=list)
    feature_fn: Callable[[Tensor], Tensor] | None = None

    def features(self, x: Tensor) -> Tensor:
        """The head's input for ``x`` (flattened, as the linear head sees it)."""
        if self.feature_fn is not None:
            return self.feature_fn(x)
        if self.head is None:
            raise ValueError("this model has no linear head poolkit could find")
        got: list[Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _m, args: got.append(args[0]))
        try:
            self.module(x)
        finally:
            handle.remove()
        return got[-1]

    def head_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters()) if self.head is not None else 0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass
class _Event:
    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    is_pool: bool


class _Stop(Exception):
    """Raised by a hook to end a traced forward early."""


def _trace(model: nn.Module, x: Tensor, stop_at: str | None = None) -> tuple[list[_Event], Any]:
    """Run ``model`` once (eval, no grad) recording outermost pools and linears as they finish.

    With ``stop_at``, the forward also records that module and ends right after it (output None).
    """
    pools = set(pool_module_names(model))
    watched = [(n, m) for n, m in model.named_modules() if n in pools or isinstance(m, nn.Linear) or n == stop_at]
    events: list[_Event] = []
    handles = []

    def hook(name: str) -> Any:
        def fn(m: nn.Module, args: tuple, out: Any) -> None:
            y = out[0] if isinstance(out, tuple) else out
            xin = args[0] if args else None
            if isinstance(y, Tensor) and isinstance(xin, Tensor):
                events.append(_Event(name, m, tuple(xin.shape), tuple(y.shape), name in pools))
            if name == stop_at:
                raise _Stop()
        return fn

    for n, m in watched:
        handles.append(m.register_forward_hook(hook(n)))
    was_training = model.training
    model.eval()
    out = None
    try:
        with torch.no_grad():
            out = model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return events, out


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _check_output(out: Any, n: int, num_classes: int, where: str, when: str) -> None:
    if not isinstance(out, Tensor) or tuple(out.shape) != (n, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{where}: {when} the model must return logits of shape (N, num_classes) = "
                         f"({n}, {num_classes}), got {got}")


def _final_pool_and_head(events: list[_Event], where: str) -> tuple[_Event, _Event]:
    expected = ("to apply the lever it must end in a global pool (a pooling module with one output position per "
                "axis, e.g. nn.AdaptiveAvgPool2d(1)) followed, after flattening, by an nn.Linear classifier")
    pool_idx = [i for i, e in enumerate(events) if e.is_pool]
    if not pool_idx:
        raise ValueError(f"{where}: the model has no pooling module; {expected}")
    last = pool_idx[-1]
    pool = events[last]
    if len(pool.out_shape) < 3 or any(s != 1 for s in pool.out_shape[2:]):
        raise ValueError(f"{where}: its last pooling module {pool.name!r} ({type(pool.module).__name__}) outputs "
                         f"shape {pool.out_shape}, not one position per axis; {expected}")
    if sum(1 for i in pool_idx if events[i].name == pool.name) > 1:
        raise ValueError(f"{where}: the final pool {pool.name!r} is called more than once per forward; {expected}")
    heads = [e for e in events[last + 1:] if isinstance(e.module, nn.Linear)]
    if not heads:
        raise ValueError(f"{where}: no nn.Linear runs after its final pool {pool.name!r}; {expected}")
    head = heads[0]
    channels = pool.out_shape[1]
    if head.module.in_features != channels:  # type: ignore[union-attr]
        raise ValueError(f"{where}: the first nn.Linear after the final pool ({head.name!r}) takes "
                         f"{head.module.in_features} features, not the pool's {channels} channels; {expected}")
    return pool, head


def _final_pool(spec: str, dim: int, size: tuple[int, ...], target: tuple[int, ...], channels: int,
                lever: float) -> nn.Module:
    import poolkit

    if lever == 0 or spec == "none":
        return nn.Identity()
    if all(t == 1 for t in target):
        return build_pool(spec, dim, None, channels, size)
    name, _ = poolkit.parse_spec(spec)
    accepted = inspect.signature(poolkit.get_pool_class(name, dim)).parameters
    if "output_size" in accepted:
        return poolkit.create_pool(spec, dim=dim, channels=channels, output_size=target)
    kernel = tuple(max(1, n // t) for n, t in zip(size, target))
    return build_pool(spec, dim, kernel, channels, size)


def build_model_for(model: ModelSpec, in_channels: int, num_classes: int, spatial: Sequence[int], pool: str,
                    lever: float, sample: Tensor | None = None) -> BuiltModel:
    """The grid point (``pool``, ``lever``) of the user's ``model`` for data of ``(in_channels, *spatial)``.

    Seed torch before calling it for reproducible weights. ``sample`` (a batch of the data, on the CPU) is
    used to trace shapes; default one random input.

    Raises:
        ValueError: see the module docstring; the message names the factory and what was expected.
    """
    lever = check_lever(lever)
    factory = resolve_factory(model)
    where = _where(model)
    func = getattr(factory, "__name__", "FUNC")
    spatial = tuple(int(s) for s in spatial)
    lever_kw = takes_lever(factory)
    kw = {"pool": pool, "lever": lever} if lever_kw else {}
    call = f"{func}({in_channels}, {num_classes}{''.join(f', {k}={v!r}' for k, v in kw.items())})"
    try:
        net = factory(in_channels, num_classes, **kw)
    except Exception as err:  # any failure of the user's code
        raise ValueError(f"{where} failed when called as {call}: {type(err).__name__}: {err}") from err
    if not isinstance(net, nn.Module):
        raise ValueError(f"{where} must return a torch.nn.Module from {call}, got {type(net).__name__}")
    x = sample[:2].float() if sample is not None else torch.rand((2, in_channels, *spatial),
                                                                 generator=torch.Generator().manual_seed(0))
    shape = f"(N, {', '.join(map(str, (in_channels, *spatial)))})"
    try:
        events, out = _trace(net, x)
    except Exception as err:  # the model does not fit the data
        raise ValueError(f"{where}: the model from {call} cannot run on the data's shape {shape}: "
                         f"{type(err).__name__}: {err}") from err
    _check_output(out, len(x), num_classes, where, f"on inputs of shape {shape}")
    if lever_kw:
        return _as_given(net, events)
    pool_ev, head_ev = _final_pool_and_head(events, where)
    changes: list[str] = []
    # The final pool is set aside while the other pools take the statistic (their new sizes decide L).
    _set(net, pool_ev.name, nn.Identity())
    if lever > 0 and pool != "none":
        from poolkit.convert import swap_pools

        try:
            changes += [f"{c.name}: {c.before} -> {c.after}" for c in swap_pools(net, pool)]
        except ValueError as err:
            raise ValueError(f"{where}: its pooling layers cannot take statistic {pool!r}: {err}") from err
    try:
        events, _ = _trace(net, x, stop_at=pool_ev.name)
    except Exception as err:
        raise ValueError(f"{where}: with statistic {pool!r} in its pooling layers the model fails: "
                         f"{type(err).__name__}: {err}") from err
    at = next((e.in_shape for e in events if e.name == pool_ev.name), None)
    if at is None:
        raise ValueError(f"{where}: with statistic {pool!r} in its pooling layers the final pool {pool_ev.name!r} "
                         "is no longer reached by the forward")
    size, channels, dim = at[2:], at[1], len(at) - 2
    target = tuple(head_positions(n, lever) for n in size)
    try:
        new_pool = _final_pool(pool, dim, size, target, channels, lever)
        c_out, *rest = _probe(new_pool, (channels, *size))
    except ValueError as err:
        raise ValueError(f"{where}: statistic {pool!r} cannot pool its final map of size {size} to {target} "
                         f"at λ = {lever:g}: {err}") from err
    head_size = tuple(rest)
    _set(net, pool_ev.name, new_pool)
    changes.append(f"{pool_ev.name}: {type(pool_ev.module).__name__} -> {new_pool!r} (map {size} -> {head_size})")
    old: nn.Linear = head_ev.module  # type: ignore[assignment]
    head: nn.Linear = old
    features = c_out * math.prod(head_size)
    if features != old.in_features:
        head = nn.Linear(features, old.out_features, bias=old.bias is not None,
                         device=old.weight.device, dtype=old.weight.dtype)
        _set(net, head_ev.name, head)
        changes.append(f"{head_ev.name}: Linear({old.in_features}, {old.out_features}) -> "
                       f"Linear({features}, {old.out_features})")
    try:
        _, out = _trace(net, x)
    except Exception as err:
        raise ValueError(f"{where}: after resizing the head for λ = {lever:g} (map {size} -> {head_size}) the "
                         f"model fails: {type(err).__name__}: {err}. Its forward must flatten the pooled map "
                         "(torch.flatten(x, 1) or nn.Flatten()), not squeeze or index it") from err
    _check_output(out, len(x), num_classes, where, f"after surgery at λ = {lever:g}")
    return BuiltModel(net, head, head_size, changes)


def _as_given(net: nn.Module, events: list[_Event]) -> BuiltModel:
    """A model that built its own grid point: find its head (the first linear after the last pool, else the last)."""
    linears = [i for i, e in enumerate(events) if isinstance(e.module, nn.Linear)]
    if not linears:
        return BuiltModel(net, None, None)
    pools = [i for i, e in enumerate(events) if e.is_pool and i < linears[-1]]
    after = [i for i in linears if pools and i > pools[-1]]
    i = after[0] if after else linears[-1]
    head_size = None
    if after and len(events[pools[-1]].out_shape) >= 3:
        head_size = tuple(events[pools[-1]].out_shape[2:])
    return BuiltModel(net, events[i].module, head_size)  # type: ignore[arg-type]


def lever_rule(model: ModelSpec | None) -> str:
    """One sentence stating what λ does to ``model`` (None: the reference LeverNet), for reports."""
    if model is None:
        return ("LeverNet: the head sees max(1, round(L ** (1 - λ))) positions per axis of the input size L, "
                "reached by non-overlapping pools spread over the conv blocks; λ = 0: no pooling, λ = 1: global pool")
    if takes_lever(resolve_factory(model)):
        return f"{model_name(model)} builds each grid point itself (called with pool= and lever=); λ means what it says"
    return (f"{model_name(model)}: its final global pool pools to max(1, round(L ** (1 - λ))) positions per axis of "
            "the map size L entering it and its linear head is resized to match (λ = 1: the model as given, "
            "λ = 0: no final pool); for λ > 0 its other pooling layers take the statistic")


def check_model(model: ModelSpec, ds: Any, points: Sequence[tuple[str, float]]) -> None:
    """Build every ``(statistic, λ)`` of ``points`` for dataset ``ds`` once, so bad factories fail before training.

    Raises:
        ValueError: the first problem, naming the factory and what was expected.
    """
    sample = ds.X_train[:2]
    for pool, lever in points:
        build_model_for(model, ds.channels, ds.num_classes, ds.spatial, pool, lever, sample)

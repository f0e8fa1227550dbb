"""Registry: pool name -> module classes, spec strings, and the ``create_pool`` factory.

Every family file in :mod:`poolkit.nn` exports ``POOLS = {name: (cls1d, cls2d, cls3d)}``;
the registry is their union.

>>> import poolkit
>>> poolkit.create_pool("lp:p=4", dim=2, kernel_size=2)
LPPool2d(norm_type=4, kernel_size=2, stride=None, padding=0)
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from torch import nn

from . import nn as pnn

__all__ = ["create_pool", "list_pools", "get_pool_class", "parse_spec"]


def _table() -> dict[str, tuple[type, type, type]]:
    table: dict[str, tuple[type, type, type]] = {}
    for fam in pnn.FAMILIES:
        for name, classes in getattr(fam, "POOLS", {}).items():
            if name in table:
                raise RuntimeError(f"pool name {name!r} registered twice")
            table[name] = classes
    return table


_POOLS = _table()


def list_pools() -> list[str]:
    """Sorted names of every registered pool."""
    return sorted(_POOLS)


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if low in ("inf", "+inf", "infinity"):
        return math.inf
    try:
        return int(low)
    except ValueError:
        pass
    try:
        return float(low)
    except ValueError:
        return text.strip()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed parameters.

    Values become bool (``true``/``false``), ``None``, int, float (``inf`` too) or str.

    >>> parse_spec("mixed:alpha=0.3,learnable=true")
    ('mixed', {'alpha': 0.3, 'learnable': True})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec must be a non-empty string such as 'max' or 'lp:p=4', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"spec parameters must be key=value pairs separated by commas, got {item!r} in {spec!r}")
        if key.strip() in params:
            raise ValueError(f"spec {spec!r} sets {key.strip()!r} twice; give each parameter once")
        params[key.strip()] = _value(val)
    return name.strip().lower(), params


def get_pool_class(name: str, dim: int) -> type:
    """The module class registered as ``name`` for ``dim`` spatial dims."""
    if name not in _POOLS:
        raise ValueError(f"unknown pool {name!r}; accepted: {', '.join(list_pools())}")
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
    return _POOLS[name][dim - 1]


class _Default:
    """The default of an argument the caller did not give (a spec value may then set it)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_KERNEL_DEFAULT: Any = _Default(2)


def _aliases() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for fam in pnn.FAMILIES:
        out.update(getattr(fam, "SPEC_ALIASES", {}))
    return out


_ALIASES = _aliases()


def _same(a: Any, b: Any) -> bool:
    """Whether two argument values mean the same (``3`` and ``(3, 3)`` do, for window sizes)."""
    if isinstance(a, (list, tuple)) and not isinstance(b, (list, tuple)):
        a, b = b, a
    if isinstance(b, (list, tuple)) and not isinstance(a, (list, tuple)):
        return all(_same(a, v) for v in b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    try:
        return bool(a == b)
    except Exception:  # tensors and other values without a plain truth value
        return a is b


def create_pool(
    spec: str,
    dim: int = 2,
    kernel_size: Any = _KERNEL_DEFAULT,
    stride: Any = None,
    channels: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a pooling module from a spec string.

    Every parameter of the spec is honoured, or refused with a ``ValueError``; a spec value
    that contradicts an explicit argument (``create_pool("max:kernel_size=3", kernel_size=2)``)
    raises a ``ValueError`` naming both.

    Args:
        spec: a registered name, optionally with parameters: ``"lp:p=4"``,
            ``"lse:beta=10"``, ``"mixed:alpha=0.3,learnable=true"``, ``"max:kernel_size=3,stride=1"``.
        dim: number of spatial dims (1, 2 or 3).
        kernel_size: window size; default the spec's, else 2 (not set when ``output_size`` is given).
        stride: default the spec's, else the pool's own default (``kernel_size``).
        channels: number of input channels; used by learnable pools, ignored by the rest.
        **kwargs: any further constructor argument (it may repeat a spec value, not contradict it).

    Returns:
        The module (``get_pool_class(name, dim)``) built with the merged arguments.

    Raises:
        ValueError: unknown name or parameter (the message lists what is accepted), or a spec value
            contradicting an explicit argument.

    Example:
        >>> create_pool("max", dim=1, kernel_size=3, stride=2)
        MaxPool1d(kernel_size=3, stride=2, padding=0, return_indices=False)
        >>> create_pool("max:kernel_size=3", dim=2).kernel_size
        3
    """
    name, params = parse_spec(spec)
    cls = get_pool_class(name, dim)
    accepted = list(inspect.signature(cls).parameters)
    aliases = _ALIASES.get(name, {})
    for alias, target in aliases.items():  # "lp:p=4" is norm_type=4
        for src in (params, kwargs):
            if alias in src:
                if target in src and not _same(src[target], src[alias]):
                    raise ValueError(f"pool {name!r}: {alias}={src[alias]!r} and {target}={src[target]!r} "
                                     f"name the same parameter")
                src[target] = src.pop(alias)
    explicit = dict(kwargs)
    if not isinstance(kernel_size, _Default):
        explicit["kernel_size"] = kernel_size
    if stride is not None:
        explicit["stride"] = stride
    if channels is not None and "channels" in accepted:
        explicit["channels"] = channels
    for key, value in explicit.items():
        if key in params and not _same(params[key], value):
            raise ValueError(f"pool spec {spec!r} sets {key}={params[key]!r} but the call passes "
                             f"{key}={value!r}; give it once")
    params.update(explicit)
    # a pool whose kernel_size is another name of its stride (diffstride) takes no default window
    # when the stride is given
    kernel_is_stride = getattr(cls, "_kernel_is_stride", False) and "stride" in params
    if params.get("output_size") is None and "kernel_size" not in params and "kernel_size" in accepted \
            and not kernel_is_stride:
        params["kernel_size"] = kernel_size.value if isinstance(kernel_size, _Default) else kernel_size
    if "channels" in accepted and "channels" not in params:
        params["channels"] = None
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"pool {name!r} got unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return cls(**params)

"""Registry: pool name -> module classes, spec strings, and the ``create_pool`` factory.

Every family file in :mod:`poolkit.nn` exports ``POOLS = {name: (cls1d, cls2d, cls3d)}``;
the registry is their union.

>>> import poolkit
>>> poolkit.create_pool("lp:p=4", dim=2, kernel_size=2)  # doctest: +SKIP
LPPool2d(kernel_size=2, stride=None, padding=0, p=4.0)
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
        params[key.strip()] = _value(val)
    return name.strip().lower(), params


def get_pool_class(name: str, dim: int) -> type:
    """The module class registered as ``name`` for ``dim`` spatial dims."""
    if name not in _POOLS:
        raise ValueError(f"unknown pool {name!r}; accepted: {', '.join(list_pools())}")
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
    return _POOLS[name][dim - 1]


def create_pool(
    spec: str,
    dim: int = 2,
    kernel_size: Any = 2,
    stride: Any = None,
    channels: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a pooling module from a spec string.

    Args:
        spec: a registered name, optionally with parameters: ``"lp:p=4"``,
            ``"lse:beta=10"``, ``"mixed:alpha=0.3,learnable=true"``.
        dim: number of spatial dims (1, 2 or 3).
        kernel_size: window size (ignored when ``output_size`` is given).
        stride: default ``kernel_size``.
        channels: number of input channels; used by learnable pools, ignored by the rest.
        **kwargs: any further constructor argument; overrides the spec's.

    Raises:
        ValueError: unknown name or parameter (the message lists what is accepted).

    Example:
        >>> create_pool("max", dim=1, kernel_size=3, stride=2)
        MaxPool1d(kernel_size=3, stride=2, padding=0, return_indices=False)
    """
    name, params = parse_spec(spec)
    cls = get_pool_class(name, dim)
    params.update(kwargs)
    sig = inspect.signature(cls)
    accepted = list(sig.parameters)
    if params.get("output_size") is None:
        params["kernel_size"] = kernel_size
        params["stride"] = stride
    if "channels" in accepted:
        params["channels"] = channels
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"pool {name!r} got unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    if "stride" not in accepted:
        params.pop("stride", None)
    return cls(**params)

"""poolkit: pooling as the lever between equivariance and invariance.

Three faces in one package: pooling layers for 1-D/2-D/3-D (:mod:`poolkit.functional`,
:mod:`poolkit.nn`), instruments that measure shift equivariance and invariance
(:mod:`poolkit.measure`), and a lab that sweeps the lever on real data
(:mod:`poolkit.lab`, loaded on first use: it needs the ``lab`` extra).

>>> import poolkit, torch
>>> pool = poolkit.create_pool("max", dim=2, kernel_size=2)
>>> pool(torch.rand(1, 3, 8, 8)).shape
torch.Size([1, 3, 4, 4])
"""

from __future__ import annotations

import importlib
from typing import Any

from . import functional, measure, nn
from .functional._fast import enabled as fast_paths_enabled
from .functional._fast import fast_paths
from .registry import create_pool, get_pool_class, list_pools, parse_spec

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "convert",
    "create_pool",
    "fast_paths",
    "fast_paths_enabled",
    "functional",
    "get_pool_class",
    "lab",
    "list_pools",
    "measure",
    "nn",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    # convert and lab load on first use: lab pulls optuna, pandas and matplotlib
    if name in ("convert", "lab"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'poolkit' has no attribute {name!r}")

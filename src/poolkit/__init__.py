"""poolkit: pooling as the lever between equivariance and invariance.

Three faces in one package: pooling layers for 1-D/2-D/3-D (:mod:`poolkit.functional`,
:mod:`poolkit.nn`), instruments that measure shift equivariance and invariance
(:mod:`poolkit.measure`), and a lab that sweeps the lever on real data
(:mod:`poolkit.lab`).

>>> import poolkit, torch
>>> pool = poolkit.create_pool("max", dim=2, kernel_size=2)
>>> pool(torch.rand(1, 3, 8, 8)).shape
torch.Size([1, 3, 4, 4])
"""

from . import functional, nn
from .registry import create_pool, get_pool_class, list_pools, parse_spec

__version__ = "0.1.0"

__all__ = ["__version__", "create_pool", "functional", "get_pool_class", "list_pools", "nn", "parse_spec"]

"""Instruments: how equivariant or invariant a layer or a network is to shifts.

Any callable on batches ``(N, C, *spatial)`` with 1 to 3 spatial dims can be
measured; shifted copies are made as one batch and go through the model in one
forward pass.

>>> import torch
>>> from poolkit.measure import invariance, equivariance, shift
>>> x = torch.rand(4, 3, 16, 16)
>>> shift(x, [(1, 0), (0, 2)]).shape
torch.Size([8, 3, 16, 16])
>>> gmp = lambda t: t.amax(dim=(2, 3))
>>> float(invariance(gmp, x, [(1, 0), (5, 3)]))
0.0
"""

from .classification import Consistency, consistency
from .lie import lie_derivative, translation_generator
from .metrics import ShiftResult, equivariance, infer_stride, invariance
from .profile import LayerProfile, Profile, profile
from .shifts import SHIFT_MODES, fourier_shift, parse_shifts, shift, shift_per_sample

__all__ = [
    "SHIFT_MODES",
    "Consistency",
    "LayerProfile",
    "Profile",
    "ShiftResult",
    "consistency",
    "equivariance",
    "fourier_shift",
    "infer_stride",
    "invariance",
    "lie_derivative",
    "parse_shifts",
    "profile",
    "shift",
    "shift_per_sample",
    "translation_generator",
]
